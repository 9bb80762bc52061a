"""Probes: packets sent from inside a node, and what came back.

`api` is what tests call; `engine` resolves both ends and runs probes
together; `sockets` keeps the raw sockets inside each namespace; `receiver`
reads every answer on one thread; `route` asks the kernel for the route
first; `result` and `matrix` hold the verdicts.
"""
