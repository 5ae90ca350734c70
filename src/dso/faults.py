"""Crash points for tests that kill a process mid-step: DSO_FAULT=<name> kills it there as `kill -9` would."""

from __future__ import annotations

import os
import signal


def fault_point(name: str) -> None:
    """No cleanup, no flush: what a power cut or an OOM kill leaves behind (a no-op unless DSO_FAULT names it)."""
    if os.environ.get("DSO_FAULT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
