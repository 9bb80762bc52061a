"""The `pytest-netns` command: doctor, cleanup, image, and the lab commands.

Each subcommand is a thin front for a library call, so what the command does
is exactly what the plugin does. Errors the package raises are printed as
one paragraph naming the problem and its fix, with exit status 1 (2 for a
lab file that cannot be used, like any other bad command line); a
traceback would only bury that paragraph. The lab commands (`up`, `down`,
`exec`, `inspect`, `graph`, `check`, `capture`, ...) are in `labs.py`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from ..errors import LabFileError, NetnsError
from .command import Command


def _doctor(args: argparse.Namespace) -> int:
    from ..doctor import main

    return main()


def _cleanup(args: argparse.Namespace) -> int:
    from ..kernel.privileges import require_privileges
    from ..lifecycle.reaper import sweep

    require_privileges()
    lines = sweep(include_kept=True, session_id=args.session)
    for line in lines:
        print(line)
    print(f"pytest-netns cleanup: removed {len(lines)} leftover(s) of dead or kept sessions")
    return 0


def _cleanup_arguments(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("--session", metavar="ID", help="only this session's leftovers "
                     "(its 6-hex id, as in /run/netns/pytest-netns-<id>-...)")


def _image(args: argparse.Namespace) -> int:
    from ..nodes.engine import docker_client
    from ..nodes.images import BARE_IMAGE, DEFAULT_IMAGE, build_image, find_static_busybox

    tag = args.tag or (BARE_IMAGE if args.bare else DEFAULT_IMAGE)
    busybox = find_static_busybox()
    image_id = build_image(docker_client(), tag=tag, bare=args.bare)
    contents = "only /bin/busybox" if args.bare else "busybox with its applet links in /bin"
    print(f"built {tag} ({image_id}) from {busybox}: {contents}")
    return 0


def _image_arguments(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("--tag", help="image tag (default: pytest-netns/busybox:1, or "
                     "pytest-netns/bare:1 with --bare)")
    cmd.add_argument("--bare", action="store_true",
                     help="only /bin/busybox: no shell, no applet links")


def commands() -> dict[str, Command]:
    from .labs import LAB_COMMANDS

    return {
        "doctor": Command("what this host supports and what is missing (exit 1 if unusable)",
                          _doctor),
        "cleanup": Command("remove what crashed or kept sessions (and labs) left behind",
                           _cleanup, _cleanup_arguments),
        "image": Command("build the local test image from the host's static busybox, no "
                         "registry", _image, _image_arguments),
        **LAB_COMMANDS,
    }


def parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The argument parser. When `argv` names a command, only that one is defined (the
    others cost more to define than most commands' own work); otherwise all of them, with
    their help, for `--help` and for the error that lists them."""
    top = argparse.ArgumentParser(
        prog="pytest-netns",
        description="Network topologies for pytest: check this host, clean up, build images; "
        "bring lab files up, look into them, check them, take them down.",
    )
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    words = list(sys.argv[1:] if argv is None else argv)
    table = commands()
    chosen = {words[0]: table[words[0]]} if words and words[0] in table else table
    for name, command in chosen.items():
        cmd = sub.add_parser(name, help=command.help,
                             description=command.description or command.help)
        cmd.set_defaults(run=command.run)
        if command.arguments is not None and len(chosen) == 1:
            command.arguments(cmd)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser(argv).parse_args(argv)
    try:
        run: Callable[[argparse.Namespace], int] = args.run
        return run(args)
    except BrokenPipeError:  # the reader went away (`| head`): what is done is done
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except NetnsError as exc:
        text = " ".join(str(exc).split())  # one paragraph, whatever the message holds
        print(f"pytest-netns {args.command}: {type(exc).__name__}: {text}", file=sys.stderr)
        return 2 if isinstance(exc, LabFileError) else 1


if __name__ == "__main__":
    sys.exit(main())
