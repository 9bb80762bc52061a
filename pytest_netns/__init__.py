"""pytest-netns: real network topologies around test containers, as pytest fixtures."""

from .builder import TopologyBuilder
from .errors import (
    ContainerError,
    DockerUnavailableError,
    EgressError,
    ImageError,
    InterfaceNameError,
    InvalidAddressError,
    InvalidTopologyError,
    NetnsError,
    NotPermittedError,
    SubnetExhaustedError,
    SubnetOverlapError,
    SubnetTooSmallError,
    TopologyBuildError,
    UnsupportedKindError,
    VerificationError,
)
from .nodes import ContainerNode, NamespaceNode, Node
from .probes import (
    ProbeResult,
    ReachabilityMatrix,
    assert_reachable,
    assert_unreachable,
    ping,
    probe,
    probe_tcp,
    probe_udp,
    reachability_matrix,
    wait_for_tcp,
)
from .recipes import BridgedPair, HostOnlyLink, IsolatedContainer, NatUplink
from .segments import HOST, Segment
from .topology import Topology

__version__ = "0.1.0"

__all__ = [
    "HOST",
    "BridgedPair",
    "ContainerError",
    "ContainerNode",
    "DockerUnavailableError",
    "EgressError",
    "HostOnlyLink",
    "ImageError",
    "InterfaceNameError",
    "InvalidAddressError",
    "InvalidTopologyError",
    "IsolatedContainer",
    "NamespaceNode",
    "NatUplink",
    "NetnsError",
    "Node",
    "NotPermittedError",
    "ProbeResult",
    "ReachabilityMatrix",
    "Segment",
    "SubnetExhaustedError",
    "SubnetOverlapError",
    "SubnetTooSmallError",
    "Topology",
    "TopologyBuildError",
    "TopologyBuilder",
    "UnsupportedKindError",
    "VerificationError",
    "assert_reachable",
    "assert_unreachable",
    "ping",
    "probe",
    "probe_tcp",
    "probe_udp",
    "reachability_matrix",
    "wait_for_tcp",
]
