"""The kernel layer: network namespaces, rtnetlink, per-namespace sysctls, NAT, the host
uplink, and files in other mount namespaces (`mounts`).

Everything here works on one namespace at a time and knows nothing of nodes or
topologies; the layers above compose it.
"""
