#!/usr/bin/env bash
# Set up (including a Docker engine), then run the whole test suite: the unit
# tests (no privileges), then the rest on both backends, then the examples on
# both backends. Docker-backed tests are
# required here: with PYTEST_NETNS_REQUIRE_DOCKER=1 a missing engine fails
# them instead of skipping them. Extra arguments go to every pytest run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --docker
export PYTEST_NETNS_REQUIRE_DOCKER=1
py=.venv/bin/python
$py -m ruff check pytest_netns tests examples benchmarks
$py -m mypy
# pure logic first, with every capability dropped: a logic error fails in seconds
setpriv --inh-caps=-all --bounding-set=-all $py -m pytest tests/unit -p no:xdist -p no:cacheprovider -q "$@"
$py -m pytest tests -n 2 --ignore=tests/unit "$@"
$py -m pytest examples --netns-backend=docker "$@"
$py -m pytest examples --netns-backend=namespace -m "not netns_docker" "$@"
# the three-tier lab from the command line, as a CI job checks isolation: up, check, down
# (down runs whatever happens, and must leave nothing behind)
lab=examples/labs/three-tier.yaml
for backend in namespace docker; do
    trap '.venv/bin/pytest-netns down "$lab"' EXIT
    .venv/bin/pytest-netns up "$lab" --backend "$backend"
    .venv/bin/pytest-netns check "$lab"
    .venv/bin/pytest-netns down "$lab"
    trap - EXIT
done
