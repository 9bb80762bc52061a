"""`python -m pytest_netns.cli`: the same as the `pytest-netns` command."""

import sys

from . import main

sys.exit(main())
