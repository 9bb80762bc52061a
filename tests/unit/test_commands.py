"""Pure logic of running commands: the string rule, results, output buffers, names.

No root, no kernel: the behaviour inside real nodes is tests/test_exec.py's.
"""

from __future__ import annotations

import struct
from types import SimpleNamespace
from typing import Any

import pytest

from pytest_netns import (
    CommandFailedError,
    ExecResult,
    InvalidCommandError,
    InvalidTopologyError,
    NetnsError,
)
from pytest_netns.nodes.command import input_bytes, to_argv, unquoted_operators
from pytest_netns.nodes.images import DEFAULT_COMMAND, IMAGE_LABEL, container_command
from pytest_netns.nodes.output import DockerDemux, OutputBuffer
from pytest_netns.probes.api import fold_states
from pytest_netns.topology.builder import check_node_name


@pytest.mark.parametrize(("line", "argv"), [
    ("ping -c1 10.0.0.2", ["ping", "-c1", "10.0.0.2"]),
    ("echo 'a  b' c\\ d", ["echo", "a  b", "c d"]),
    ("echo '$HOME|x' \"q\"", ["echo", "$HOME|x", "q"]),
    ("echo a\\|b", ["echo", "a|b"]),
])
def test_a_string_is_split_like_a_shell_would(line: str, argv: list[str]) -> None:
    assert to_argv(line) == argv


@pytest.mark.parametrize(("line", "operators"), [
    ("a | b", ["|"]), ("a && b", ["&", "&"]), ("a; b", [";"]), ("a > f", [">"]),
    ("echo $HOME", ["$"]), ('echo "$HOME"', ["$"]), ("echo `id`", ["`", "`"]),
    ("(a)", ["(", ")"]), ("echo '$HOME'", []), ("echo \\$HOME", []),
])
def test_unquoted_shell_operators_are_found(line: str, operators: list[str]) -> None:
    assert unquoted_operators(line) == operators


@pytest.mark.parametrize("command", ["a | b", "sleep 1 &", "echo 'unbalanced", "", "  ", [],
                                     [""], b"true", ["a", 1], ["a\0b"], 5])
def test_commands_that_cannot_be_an_argv(command: Any) -> None:
    with pytest.raises(InvalidCommandError) as info:
        to_argv(command)
    assert isinstance(info.value, NetnsError) and isinstance(info.value, ValueError)


def test_a_list_is_taken_verbatim() -> None:
    from pathlib import Path

    assert to_argv(["sh", "-c", "a | b; $X"]) == ["sh", "-c", "a | b; $X"]
    assert to_argv(("ls", Path("/tmp"))) == ["ls", "/tmp"]


def test_input_is_bytes() -> None:
    assert input_bytes("é") == "é".encode()
    assert input_bytes(bytearray(b"x")) == b"x" and input_bytes(None) is None
    with pytest.raises(InvalidCommandError):
        input_bytes(5)  # type: ignore[arg-type]


def test_exec_result_is_still_the_old_pair() -> None:
    result = ExecResult(3, "out\n", argv=["x"], raw=b"out\n", node="a")
    code, output = result
    assert (code, output) == (3, "out\n") and result == (3, "out\n")
    assert result.returncode == 3 and result.stdout == result.output == "out\n"
    assert not result.ok and repr(result) == "ExecResult(returncode=3, output='out\\n')"
    with pytest.raises(CommandFailedError, match=r"`x` in node 'a' exited with status 3"):
        result.check()
    assert ExecResult(0, "").check().ok


def test_output_buffer_keeps_the_end() -> None:
    buf = OutputBuffer(limit=10)
    written = b"".join(f"{i:03d}\n".encode() for i in range(100))
    for i in range(0, len(written), 4):
        buf.write(written[i : i + 4])
    assert buf.getvalue() == written[-10:] and buf.dropped == len(written) - 10
    unbounded = OutputBuffer(limit=None)
    unbounded.write(b"x" * 1000)
    assert unbounded.dropped == 0 and len(unbounded.getvalue()) == 1000


def test_docker_frames_are_joined_in_arrival_order() -> None:
    def frame(stream: int, data: bytes) -> bytes:
        return struct.pack(">BxxxL", stream, len(data)) + data

    demux = DockerDemux()
    wire = frame(1, b"out\n") + frame(2, b"err\n") + frame(1, b"more")
    assert demux.feed(wire[:5]) == b""  # half a header
    assert demux.feed(wire[5:-2]) == b"out\nerr\n"
    assert demux.feed(wire[-2:]) == b"more"


def _image(config: dict[str, Any]) -> Any:
    return SimpleNamespace(attrs={"Config": config})


def test_the_images_own_command_runs_unless_one_is_given() -> None:
    app = _image({"Entrypoint": ["/app"], "Cmd": ["--port", "80"]})
    assert container_command(app, None) is None  # the engine runs ENTRYPOINT + CMD
    assert container_command(app, "--port 81") == ["--port", "81"]
    assert container_command(_image({"Cmd": ["/app"]}), None) is None
    # nothing to run, or one of ours (whose CMD is a shell that would exit): sleep
    assert container_command(_image({}), None) == DEFAULT_COMMAND
    ours = _image({"Cmd": ["/bin/sh"], "Labels": {IMAGE_LABEL: "1"}})
    assert container_command(ours, None) == DEFAULT_COMMAND


@pytest.mark.parametrize("name", ["a", "n0", "web-1", "db_primary", "x.y", "_a", "A" * 63])
def test_node_names_every_backend_accepts(name: str) -> None:
    check_node_name(name)


@pytest.mark.parametrize("name", ["my node", "nœud-ü", "-a", ".a", "a/b", "a:b", "", "123",
                                  "A" * 64, "host", None, 3])
def test_node_names_docker_or_a_hosts_file_would_refuse(name: Any) -> None:
    with pytest.raises(InvalidTopologyError, match="name"):
        check_node_name(name)


def test_probe_retries_fold_into_runs() -> None:
    assert fold_states(["closed"] * 37 + ["filtered", "filtered", "closed"]) == (
        "closed x37, filtered x2, closed")
    assert fold_states(["closed"]) == "closed"
