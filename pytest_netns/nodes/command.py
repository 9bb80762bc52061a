"""Turning what a user passes as a command into an argv, the same way on both backends.

The rule: a list is the argv, verbatim. A string is split into words the way
a POSIX shell splits them (`shlex.split`: quotes and backslashes work), and
is never run by a shell. So `"ping -c1 10.0.0.2"` works everywhere, and
`"echo a | wc"` would silently mean `echo` with three arguments, which is
why a string that has unquoted shell operators (| & ; < > ( ) $ `) is
refused: a shell would have given it another meaning. Ask for a shell
explicitly with `["sh", "-c", "echo a | wc"]`.

Docker's own API would split a string with its own rules, and the old
namespace backend ran it as one program name; one rule avoids both.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Sequence

from ..errors import InvalidCommandError

Command = str | Sequence[str | os.PathLike[str]]

SHELL_OPERATORS = frozenset("|&;<>()`$")


def unquoted_operators(line: str) -> list[str]:
    """Shell operator characters that a shell would act on (not quoted or escaped)."""
    found: list[str] = []
    quote = ""
    escaped = False
    for ch in line:
        if escaped:
            escaped = False
        elif quote == "'":
            if ch == "'":
                quote = ""
        elif ch == "\\":
            escaped = True
        elif quote == '"':
            if ch == '"':
                quote = ""
            elif ch in "$`":  # a shell expands these inside double quotes too
                found.append(ch)
        elif ch in "'\"":
            quote = ch
        elif ch in SHELL_OPERATORS:
            found.append(ch)
    return found


def to_argv(command: Command) -> list[str]:
    """The argv for `command` (see the module docstring for the rule)."""
    if isinstance(command, str):
        operators = unquoted_operators(command)
        if operators:
            raise InvalidCommandError(
                f"command string {command!r} contains shell syntax "
                f"({' '.join(sorted(set(operators)))}); strings are split into words but never "
                f"run by a shell: pass ['sh', '-c', {command!r}] to use one, or a list of "
                "arguments"
            )
        try:
            argv = shlex.split(command)
        except ValueError as exc:  # unbalanced quotes
            raise InvalidCommandError(f"cannot split command string {command!r}: {exc}") from None
    elif isinstance(command, (bytes, bytearray)):
        raise InvalidCommandError(f"command must be a str or a list of str, not bytes: {command!r}")
    else:
        try:
            argv = [os.fspath(arg) for arg in command]
        except TypeError:
            raise InvalidCommandError(
                f"command must be a str or a list of str, got {command!r}"
            ) from None
        bad = [arg for arg in argv if not isinstance(arg, str)]
        if bad:
            raise InvalidCommandError(f"command arguments must be str, got {bad!r} in {argv!r}")
    if not argv or not argv[0]:
        raise InvalidCommandError(f"empty command {command!r}: name a program to run")
    if any("\0" in arg for arg in argv):
        raise InvalidCommandError(f"command {argv!r} contains a NUL byte")
    return argv


def input_bytes(data: bytes | str | None) -> bytes | None:
    """What to write to the command's stdin (str is UTF-8 encoded)."""
    if data is None or isinstance(data, bytes):
        return data
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    if isinstance(data, str):
        return data.encode()
    raise InvalidCommandError(f"input must be bytes or str, not {type(data).__name__}")
