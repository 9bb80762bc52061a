"""The node layer: what a topology connects, one network namespace each.

`base` states the contract every node keeps; `namespace`, `host` and
`container` are its three kinds; `process` runs commands inside them;
`hosts` gives their processes the topology's names; `engine` and `images`
are the Docker side.
"""
