"""The library's SQLite file: schema, transactions, and the one writer of experience rows.

One file in WAL mode holds the experiences, their embeddings and a history of every change, so several
processes can read and write it at once. A write transaction takes SQLite's write lock for the whole
check-then-write step (`BEGIN IMMEDIATE`), so two writers never both add the same paraphrase and no
write is lost. Every change of an experience row goes through `put` (an upsert that keeps the row's
place, so vector order and tie-breaking stay stable) and leaves a history row through `record`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from dso.core.experience import Experience
from dso.embed.base import Vectors
from dso.errors import LibraryError
from dso.sqlite import MetaTable, connect, transaction

SCHEMA_VERSION = 3  # 2: provenance has its own table (one experience, many supporters); 3: evidence counts
_EVIDENCE_COLUMNS = ("helped", "hurt", "neutral")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS experiences (
    id TEXT PRIMARY KEY,
    text TEXT NOT NULL,
    embedding BLOB NOT NULL,
    embedder_id TEXT NOT NULL,
    confidence REAL NOT NULL CHECK (confidence >= 0 AND confidence <= 1),
    domain TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    usage_count INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    origin_node TEXT NOT NULL,
    content_id TEXT,
    helped INTEGER NOT NULL DEFAULT 0,
    hurt INTEGER NOT NULL DEFAULT 0,
    neutral INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS history (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    experience_id TEXT NOT NULL,
    op TEXT NOT NULL,
    old_text TEXT,
    new_text TEXT,
    at REAL NOT NULL,
    detail TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS history_by_experience ON history (experience_id);
CREATE TABLE IF NOT EXISTS provenance (
    experience_id TEXT NOT NULL,
    node TEXT NOT NULL,
    record_cid TEXT NOT NULL,
    batch_id TEXT,
    round INTEGER,
    received_at REAL NOT NULL,
    PRIMARY KEY (experience_id, record_cid)
);
CREATE INDEX IF NOT EXISTS provenance_by_record ON provenance (record_cid);
"""

# The order of Experience's fields: rows are read and written in it.
_FIELDS = tuple(f.name for f in dataclasses.fields(Experience))
_COLUMNS = ", ".join(_FIELDS)


@dataclasses.dataclass(frozen=True)
class Provenance:
    """One shared record that supports an experience: which node sent it, in which batch and round."""

    experience_id: str
    node: str
    record_cid: str
    batch_id: str | None
    round: int | None
    received_at: float


@dataclasses.dataclass(frozen=True)
class HistoryEntry:
    seq: int
    experience_id: str
    op: str
    old_text: str | None
    new_text: str | None
    at: float
    detail: dict[str, Any]


class Storage(MetaTable):
    """One connection to a library file; `on_rollback` lets the owner drop what it cached."""

    def __init__(self, path: Path, on_rollback: Callable[[], None], *, create: bool = True) -> None:
        self.path = path
        self._on_rollback = on_rollback
        self.lock = threading.RLock()
        if path.is_symlink() and not path.exists():
            raise LibraryError(f"library path {path} is a dangling or looping symbolic link")
        if path.exists() and path.is_dir():
            raise LibraryError(f"library path {path} is a directory")
        if path.exists() and not path.is_file():
            raise LibraryError(f"library path {path} is not a regular file (a pipe, socket or device)")
        if not create and (not path.is_file() or path.stat().st_size == 0):
            raise LibraryError(f"no experience library at {path}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LibraryError(f"cannot keep a library in {path.parent}: {exc.strerror or exc}") from None
        try:
            self.db = connect(path)
            with self.transaction():
                stored = self.create_schema(_SCHEMA)
                if stored == "1":  # version 1 kept one content id per experience: it becomes a provenance row
                    self.db.execute(
                        "INSERT OR IGNORE INTO provenance (experience_id, node, record_cid, received_at) "
                        "SELECT id, origin_node, content_id, updated_at FROM experiences WHERE content_id IS NOT NULL"
                    )
                if stored in ("1", "2"):  # version 3 counts evidence per experience
                    present = {row[1] for row in self.db.execute("PRAGMA table_info(experiences)")}
                    for column in _EVIDENCE_COLUMNS:
                        if column not in present:
                            self.db.execute(f"ALTER TABLE experiences ADD COLUMN {column} INTEGER NOT NULL DEFAULT 0")
                elif stored not in (None, str(SCHEMA_VERSION)):
                    raise LibraryError(f"{path} has schema version {stored!r:.20}; this dso reads {SCHEMA_VERSION}")
                if stored != str(SCHEMA_VERSION):  # opening to read must not write
                    self.set_meta("schema_version", str(SCHEMA_VERSION))
        except sqlite3.DatabaseError as exc:
            raise LibraryError(f"{path} is not a usable experience library: {exc}") from None

    def transaction(self) -> contextlib.AbstractContextManager[None]:
        """One write transaction holding SQLite's write lock; rolled back whole on any error."""
        return transaction(self.db, self.lock, self._on_rollback)

    def backup_to(self, path: Path) -> None:
        with self.lock:
            target = sqlite3.connect(path)
            try:
                self.db.backup(target)
            finally:
                target.close()

    # -- meta ----------------------------------------------------------------------------------

    def data_version(self) -> int:
        """Changes when another connection commits (never for this connection's own commits)."""
        return int(self.db.execute("PRAGMA data_version").fetchone()[0])

    def stamp(self) -> str:
        """Changes whenever any vector changes: every such write adds a history row."""
        row = self.db.execute("SELECT MAX(seq), (SELECT COUNT(*) FROM experiences) FROM history").fetchone()
        return f"{row[0]}:{row[1]}:{self.meta('embedder_id')}"

    # -- experience rows -----------------------------------------------------------------------

    def count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM experiences").fetchone()[0])

    def find(self, experience_id: str) -> Experience | None:
        row = self.db.execute(f"SELECT {_COLUMNS} FROM experiences WHERE id = ?", (experience_id,)).fetchone()
        return None if row is None else Experience(**{name: row[name] for name in _FIELDS})

    def all(self) -> list[Experience]:
        rows = self.db.execute(f"SELECT {_COLUMNS} FROM experiences ORDER BY created_at, id").fetchall()
        return [Experience(**{name: row[name] for name in _FIELDS}) for row in rows]

    def embedding(self, experience_id: str) -> bytes:
        row = self.db.execute("SELECT embedding FROM experiences WHERE id = ?", (experience_id,)).fetchone()
        if row is None:
            raise LibraryError(f"no experience with id {experience_id!r} in {self.path}")
        return bytes(row[0])

    def vectors(self, embedder_id: str, dim: int) -> tuple[list[str], Vectors]:
        rows = self.db.execute(
            "SELECT id, embedding FROM experiences WHERE embedder_id = ? ORDER BY rowid", (embedder_id,)
        ).fetchall()
        matrix = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), dim)
        return [r[0] for r in rows], matrix.copy()

    def put(self, experience: Experience, embedding: Vectors | bytes) -> None:
        """Insert or replace one experience row in place; the caller holds the transaction."""
        blob = embedding if isinstance(embedding, bytes) else np.asarray(embedding, np.float32).tobytes()
        values = dataclasses.asdict(experience)
        columns = [*_FIELDS, "embedding"]
        updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c != "id")
        self.db.execute(
            f"INSERT INTO experiences ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))}) "
            f"ON CONFLICT(id) DO UPDATE SET {updates}",
            [*(values[name] for name in _FIELDS), blob],
        )

    def remove(self, experience_id: str) -> None:
        self.db.execute("DELETE FROM experiences WHERE id = ?", (experience_id,))

    def add_usage(self, counts: Mapping[str, int]) -> None:
        self.db.executemany(
            "UPDATE experiences SET usage_count = usage_count + ? WHERE id = ?",
            [(count, experience_id) for experience_id, count in counts.items() if count > 0],
        )

    def add_evidence(self, counts: Mapping[str, tuple[int, int, int]]) -> None:
        self.db.executemany(
            "UPDATE experiences SET helped = helped + ?, hurt = hurt + ?, neutral = neutral + ? WHERE id = ?",
            [(*triple, experience_id) for experience_id, triple in counts.items()],
        )

    # -- provenance ----------------------------------------------------------------------------

    def add_provenance(self, row: Provenance) -> None:
        self.db.execute(
            "INSERT OR IGNORE INTO provenance (experience_id, node, record_cid, batch_id, round, received_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            dataclasses.astuple(row),
        )

    def provenance(self, experience_id: str) -> list[Provenance]:
        rows = self.db.execute(
            "SELECT experience_id, node, record_cid, batch_id, round, received_at FROM provenance "
            "WHERE experience_id = ? ORDER BY received_at, record_cid",
            (experience_id,),
        ).fetchall()
        return [Provenance(*row) for row in rows]

    def move_provenance(self, source: str, target: str) -> None:
        """An experience folded into another hands over its supporters."""
        self.db.execute("UPDATE OR IGNORE provenance SET experience_id = ? WHERE experience_id = ?", (target, source))

    def forget_provenance(self, experience_id: str) -> None:
        self.db.execute("DELETE FROM provenance WHERE experience_id = ?", (experience_id,))

    def knows_record(self, record_cid: str) -> bool:
        return self.db.execute("SELECT 1 FROM provenance WHERE record_cid = ?", (record_cid,)).fetchone() is not None

    # -- history -------------------------------------------------------------------------------

    def record(self, experience_id: str, op: str, old: str | None, new: str | None, **detail: Any) -> None:
        self.db.execute(
            "INSERT INTO history (experience_id, op, old_text, new_text, at, detail) VALUES (?, ?, ?, ?, ?, ?)",
            (experience_id, op, old, new, time.time(), json.dumps(detail, sort_keys=True)),
        )

    def history(self, experience_id: str | None = None) -> list[HistoryEntry]:
        query = "SELECT seq, experience_id, op, old_text, new_text, at, detail FROM history"
        rows = (
            self.db.execute(query + " WHERE experience_id = ? ORDER BY seq", (experience_id,))
            if experience_id
            else self.db.execute(query + " ORDER BY seq")
        ).fetchall()
        return [HistoryEntry(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6])) for r in rows]
