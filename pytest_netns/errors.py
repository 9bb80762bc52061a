"""Every error pytest-netns raises.

One base class lets users catch "the network fixture failed" without also
catching their own bugs; each subclass names the broken precondition so the
message can say what to do about it. Errors about a bad value also derive
from `ValueError`, so code written against the standard library's
conventions still catches them.
"""

from __future__ import annotations


class NetnsError(Exception):
    """Base of every error pytest-netns raises."""


# -- bad input: the message names the value and what would be valid ------------


class InvalidArgumentError(NetnsError, ValueError):
    """An argument pytest-netns cannot use (a timeout, a protocol, a count, ...)."""


class InvalidAddressError(InvalidArgumentError):
    """An IP address, subnet or prefix length that cannot be parsed or used."""


class SubnetTooSmallError(InvalidAddressError):
    """A subnet without room for every address the topology needs."""


class SubnetOverlapError(InvalidAddressError):
    """A subnet that collides with a host route or with another live topology."""


class InterfaceNameError(InvalidArgumentError):
    """An interface name the kernel would refuse (IFNAMSIZ, characters)."""


class InvalidTopologyError(InvalidArgumentError):
    """A topology description that cannot be built (unknown node, bad option)."""


class HostnameError(InvalidTopologyError):
    """A node name or alias that other nodes could not resolve (not a valid hostname)."""


class InvalidProbeError(InvalidArgumentError):
    """A probe asked for with arguments that cannot be sent (source, port, timeout)."""


class InvalidImpairmentError(InvalidArgumentError):
    """An impairment, cut or partition asked for with values that cannot be applied
    (a loss outside 0-100, an unparsable time, an unknown direction or link)."""


# -- the host cannot do what was asked ------------------------------------------


class SubnetExhaustedError(NetnsError):
    """No free subnet is left in the allocation pool."""


class UnsupportedKindError(NetnsError):
    """A kernel link driver (dummy, netem, ...) this kernel does not have."""


class UnsupportedImpairmentError(UnsupportedKindError):
    """An impairment this kernel cannot apply; the message names what would be needed."""


class IPv6UnavailableError(NetnsError):
    """IPv6 was asked for, but this host's kernel has it disabled (or built out)."""


class MissingToolError(NetnsError):
    """A host program pytest-netns needs (nft or iptables) is not installed."""


class NotPermittedError(NetnsError, PermissionError):
    """The process lacks root or CAP_NET_ADMIN / CAP_SYS_ADMIN."""


class DockerUnavailableError(NetnsError):
    """No Docker engine answers, but the Docker backend was asked for."""


class ImageError(NetnsError):
    """The test image is missing and cannot be built locally."""


class ContainerError(NetnsError):
    """A container that cannot become a node (not running, not found, gone, ...)."""


# -- building and using a topology ------------------------------------------------


class TopologyBuildError(NetnsError):
    """A kernel or engine call failed part-way through a build."""


class VerificationError(NetnsError):
    """A freshly built topology does not carry the traffic it should."""


class EgressError(NetnsError):
    """A probe would leave through an interface that no topology created."""


class NodeClosedError(NetnsError):
    """A node of a topology that was closed: nothing can run in it any more."""


class ImpairmentError(NetnsError):
    """An impairment, cut or partition that the kernel refused, that did not take
    effect when checked, or whose forwarder process is gone."""
