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


class LabFileError(InvalidTopologyError):
    """A lab file that cannot be used: the message names the file, the place in it
    (`links[3].endpoints[1]`, with its line where known) and what would be valid."""

    def __init__(self, problem: str, place: str = "", file: str | None = None,
                 line: int | None = None) -> None:
        self.problem = problem
        self.place = place
        self.file = file
        self.line = line
        where = f"{file}:{line}: " if file and line else f"{file}: " if file else ""
        super().__init__(f"{where}{place}: {problem}" if place else f"{where}{problem}")


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


class LabStateError(NetnsError):
    """A lab that is up when it must not be (a second `up`), or is not up (or not
    whole) when a command needs it."""


class ImpairmentError(NetnsError):
    """An impairment, cut or partition that the kernel refused, that did not take
    effect when checked, or whose forwarder process is gone."""


# -- commands run in nodes (`Node.exec`, `Node.spawn`) ---------------------------
#
# Every one names the node and the command as a line a user can paste, because
# a failed exec in a fixture is otherwise hard to place.


def _command_line(argv: list[str]) -> str:
    import shlex

    return shlex.join(argv)


def _output_tail(output: str, limit: int = 2000) -> str:
    """The end of a command's output, for a message (the end is where errors are)."""
    output = output.rstrip()
    if not output:
        return "no output"
    if len(output) > limit:
        output = "..." + output[-limit:]
    return f"output:\n{output}"


class InvalidCommandError(InvalidArgumentError):
    """A command that cannot be turned into an argv: empty, shell syntax in a string, bytes."""


class CommandStartError(NetnsError):
    """The command never started: a bad working directory, an unknown user, no such program.

    Raised the same way on both backends, so a test can tell "my program is
    not in this node" from "my program ran and failed" (an exit code).
    """

    def __init__(self, node: str, argv: list[str], reason: str) -> None:
        self.node = node
        self.argv = list(argv)
        self.reason = reason
        super().__init__(self._message())

    def _message(self) -> str:
        return f"cannot start `{_command_line(self.argv)}` in node {self.node!r}: {self.reason}"


class CommandNotFoundError(CommandStartError):
    """The program does not exist in the node, or is not an executable file."""

    def _message(self) -> str:
        return (
            f"{super()._message()}; is {self.argv[0]!r} installed there (namespace nodes run "
            "the host's programs, container nodes the image's), and is it executable?"
        )


class ExecTimeoutError(NetnsError, TimeoutError):
    """A command outlived its timeout.

    From `exec` it and every process it started were killed (`killed`);
    from `Process.wait` it keeps running. `output` is what it printed so far.
    """

    def __init__(self, node: str, argv: list[str], timeout: float, output: str,
                 killed: bool = True) -> None:
        self.node = node
        self.argv = list(argv)
        self.timeout = timeout
        self.output = output
        self.killed = killed
        what = "killed it and its children" if killed else "it is still running"
        super().__init__(
            f"`{_command_line(self.argv)}` in node {node!r} did not finish within "
            f"{timeout:g} s ({what}); {_output_tail(output)}"
        )


class CommandFailedError(NetnsError):
    """`check=True`, and the command exited with a status other than 0."""

    def __init__(self, node: str, argv: list[str], returncode: int, output: str) -> None:
        self.node = node
        self.argv = list(argv)
        self.returncode = returncode
        self.output = output
        super().__init__(
            f"`{_command_line(self.argv)}` in node {node!r} exited with status {returncode}; "
            f"{_output_tail(output)}"
        )


class BackgroundOutputWarning(UserWarning):
    """`exec` left background processes that still hold its output (Docker nodes).

    Harmless on namespace nodes. Docker 20.10's engine (and its containerd
    shim) then waits 2 s for that stream before it records the container's
    next exits, so the node's following execs take 2-4 s longer. Redirect
    the background process's output (`cmd >/dev/null 2>&1 &`) or start it
    with `spawn()`.
    """
