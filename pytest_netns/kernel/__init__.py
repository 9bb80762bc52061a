"""The kernel layer: network namespaces, rtnetlink, per-namespace sysctls, NAT, the host
uplink, and files in other mount namespaces (`mounts`).

Faults live here too: traffic control (`tc`, `cbpf`), the mechanisms of an
impaired direction (`impairment`) and of cuts and partitions (`drops`), and
the forwarder process that delays frames where the kernel has no netem
(`forwarder`).

Everything here works on one namespace at a time and knows nothing of nodes or
topologies; the layers above compose it.
"""
