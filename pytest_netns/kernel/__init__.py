"""The kernel layer: network namespaces, rtnetlink, per-namespace sysctls, NAT and the host uplink.

Everything here works on one namespace at a time and knows nothing of nodes or
topologies; the layers above compose it.
"""
