"""The topology layer: describe a network, plan it, build it, use it, close it.

`spec` and `builder` describe; `addresses` and `subnets` check and allocate;
`plan` decides every address before anything exists; `construct` creates
what the plan says, one `links` object per link; `topology` is the result,
`segments` what it holds; `names` what each node's hosts file says;
`recipes` are the four fixtures of the article; `registry` counts what this
process has up; `faults` makes links misbehave (impairments, cuts,
flapping) and partitions the topology.
"""
