"""pytest-netns: real network topologies around test containers, as pytest fixtures.

The public names below are loaded on first use (PEP 562): `import
pytest_netns`, which pytest does for every run where the plugin is
installed, loads no other module and makes no system call.

The package is layered, each layer importing only from those before it:
`errors`, `ownership`, `choices`, `units` (the base); `kernel` (namespaces, netlink);
`nodes` (containers, namespaces, the host); `probes`; `topology` (describe,
plan, build); `report` (failure reports, captures, diagrams); `lifecycle`
(session start and end, crash recovery); and at the top the pytest `plugin`,
the `cli` and the `doctor`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the same names, for type checkers (`as` marks a re-export)
    from .errors import (
        BackgroundOutputWarning as BackgroundOutputWarning,
    )
    from .errors import (
        CommandFailedError as CommandFailedError,
    )
    from .errors import (
        CommandNotFoundError as CommandNotFoundError,
    )
    from .errors import (
        CommandStartError as CommandStartError,
    )
    from .errors import (
        ContainerError as ContainerError,
    )
    from .errors import (
        DockerUnavailableError as DockerUnavailableError,
    )
    from .errors import (
        EgressError as EgressError,
    )
    from .errors import (
        ExecTimeoutError as ExecTimeoutError,
    )
    from .errors import (
        HostnameError as HostnameError,
    )
    from .errors import (
        ImageError as ImageError,
    )
    from .errors import (
        ImpairmentError as ImpairmentError,
    )
    from .errors import (
        InterfaceNameError as InterfaceNameError,
    )
    from .errors import (
        InvalidAddressError as InvalidAddressError,
    )
    from .errors import (
        InvalidArgumentError as InvalidArgumentError,
    )
    from .errors import (
        InvalidCommandError as InvalidCommandError,
    )
    from .errors import (
        InvalidImpairmentError as InvalidImpairmentError,
    )
    from .errors import (
        InvalidProbeError as InvalidProbeError,
    )
    from .errors import (
        InvalidTopologyError as InvalidTopologyError,
    )
    from .errors import (
        IPv6UnavailableError as IPv6UnavailableError,
    )
    from .errors import (
        LabFileError as LabFileError,
    )
    from .errors import (
        LabStateError as LabStateError,
    )
    from .errors import (
        MissingToolError as MissingToolError,
    )
    from .errors import (
        NetnsError as NetnsError,
    )
    from .errors import (
        NodeClosedError as NodeClosedError,
    )
    from .errors import (
        NotPermittedError as NotPermittedError,
    )
    from .errors import (
        SubnetExhaustedError as SubnetExhaustedError,
    )
    from .errors import (
        SubnetOverlapError as SubnetOverlapError,
    )
    from .errors import (
        SubnetTooSmallError as SubnetTooSmallError,
    )
    from .errors import (
        TopologyBuildError as TopologyBuildError,
    )
    from .errors import (
        UnsupportedImpairmentError as UnsupportedImpairmentError,
    )
    from .errors import (
        UnsupportedKindError as UnsupportedKindError,
    )
    from .errors import (
        VerificationError as VerificationError,
    )
    from .lifecycle.shared import NetnsFactory as NetnsFactory
    from .nodes.base import (
        Interface as Interface,
    )
    from .nodes.base import (
        Node as Node,
    )
    from .nodes.container import ContainerNode as ContainerNode
    from .nodes.namespace import NamespaceNode as NamespaceNode
    from .nodes.process import ExecResult as ExecResult
    from .nodes.process import Process as Process
    from .probes.api import (
        assert_reachable as assert_reachable,
    )
    from .probes.api import (
        assert_unreachable as assert_unreachable,
    )
    from .probes.api import (
        ping as ping,
    )
    from .probes.api import (
        ping_stats as ping_stats,
    )
    from .probes.api import (
        probe as probe,
    )
    from .probes.api import (
        probe_tcp as probe_tcp,
    )
    from .probes.api import (
        probe_udp as probe_udp,
    )
    from .probes.api import (
        wait_for_tcp as wait_for_tcp,
    )
    from .probes.matrix import (
        ReachabilityMatrix as ReachabilityMatrix,
    )
    from .probes.matrix import (
        reachability_matrix as reachability_matrix,
    )
    from .probes.result import ProbeResult as ProbeResult
    from .probes.series import PingStats as PingStats
    from .topology.builder import TopologyBuilder as TopologyBuilder
    from .topology.factories import (
        BridgedPairFactory as BridgedPairFactory,
    )
    from .topology.factories import (
        HostOnlyLinkFactory as HostOnlyLinkFactory,
    )
    from .topology.factories import (
        IsolatedContainerFactory as IsolatedContainerFactory,
    )
    from .topology.factories import (
        LabFactory as LabFactory,
    )
    from .topology.factories import (
        NatUplinkFactory as NatUplinkFactory,
    )
    from .topology.factories import (
        TopologyFactory as TopologyFactory,
    )
    from .topology.faults import Flapping as Flapping
    from .topology.faults import Partition as Partition
    from .topology.links import Link as Link
    from .topology.recipes import (
        BridgedPair as BridgedPair,
    )
    from .topology.recipes import (
        HostOnlyLink as HostOnlyLink,
    )
    from .topology.recipes import (
        IsolatedContainer as IsolatedContainer,
    )
    from .topology.recipes import (
        NatUplink as NatUplink,
    )
    from .topology.segments import Segment as Segment
    from .topology.spec import HOST as HOST
    from .topology.topology import Topology as Topology

# public name -> the module that defines it
_WHERE = {
    **dict.fromkeys(
        ["BackgroundOutputWarning", "CommandFailedError", "CommandNotFoundError",
         "CommandStartError", "ContainerError", "DockerUnavailableError", "EgressError",
         "ExecTimeoutError", "HostnameError", "ImageError", "ImpairmentError",
         "IPv6UnavailableError", "InterfaceNameError", "InvalidAddressError",
         "InvalidArgumentError", "InvalidCommandError", "InvalidImpairmentError",
         "InvalidProbeError", "InvalidTopologyError", "LabFileError", "LabStateError",
         "MissingToolError", "NetnsError",
         "NodeClosedError", "NotPermittedError", "SubnetExhaustedError", "SubnetOverlapError",
         "SubnetTooSmallError", "TopologyBuildError", "UnsupportedImpairmentError",
         "UnsupportedKindError",
         "VerificationError"], "errors"),
    "Interface": "nodes.base",
    "Node": "nodes.base",
    "ContainerNode": "nodes.container",
    "NamespaceNode": "nodes.namespace",
    "ExecResult": "nodes.process",
    "Process": "nodes.process",
    **dict.fromkeys(["assert_reachable", "assert_unreachable", "ping", "ping_stats", "probe",
                     "probe_tcp", "probe_udp", "wait_for_tcp"], "probes.api"),
    "ReachabilityMatrix": "probes.matrix",
    "reachability_matrix": "probes.matrix",
    "ProbeResult": "probes.result",
    "PingStats": "probes.series",
    "TopologyBuilder": "topology.builder",
    "Flapping": "topology.faults",
    "Partition": "topology.faults",
    **dict.fromkeys(["BridgedPairFactory", "HostOnlyLinkFactory", "IsolatedContainerFactory",
                     "LabFactory", "NatUplinkFactory", "TopologyFactory"],
                    "topology.factories"),
    "Link": "topology.links",
    **dict.fromkeys(["BridgedPair", "HostOnlyLink", "IsolatedContainer", "NatUplink"],
                    "topology.recipes"),
    "Segment": "topology.segments",
    "NetnsFactory": "lifecycle.shared",
    "HOST": "topology.spec",
    "Topology": "topology.topology",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            value: Any = version("pytest-netns")
        except PackageNotFoundError:  # a bare checkout that was never installed
            value = "0+unknown"
    elif name in _WHERE:
        value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return [*__all__, "__version__"]
