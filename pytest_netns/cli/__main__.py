"""`python -m pytest_netns.cli`: the same as the `pytest-netns` command."""

import sys

from . import main

if __name__ == "__main__":
    sys.exit(main())
