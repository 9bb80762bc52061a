#!/bin/sh
# Install the peers that the side-by-side benchmarks compare pytest-netns with.
#
# Why a script of its own: Mininet and munet are benchmark peers, never
# dependencies of the plugin, so they are installed here and nowhere else.
# Idempotent: what is already there is left alone. Without network each step
# says it was skipped and the benchmarks later skip the missing peer's rows.
#
#   Mininet 2.3.0 + bridge-utils   apt, --no-install-recommends (see below)
#   iputils-ping                   apt: both peers ping by running `ping` in a node,
#                                  and Mininet's package does not depend on it
#   munet                          pip, into its own venv ($MUNET_VENV)
#   py-spy (optional)              pip, into the same venv: sampling profiles by hand
#                                  (run_all.py --profile uses cProfile)
#
# Why --no-install-recommends: Mininet recommends openvswitch-switch, whose
# post-install starts ovsdb-server/ovs-vswitchd; the first OVS bridge then
# creates an `ovs-system` datapath link in the root namespace. The benchmarks
# use Mininet's LinuxBridge moved into a namespace of its own, so OVS is not
# needed. With the flag, apt adds only mininet, bridge-utils, cgroup-tools,
# libcgroup2, iperf, socat, telnet, inetutils-telnet, libwrap0 (+ iputils-ping):
# no service is started, no sysctl file, no link, no firewall rule, no qdisc
# (checked with netstate, `sysctl -a` and `tc qdisc show` before and after).
# bridge-utils does add ifupdown hooks and a udev rule, which act only on
# bridges declared in /etc/network/interfaces.
set -u

HERE=$(cd "$(dirname "$0")" && pwd)
MUNET_VENV=${MUNET_VENV:-$HERE/.venv-munet}
MUNET_VERSION=${MUNET_VERSION-==0.17.3}  # the version measured in FINDINGS.md; "" for newest
PYTHON=${PYTHON:-python3}

say() { printf 'setup_peers: %s\n' "$*"; }

# --- Mininet (Debian package) ----------------------------------------------
APT_PACKAGES="mininet bridge-utils iputils-ping"
missing=""
for p in $APT_PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -z "$missing" ]; then
    say "mininet $(dpkg-query -W -f='${Version}' mininet), bridge-utils, iputils-ping already installed"
elif ! command -v apt-get >/dev/null 2>&1; then
    say "no apt-get: skipping Mininet (its rows will be skipped)"
elif [ "$(id -u)" != 0 ]; then
    say "not root: skipping Mininet install (its rows will be skipped)"
else
    say "installing$missing with --no-install-recommends (no openvswitch)"
    # shellcheck disable=SC2086
    if DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
            $missing >/tmp/setup_peers_apt.log 2>&1; then
        say "installed: $(grep -E '^Setting up' /tmp/setup_peers_apt.log | awk '{print $3}' | tr '\n' ' ')"
    else
        say "apt-get failed (no network?): Mininet skipped; log: /tmp/setup_peers_apt.log"
        tail -n 3 /tmp/setup_peers_apt.log | sed 's/^/    /'
    fi
fi
if command -v ovs-vsctl >/dev/null 2>&1; then
    say "note: Open vSwitch is installed on this host; the benchmarks do not use it"
fi

# --- munet (PyPI, in a venv of its own) --------------------------------------
if [ -x "$MUNET_VENV/bin/python" ] && "$MUNET_VENV/bin/python" -c "import munet" 2>/dev/null; then
    say "munet $("$MUNET_VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("munet"))') already in $MUNET_VENV"
else
    if [ ! -x "$MUNET_VENV/bin/python" ]; then
        say "creating venv $MUNET_VENV"
        "$PYTHON" -m venv "$MUNET_VENV" || { say "venv creation failed: munet skipped"; exit 0; }
    fi
    say "pip install munet$MUNET_VERSION into $MUNET_VENV"
    if "$MUNET_VENV/bin/pip" install -q --disable-pip-version-check --timeout 15 --retries 1 \
            "munet$MUNET_VERSION" \
            >/tmp/setup_peers_pip.log 2>&1; then
        say "installed munet $("$MUNET_VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("munet"))')"
    else
        say "pip failed (no network?): munet skipped; log: /tmp/setup_peers_pip.log"
        tail -n 3 /tmp/setup_peers_pip.log | sed 's/^/    /'
    fi
fi

# py-spy is optional: only the profiling pass (--profile) uses it, cProfile otherwise
if [ -x "$MUNET_VENV/bin/pip" ] && [ ! -x "$MUNET_VENV/bin/py-spy" ]; then
    if "$MUNET_VENV/bin/pip" install -q --disable-pip-version-check --timeout 15 --retries 1 \
            py-spy >/dev/null 2>&1; then
        say "installed py-spy into $MUNET_VENV (profiling only)"
    else
        say "py-spy not installed (optional)"
    fi
fi
exit 0
