#!/usr/bin/env bash
# Set up a fresh Debian/Ubuntu machine for pytest-netns, as root.
#
#   bash scripts/setup.sh            system tools + .venv with the project
#   bash scripts/setup.sh --docker   also a Docker engine (started) and the tools
#                                    the test suite checks with (tcpdump, tshark)
#
# Idempotent: what is already there is kept (a running dockerd is reused).
set -euo pipefail
cd "$(dirname "$0")/.."

want_docker=0
[ "${1:-}" = "--docker" ] && want_docker=1

if [ "$(id -u)" != 0 ]; then
  echo "setup.sh: run as root (network namespaces need CAP_SYS_ADMIN and CAP_NET_ADMIN)" >&2
  exit 1
fi

packages=(iproute2 busybox-static nftables iptables util-linux graphviz python3-venv)
[ "$want_docker" = 1 ] && packages+=(docker.io tcpdump tshark)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [ "$want_docker" = 1 ] && ! docker info >/dev/null 2>&1; then
  echo "setup.sh: starting dockerd"
  mkdir -p /var/log
  nohup dockerd >/var/log/pytest-netns-dockerd.log 2>&1 &
  for _ in $(seq 60); do
    docker info >/dev/null 2>&1 && break
    sleep 1
  done
  docker info >/dev/null 2>&1 || { echo "setup.sh: dockerd did not start:" >&2;
                                   tail -20 /var/log/pytest-netns-dockerd.log >&2; exit 1; }
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[dev]'
echo "setup.sh: ready ($(.venv/bin/python -c 'import pytest_netns; print("pytest-netns", pytest_netns.__version__)'))"
