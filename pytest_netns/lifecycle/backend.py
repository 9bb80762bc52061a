"""Choosing between the Docker backend and bare network namespaces."""

from __future__ import annotations

import os

from ..choices import BACKEND_CHOICES as CHOICES
from ..errors import DockerUnavailableError, InvalidArgumentError


def resolve_backend(choice: str) -> str:
    """'docker' or 'namespace' for a --netns-backend value.

    `auto` takes Docker when an engine answers and bare namespaces otherwise,
    so the same tests run on laptops and CI runners without Docker. An
    explicit `docker` with no engine is an error, never a silent fallback.
    """
    choice = (choice or os.environ.get("PYTEST_NETNS_BACKEND") or "auto").lower()
    if choice not in CHOICES:
        raise InvalidArgumentError(f"unknown backend {choice!r}: expected one of {CHOICES}")
    if choice == "namespace":
        return "namespace"
    from ..nodes.engine import engine_available

    if engine_available():
        return "docker"
    if choice == "docker":
        raise DockerUnavailableError(
            "--netns-backend=docker, but no Docker engine answers (DOCKER_HOST or "
            "/var/run/docker.sock): start dockerd, or use --netns-backend=namespace"
        )
    return "namespace"
