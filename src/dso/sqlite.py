"""The one way DSO opens SQLite files and runs write transactions (the library, a node's state)."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path


def connect(path: Path) -> sqlite3.Connection:
    """WAL mode (readers never block the writer), a generous busy timeout, autocommit off by hand."""
    db = sqlite3.connect(path, timeout=60.0, isolation_level=None, check_same_thread=False)
    db.row_factory = sqlite3.Row
    db.execute("PRAGMA busy_timeout = 60000")
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = NORMAL")
    return db


@contextlib.contextmanager
def transaction(
    db: sqlite3.Connection, lock: threading.RLock, on_rollback: Callable[[], None] | None = None
) -> Iterator[None]:
    """One write transaction holding SQLite's write lock (`BEGIN IMMEDIATE`); rolled back whole on any error."""
    with lock:
        db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            db.execute("ROLLBACK")
            if on_rollback is not None:
                on_rollback()
            raise
        db.execute("COMMIT")
