"""Ownership sweeps and the crash watchdog (placeholder hooks; see issue 4)."""

from __future__ import annotations

from .session import Session


def on_session_start(session: Session) -> None:
    session.register()


def on_session_end(session: Session) -> None:
    session.unregister()
