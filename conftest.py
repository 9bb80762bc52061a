"""Root conftest: lets `pytest` run from the checkout without installing first.

Installed, the plugin is loaded through its `pytest11` entry point; from a
bare checkout, this makes the same plugin available to `tests/` and
`examples/` by putting the project root on the import path.
"""

import importlib.util
import os
import sys

if importlib.util.find_spec("pytest_netns") is None:
    sys.path.insert(0, os.path.dirname(__file__))
    pytest_plugins = ["pytest_netns.plugin"]
