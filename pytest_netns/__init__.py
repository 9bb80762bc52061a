"""pytest-netns: real network topologies around test containers, as pytest fixtures."""

from .builder import HOST, Segment, TopologyBuilder
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
from .recipes import BridgedPair, HostOnlyLink, IsolatedContainer, NatUplink
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
    "Segment",
    "SubnetExhaustedError",
    "SubnetOverlapError",
    "SubnetTooSmallError",
    "Topology",
    "TopologyBuilder",
    "TopologyBuildError",
    "UnsupportedKindError",
    "VerificationError",
]
