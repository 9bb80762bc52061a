"""`Node.exec` and `Node.spawn`: the same behaviour and the same errors on both backends.

Every test runs on a namespace node and on a container node (conftest.py
parametrises `netns_backend`). What ran, and what is still running, is read
from /proc (netcheck.processes_in: each process's network namespace and
command line), not from the library's own process tracking. No test has a
timing threshold: a command that must not hold exec is shown to be still
running when exec returns, and one that must die is shown gone.

The tests named after issue 11's reproducers failed on the code before it.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

import pytest
from netcheck import netns_identity, processes_in, running

from pytest_netns import (
    BackgroundOutputWarning,
    CommandFailedError,
    CommandNotFoundError,
    CommandStartError,
    ExecResult,
    ExecTimeoutError,
    InvalidCommandError,
    NetnsError,
    Node,
    NodeClosedError,
    Process,
    ping,
    probe_tcp,
)


def wait_until(predicate: Callable[[], object], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return bool(predicate())


@pytest.fixture
def node(make_topology: Any) -> Node:
    """One node alone, on the backend of this run."""
    t = make_topology(verify=False)
    t.node("a")
    return t.build()["a"]


@pytest.fixture
def workdir(node: Node, tmp_path: Any) -> str:
    """A directory that exists in the node's filesystem (the host's, or the image's)."""
    return "/bin" if node.container is not None else str(tmp_path)


def listening(node: Node, port: int) -> bool:
    """A TCP socket listens on `port` inside the node (its own /proc/net tables)."""

    def read() -> str:  # busybox nc listens on a dual-stack tcp6 socket
        text = ""
        for table in ("tcp", "tcp6"):
            with open(f"/proc/thread-self/net/{table}") as f:
                text += f.read()
        return text

    for line in node.call(read).splitlines():
        fields = line.split()
        if len(fields) > 3 and fields[1].endswith(f":{port:04X}") and fields[3] == "0A":
            return True
    return False


# -- 1. a command that backgrounds a child ------------------------------------------


def test_exec_returns_when_its_main_process_exits_despite_a_background_child(
    node: Node, netns_backend: str
) -> None:
    """Issue 11 #1: `sh -c "sleep 30 &"` held exec for 30 s on namespaces."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = node.exec(["busybox", "sh", "-c", "echo before; busybox sleep 30 &"],
                           timeout=5)
    assert result == (0, "before\n")
    # exec came back while the child it left still runs: it did not wait for it
    assert wait_until(lambda: running(node.netns, "busybox sleep 30")), processes_in(node.netns)
    # on Docker the engine then stalls the container's next execs: the user is told why
    expected = [BackgroundOutputWarning] if netns_backend == "docker" else []
    assert [w.category for w in caught] == expected


def test_background_child_with_redirected_output_costs_nothing(node: Node) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        node.exec(["busybox", "sh", "-c", "busybox sleep 620 >/dev/null 2>&1 &"])
        assert node.exec(["busybox", "true"]) == (0, "")
    assert wait_until(lambda: running(node.netns, "busybox sleep 620"))


def test_a_foreground_child_past_the_timeout_is_an_error(node: Node) -> None:
    """Issue 11 #1: `sh -c "sleep 20; echo done"` with timeout=2 returned (-9, '') after 20 s."""
    with pytest.raises(ExecTimeoutError) as info:
        node.exec(["busybox", "sh", "-c", "busybox sleep 20; echo done"], timeout=2)
    assert info.value.timeout == 2
    assert not running(node.netns, "busybox sleep 20"), processes_in(node.netns)


# -- 2 and 3. timeouts ---------------------------------------------------------------------


def test_timeout_is_enforced_and_reported(node: Node) -> None:
    """Issue 11 #2 and #3: on Docker `exec(["sleep", "20"], timeout=2)` returned (0, '')."""
    started = time.monotonic()
    with pytest.raises(ExecTimeoutError) as info:
        node.exec(["busybox", "sleep", "20"], timeout=2)
    assert time.monotonic() - started < 20  # it did not wait for the command
    assert isinstance(info.value, NetnsError) and isinstance(info.value, TimeoutError)
    assert "busybox sleep 20" in str(info.value) and "2 s" in str(info.value)
    assert info.value.node == "a" and info.value.killed
    assert not running(node.netns, "busybox sleep 20"), processes_in(node.netns)


def test_timeout_kills_the_command_and_its_children(node: Node) -> None:
    with pytest.raises(ExecTimeoutError) as info:
        node.exec(["busybox", "sh", "-c", "echo partial; busybox sleep 301 & busybox sleep 302"],
                  timeout=1)
    assert info.value.output == "partial\n"
    assert info.value.argv[-1].startswith("echo partial")
    assert not running(node.netns, "busybox sleep 301"), processes_in(node.netns)
    assert not running(node.netns, "busybox sleep 302"), processes_in(node.netns)


def test_timeout_none_waits(node: Node) -> None:
    assert node.exec(["busybox", "sleep", "0.2"], timeout=None) == (0, "")


@pytest.mark.parametrize("timeout", [0, -1, "5", True])
def test_invalid_timeout(node: Node, timeout: object) -> None:
    with pytest.raises(NetnsError, match="invalid timeout"):
        node.exec(["busybox", "true"], timeout=timeout)  # type: ignore[arg-type]


class Interrupted(Exception):
    pass


def test_interrupted_exec_leaves_nothing_running(node: Node) -> None:
    """Ctrl-C (here: an exception from a signal handler) during exec kills the command."""

    def interrupt(signum: int, frame: object) -> None:
        raise Interrupted

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, 0.5)
    try:
        with pytest.raises(Interrupted):
            node.exec(["busybox", "sh", "-c", "busybox sleep 621 & busybox sleep 622"])
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert wait_until(lambda: not running(node.netns, "busybox sleep 621")
                      and not running(node.netns, "busybox sleep 622")), processes_in(node.netns)


# -- 4. one rule for strings, one error for "cannot start" --------------------------------


def test_a_string_command_is_split_the_same_way_on_both_backends(node: Node) -> None:
    """Issue 11 #4: `exec("busybox hostname")` raised FileNotFoundError on namespaces."""
    code, output = node.exec("busybox hostname")
    assert code == 0 and output.strip()
    assert node.exec("busybox echo 'a  b' c\\ d") == (0, "a  b c d\n")
    assert node.exec("busybox echo '$HOME|x'") == (0, "$HOME|x\n")


@pytest.mark.parametrize("line", ["busybox echo a | busybox wc", "busybox echo $HOME",
                                  "busybox sleep 1 &", "busybox echo a > f", "echo 'unbalanced"])
def test_a_string_with_shell_syntax_is_refused(node: Node, line: str) -> None:
    with pytest.raises(InvalidCommandError) as info:
        node.exec(line)
    assert isinstance(info.value, ValueError) and repr(line) in str(info.value)


@pytest.mark.parametrize("command", ["", [], [""], "   ", b"busybox true"])
def test_an_empty_or_bytes_command_is_refused(node: Node, command: Any) -> None:
    with pytest.raises(InvalidCommandError):
        node.exec(command)


def test_a_missing_program_raises_command_not_found(node: Node) -> None:
    """Issue 11 #4: FileNotFoundError on namespaces, (126, "OCI runtime exec failed…") on Docker."""
    with pytest.raises(CommandNotFoundError) as info:
        node.exec(["fd-no-such-program", "arg"])
    assert "fd-no-such-program" in str(info.value) and "'a'" in str(info.value)
    assert info.value.argv == ["fd-no-such-program", "arg"]
    with pytest.raises(CommandNotFoundError):
        node.exec("/fd/no/such/path")


def test_spawn_of_a_missing_program_raises_command_not_found(node: Node) -> None:
    """Issue 11 #4: `spawn(["no-such-thing"])` raised docker.errors.APIError."""
    with pytest.raises(CommandNotFoundError):
        node.spawn(["no-such-thing"])


def test_a_file_that_is_not_executable_raises_command_not_found(
    node: Node, workdir: str
) -> None:
    path = os.path.join(workdir if node.container is None else "/", "fd-noexec")
    node.exec(["busybox", "sh", "-c", f"echo 'echo hi' > {path}; busybox chmod 644 {path}"],
              check=True)
    with pytest.raises(CommandNotFoundError, match="ermission denied"):
        node.exec([path])
    with pytest.raises(CommandNotFoundError):
        node.exec(["/"])  # a directory


def test_real_exit_codes_126_and_127_stay_exit_codes(node: Node) -> None:
    assert node.exec(["busybox", "sh", "-c", "exit 127"]) == (127, "")
    assert node.exec(["busybox", "sh", "-c", "echo 'OCI runtime exec failed: x'; exit 126"]) == (
        126, "OCI runtime exec failed: x\n")
    code, output = node.exec(["busybox", "sh", "-c", "fd-no-such-program"])
    assert code == 127 and "fd-no-such-program" in output


def test_a_bad_cwd_or_user_raises_command_start_error(node: Node) -> None:
    with pytest.raises(CommandStartError) as info:
        node.exec(["busybox", "true"], cwd="/fd/no/such/dir")
    assert not isinstance(info.value, CommandNotFoundError)
    assert "/fd/no/such/dir" in str(info.value)
    with pytest.raises(CommandStartError) as info:
        node.exec(["busybox", "true"], user="fd-no-such-user")
    assert not isinstance(info.value, CommandNotFoundError)
    assert "fd-no-such-user" in str(info.value)


# -- results, check, env, cwd, user, input ----------------------------------------------


def test_the_result_unpacks_and_carries_details(node: Node, netns_backend: str) -> None:
    result = node.exec(["busybox", "sh", "-c", "echo out; echo err >&2; exit 3"])
    code, output = result
    assert isinstance(result, ExecResult) and isinstance(result, tuple)
    assert code == 3 and not result.ok and result.returncode == 3
    assert result.stdout == result.output == output and result.raw == output.encode()
    if netns_backend == "namespace":  # one pipe: the order of writes is kept
        assert output == "out\nerr\n"
    else:  # the engine copies stdout and stderr through two pipes: order not kept
        assert sorted(output.splitlines()) == ["err", "out"]
    assert result.argv[0] == "busybox" and result.duration > 0


def test_check_raises_with_the_code_and_output(node: Node) -> None:
    with pytest.raises(CommandFailedError) as info:
        node.exec(["busybox", "sh", "-c", "echo boom >&2; exit 4"], check=True)
    assert info.value.returncode == 4 and info.value.output == "boom\n"
    assert "status 4" in str(info.value) and "boom" in str(info.value)
    assert node.exec(["busybox", "true"], check=True) == (0, "")


def test_env_cwd_and_user(node: Node, workdir: str) -> None:
    assert node.exec(["busybox", "sh", "-c", 'echo "$FD_A $FD_B"'],
                     env={"FD_A": "1", "FD_B": "two words"}) == (0, "1 two words\n")
    code, output = node.exec(["busybox", "pwd"], cwd=workdir)
    where = workdir if node.container is not None else os.path.realpath(workdir)
    assert (code, output) == (0, where + "\n")
    assert node.exec(["busybox", "id"], user="1234:5678") == (
        0, "uid=1234 gid=5678 groups=5678\n")
    assert node.exec(["busybox", "id", "-u"], user=1234) == (0, "1234\n")


def test_input_is_the_commands_stdin(node: Node) -> None:
    assert node.exec(["busybox", "cat"], input=b"bytes\n") == (0, "bytes\n")
    assert node.exec(["busybox", "cat"], input="str é\n") == (0, "str é\n")
    assert node.exec(["busybox", "cat"], input="") == (0, "")
    assert node.exec(["busybox", "wc", "-c"], input=None)[1].strip() == "0"
    data = os.urandom(1 << 20)  # bigger than any pipe: written while output is read
    result = node.exec(["busybox", "cat"], input=data, timeout=60)
    assert result.returncode == 0 and result.raw == data
    assert node.exec(["busybox", "true"], input=os.urandom(1 << 20)) == (0, "")


def test_large_output(node: Node) -> None:
    code, output = node.exec(["busybox", "seq", "1", "300000"], timeout=60)
    assert (code, output) == (0, "".join(f"{i}\n" for i in range(1, 300001)))


def test_killed_by_a_signal_reports_128_plus_n(node: Node) -> None:
    assert node.exec(["busybox", "sh", "-c", "kill -9 $$"])[0] == 137
    assert node.exec(["busybox", "sh", "-c", "kill -TERM $$"])[0] == 143


def test_concurrent_execs(node: Node) -> None:
    results: dict[int, object] = {}

    def run(i: int) -> None:
        results[i] = node.exec(["busybox", "sh", "-c", f"busybox sleep 0.2; echo {i}"])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {i: (0, f"{i}\n") for i in range(6)}


# -- 5. a chatty spawned process never blocks ---------------------------------------------


def test_a_spawned_process_never_blocks_on_its_output(node: Node) -> None:
    """Issue 11 #5: a spawned server froze after 64 KiB of output nobody read."""
    process = node.spawn(
        ["busybox", "sh", "-c", "busybox seq 1 60000; echo done; busybox sleep 618"])
    try:
        assert wait_until(lambda: running(node.netns, "busybox sleep 618")), (
            "the process stopped writing: nobody reads its output")
        assert wait_until(lambda: process.output().endswith("59999\n60000\ndone\n"))
        assert process in node.processes
    finally:
        process.stop()


def test_output_buffer_is_bounded_and_the_log_file_complete(node: Node, tmp_path: Any) -> None:
    log = str(tmp_path / "server.log")
    process = node.executor.spawn(["busybox", "seq", "1", "100000"], limit=1 << 16,
                                  log_path=log)
    assert process.wait(timeout=30) == 0
    kept = process.output()
    assert kept.endswith("\n99999\n100000\n") and len(kept) <= 1 << 16
    assert process.output_buffer.dropped > 0
    with open(log) as f:
        assert f.read() == "".join(f"{i}\n" for i in range(1, 100001))


# -- 6. stop() ends the whole tree; nothing outlives the node -----------------------------


def test_stop_ends_the_children(node: Node) -> None:
    """Issue 11 #6: `sh -c "sleep 4242; echo"`'s sleep survived stop()."""
    process = node.spawn(["busybox", "sh", "-c", "busybox sleep 4242; echo"])
    assert wait_until(lambda: running(node.netns, "busybox sleep 4242"))
    assert process.stop() == 143  # SIGTERM, as 128+15 on both backends
    assert not running(node.netns, "busybox sleep 4242"), processes_in(node.netns)


def test_stop_ends_a_child_that_called_setsid(node: Node) -> None:
    process = node.spawn(["busybox", "sh", "-c", "busybox setsid busybox sleep 623; echo"])
    assert wait_until(lambda: running(node.netns, "busybox sleep 623"))
    process.stop()
    assert not running(node.netns, "busybox sleep 623"), processes_in(node.netns)


def test_stop_closes_a_forking_servers_port(node: Node) -> None:
    """Issue 11 #6: after `spawn(["sh","-c","nc -ll -p 9200 -e cat"]).stop()` the port was open."""
    process = node.spawn(["busybox", "sh", "-c", "busybox nc -ll -p 9200 -e busybox cat"])
    assert wait_until(lambda: listening(node, 9200))
    client = node.call(socket.create_connection, ("127.0.0.1", 9200), 5)
    try:
        client.sendall(b"ping\n")
        assert client.recv(100) == b"ping\n"  # a forked `cat` answers
        assert running(node.netns, "busybox cat")
        process.stop()
        assert not listening(node, 9200)
        assert not running(node.netns, "busybox nc -ll -p 9200 -e busybox cat")
        assert not running(node.netns, "busybox cat"), processes_in(node.netns)
    finally:
        client.close()


def test_stop_escalates_to_sigkill_after_the_grace(node: Node) -> None:
    process = node.spawn(["busybox", "sh", "-c", "trap '' TERM; busybox sleep 619"])
    assert wait_until(lambda: running(node.netns, "busybox sleep 619"))
    assert process.stop(grace=0.5) == 137
    assert not running(node.netns, "busybox sleep 619")


def test_process_lifecycle(node: Node) -> None:
    process = node.spawn(["busybox", "sh", "-c", "echo up; busybox sleep 600"])
    assert isinstance(process, Process)
    assert process.pid > 0 and process.poll() is None and process.returncode is None
    assert process.running
    with pytest.raises(ExecTimeoutError) as info:
        process.wait(timeout=0.2)
    assert not info.value.killed and process.running
    assert wait_until(lambda: process.output() == "up\n")
    assert process.stop() == 143
    assert process.stop() == 143 and process.returncode == 143 and not process.running


def test_process_exit_status_and_context_manager(node: Node) -> None:
    with node.spawn(["busybox", "sh", "-c", "echo bye; exit 5"]) as process:
        assert process.wait(timeout=10) == 5
        assert process.output() == "bye\n"
    assert process.returncode == 5
    with node.spawn(["busybox", "sleep", "600"]) as process:
        pass
    assert process.returncode == 143 and not running(node.netns, "busybox sleep 600")


def test_closing_leaves_no_process_started_through_the_node(make_topology: Any) -> None:
    """Issue 11 #6: a spawned `sh -c "sleep 4242; echo"` and exec leftovers outlived the test."""
    t = make_topology(verify=False)
    t.node("a")
    net = t.build()
    node = net["a"]
    netns = netns_identity(node.netns)
    node.spawn(["busybox", "sh", "-c", "busybox sleep 4242; echo"])
    node.spawn(["busybox", "sh", "-c", "busybox setsid busybox sleep 624 & busybox sleep 625"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BackgroundOutputWarning)
        node.exec(["busybox", "sh", "-c", "busybox sleep 601 &"], timeout=5)
        node.exec(["busybox", "sh", "-c", "busybox sleep 602 >/dev/null 2>&1 &"], timeout=5)
    started = ["busybox sleep 4242", "busybox sleep 624", "busybox sleep 601",
               "busybox sleep 602"]
    assert wait_until(lambda: all(running(netns, c) for c in started)), processes_in(netns)
    net.close()
    assert wait_until(lambda: not any(running(netns, c) for c in started)), processes_in(netns)


def test_the_nodes_of_an_attached_container_and_the_host_end_what_they_started(
    make_topology: Any, user_container: Any
) -> None:
    """Not our namespace, so no sweep: every command's tree is tracked instead."""
    t = make_topology(verify=False)
    t.attach(user_container, "u")
    net = t.build()
    node = net["u"]
    netns = netns_identity(node.netns)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BackgroundOutputWarning)
        node.exec(["/bin/busybox", "sh", "-c", "busybox sleep 603 >/dev/null 2>&1 &"])
    node.spawn(["/bin/busybox", "sleep", "604"])
    assert wait_until(lambda: running(netns, "busybox sleep 603")
                      and running(netns, "/bin/busybox sleep 604"))
    net.close()
    assert not running(netns, "busybox sleep 603") and not running(netns, "/bin/busybox sleep 604")
    assert user_container.exec_run(["/bin/busybox", "true"]).exit_code == 0  # left running


# -- 7. a closed topology's nodes refuse at once -------------------------------------------


def test_a_closed_topologys_node_refuses_commands_and_probes(make_topology: Any) -> None:
    """Issue 11 #7: exec hung on namespaces; on Docker it ran, and ping said no-route."""
    t = make_topology(verify=False)
    a, b = t.node("a"), t.node("b")
    t.connect(a, b)
    net = t.build()
    node = net["a"]
    net.close()
    with pytest.raises(NodeClosedError, match="closed"):
        node.exec(["busybox", "true"])
    with pytest.raises(NodeClosedError):
        node.spawn(["busybox", "sleep", "1"])
    with pytest.raises(NodeClosedError):
        ping(node, "10.1.1.1")
    with pytest.raises(NodeClosedError):
        probe_tcp("host", net["b"], 80)


def test_a_tool_run_inside_a_namespace_cannot_hang() -> None:
    """The helper that runs nft/iptables in a namespace killed only the tool on timeout,
    then waited without limit for the children holding its pipe."""
    from pytest_netns.kernel.netns import Netns

    handle = Netns.anonymous("fd-tool-test")
    try:
        netns = handle.call(netns_identity, "/proc/thread-self/ns/net")
        with pytest.raises(ExecTimeoutError) as info:
            handle.run(["sh", "-c", "echo started; sleep 626 & sleep 627"], timeout=1)
        assert info.value.output == "started\n" and info.value.argv[0] == "sh"
        assert not running(netns, "sleep 626") and not running(netns, "sleep 627")
        assert handle.run(["sh", "-c", "echo ok >&2; exit 3"]) == (3, "ok\n")
    finally:
        handle.close()
