"""Whether this process may build topologies at all, checked before anything is made.

A run without root should fail with one message that says what to grant,
instead of an EPERM or EACCES from whichever call happens to come first.
"""

from __future__ import annotations

import os

from ..errors import NotPermittedError
from ..ownership import STATE_DIR
from .netns import NETNS_RUN_DIR

# capability numbers from linux/capability.h
CAP_NET_ADMIN = 12
CAP_SYS_ADMIN = 21
# judge write access as the effective uid does (setuid wrappers, setpriv)
_EFFECTIVE_IDS = os.access in os.supports_effective_ids


def effective_capabilities() -> int:
    """This thread's effective capability mask (CapEff in /proc/thread-self/status)."""
    with open("/proc/thread-self/status") as f:
        for line in f:
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    return 0


def missing_privileges() -> list[str]:
    """What this process lacks to build topologies; empty when it lacks nothing.

    Checked up front so that a run without root fails with one message that
    says what to grant, instead of an EPERM or EACCES from whichever call
    happens to come first.
    """
    caps = effective_capabilities()
    missing = [name for name, bit in (("CAP_NET_ADMIN", CAP_NET_ADMIN),
                                      ("CAP_SYS_ADMIN", CAP_SYS_ADMIN))
               if not caps >> bit & 1]
    for directory in (NETNS_RUN_DIR, STATE_DIR):
        existing = directory
        while not os.path.isdir(existing):
            existing = os.path.dirname(existing)
        if not os.access(existing, os.W_OK | os.X_OK, effective_ids=_EFFECTIVE_IDS):
            missing.append(f"write access to {existing}")
    return missing


def require_privileges() -> None:
    """NotPermittedError naming what is missing, before anything is created."""
    missing = missing_privileges()
    if not missing:
        return
    if os.geteuid() == 0:
        fix = ("it runs as root, but with these capabilities dropped: run it without dropping "
               "them (in a container: --cap-add NET_ADMIN --cap-add SYS_ADMIN, or --privileged)")
    else:
        fix = "run pytest as root (e.g. `sudo -E pytest`), or grant those capabilities"
    raise NotPermittedError(
        f"pytest-netns needs root (or CAP_NET_ADMIN and CAP_SYS_ADMIN) to create network "
        f"namespaces and links; this process (uid {os.geteuid()}) lacks "
        f"{', '.join(missing)}: {fix}; `pytest-netns doctor` shows what this host supports"
    )
