"""Probes: packets sent from inside a node, and what came back.

`api` is what tests call; `engine` resolves both ends and runs probes
together; `series` sends a series of echoes and sums them up
(`ping_stats`); `sockets` keeps the raw sockets inside each namespace;
`receiver` reads every answer on one thread; `route` asks the kernel for
the route first; `result` and `matrix` hold the verdicts.
"""
