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


class MetaTable:
    """A `meta (key, value)` table on an open connection: schema versions, cursors, bindings."""

    db: sqlite3.Connection

    def meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def create_schema(self, schema: str) -> str | None:
        """Run `schema`'s statements (each CREATE ... IF NOT EXISTS) in the open transaction; returns the
        schema version the file held before (None for a new file)."""
        for statement in filter(str.strip, schema.split(";")):
            self.db.execute(statement)
        return self.meta("schema_version")

    def close(self) -> None:
        self.db.close()


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
