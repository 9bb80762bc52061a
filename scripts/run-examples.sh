#!/usr/bin/env bash
# The main job: set up, then run the examples.
# They use Docker when an engine answers and bare network namespaces otherwise
# (no Docker is installed by this script). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest examples "$@"
