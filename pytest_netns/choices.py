"""The values users choose among, in one place (options, fixtures, the builder, the CLI).

Kept free of imports, so the plugin can declare its command-line options
without loading anything else.
"""

from __future__ import annotations

#: --netns-backend: "auto" means Docker when an engine answers, namespaces otherwise
BACKEND_CHOICES = ("auto", "docker", "namespace")
#: what a node can be made of
NODE_BACKENDS = ("docker", "namespace")
#: --netns-capture
CAPTURE_MODES = ("off", "on-failure", "always")
