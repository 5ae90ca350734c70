"""A node's durable state in one SQLite file: the outbox, what it published, cursors, batches seen, traffic.

Every step of a sync that must not happen twice writes its outcome here in the same transaction as the
cursor that moves past it, so a node killed at any instant restarts where it stopped:

- publish: the records, manifest and signature of a round are built and stored in the outbox, together
  with the experiences they publish, in one transaction; sending them (store, then registry) is retried
  from the outbox until the registry holds the batch, which is checked before every submission;
- pull: a verified batch's records and the accepted-batch cursor move together; merging into the library
  is idempotent (the library skips record CIDs it already holds), so a crash between the two repeats
  only harmless work;
- vote: votes are recorded after the one `voteMany` that casts them; resending it is harmless (the
  registry skips what a member already voted on).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dso.core.cid import cid_of
from dso.core.records import ExperienceRecord, decode_record
from dso.errors import DataError, NodeError
from dso.node.share import OutgoingBatch, SharedRecord
from dso.sqlite import MetaTable, connect, transaction

# 2: a record's round is the registry epoch its batch was registered in, not the claimed one
# 3: a record's canonical bytes are kept and re-hashed to its CID whenever the records are read
# 4: every registry batch is read in order once decided (not only accepted ones), and the global library is
#    computed over closed epochs only
SCHEMA_VERSION = 4
DECODED_CACHE = 100_000  # decoded records a node keeps in memory (about 1 KB each)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS published (
    text_key TEXT PRIMARY KEY,          -- sha256 of the published text
    experience_id TEXT NOT NULL,
    round INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
    round INTEGER PRIMARY KEY,
    manifest BLOB NOT NULL,
    manifest_cid TEXT NOT NULL,
    signature BLOB NOT NULL,
    batch_id TEXT,                      -- 0x-hex, known once the registry answered
    state TEXT NOT NULL,                -- built | stored | done
    created_at REAL NOT NULL,
    done_at REAL
);
CREATE TABLE IF NOT EXISTS outbox_records (
    round INTEGER NOT NULL,
    cid TEXT NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (round, cid)
);
CREATE TABLE IF NOT EXISTS batches (
    batch_id TEXT PRIMARY KEY,          -- 0x-hex
    node TEXT NOT NULL,
    round INTEGER NOT NULL,
    chain_state TEXT NOT NULL,          -- pending | accepted | rejected, as last read
    verdict TEXT,                       -- verified | refused, once fetched and checked
    reason TEXT,
    vote INTEGER,                       -- 1 approve, 0 reject, NULL not voted
    vote_reason TEXT,
    merged INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS records (
    batch_id TEXT NOT NULL,
    cid TEXT NOT NULL,
    node TEXT NOT NULL,
    round INTEGER NOT NULL,
    text TEXT NOT NULL,
    confidence REAL NOT NULL,
    domain TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    helped INTEGER NOT NULL DEFAULT 0,
    hurt INTEGER NOT NULL DEFAULT 0,
    neutral INTEGER NOT NULL DEFAULT 0,
    data BLOB,                          -- the record's canonical bytes: what is read back, re-hashed to cid
    PRIMARY KEY (batch_id, cid)
);
CREATE TABLE IF NOT EXISTS traffic (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    sync INTEGER NOT NULL,
    kind TEXT NOT NULL,                 -- records | manifests | transactions | signatures
    direction TEXT NOT NULL,            -- sent | received
    bytes INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS retries (
    batch_id TEXT PRIMARY KEY,          -- an accepted batch that could not be fetched or checked yet
    attempts INTEGER NOT NULL,
    next_at REAL NOT NULL,              -- unix time of the next attempt
    reason TEXT NOT NULL,               -- the last transient failure (a store or chain error), never a verdict
    epoch INTEGER NOT NULL DEFAULT 0    -- the registry epoch of the batch: no later epoch closes before it is in
);
CREATE TABLE IF NOT EXISTS trials (
    text_key TEXT PRIMARY KEY,          -- a candidate lesson this node tried on its own questions (dso.node.trial)
    text TEXT NOT NULL,
    domain TEXT NOT NULL,
    adopted INTEGER NOT NULL,           -- 1: it beat this node's prompt there and was merged
    verdict TEXT NOT NULL               -- the trial's counts, JSON
);
CREATE TABLE IF NOT EXISTS syncs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    started_at REAL NOT NULL,
    finished_at REAL,
    summary TEXT
);
"""


_EPOCH_COLUMN = "INTEGER NOT NULL DEFAULT 0"


def _blob(value: Any) -> bytes:
    """A BLOB column as bytes; anything else a hand edit left there reads as no bytes (it then fails its hash)."""
    return bytes(value) if isinstance(value, (bytes, bytearray, memoryview)) else b""


class NodeState(MetaTable):
    """The node's SQLite file (WAL); one instance per process."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if path.exists() and not path.is_file():
            raise NodeError(f"node state {path} is not a regular file")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise NodeError(f"cannot keep node state in {path.parent}: {exc.strerror or exc}") from None
        self._lock = threading.RLock()
        # records this node decoded, by CID: content-addressed, so bytes that hash to a CID decode the same way
        # every time; the global library reads every verified record back on each computation
        self._decoded: dict[str, ExperienceRecord] = {}
        try:
            self.db = connect(path)
            with self.transaction():
                stored = self.create_schema(_SCHEMA)
                if stored in ("1", "2", "3"):  # 1: the claimed round; 2: no record bytes; 3: accepted batches
                    # only, merged from open epochs: pull every batch again
                    for table, column, kind in (("records", "data", "BLOB"), ("retries", "epoch", _EPOCH_COLUMN)):
                        columns = {str(row[1]) for row in self.db.execute(f"PRAGMA table_info({table})")}
                        if column not in columns:
                            self.db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
                    self.db.execute("DELETE FROM records")
                    self.db.execute("DELETE FROM retries")
                    self.db.execute(
                        "UPDATE batches SET verdict = NULL, reason = NULL, merged = 0 WHERE verdict IS NOT NULL"
                    )
                    self.set_cursor("batches", 0)
                    self.set_meta("settled_epoch", "-1")
                elif stored not in (None, str(SCHEMA_VERSION)):
                    raise NodeError(f"{path} has node schema {stored!r:.20}; this dso reads {SCHEMA_VERSION}")
                if stored != str(SCHEMA_VERSION):
                    self.set_meta("schema_version", str(SCHEMA_VERSION))
        except sqlite3.DatabaseError as exc:
            raise NodeError(f"{path} is not a usable node state file: {exc}") from None

    def transaction(self) -> contextlib.AbstractContextManager[None]:
        return transaction(self.db, self._lock)

    def cursor(self, name: str) -> int:
        """A cursor over the registry's lists, checked: a damaged value is one error naming the file."""
        raw = self.meta(f"cursor:{name}") or "0"
        if not (raw.isascii() and raw.isdigit() and len(raw) <= 18):
            raise NodeError(
                f"{self.path} is damaged: cursor {name!r} holds {raw[:40]!r}; restore the file, or move it away "
                "to sync again from the start"
            )
        return int(raw)

    def set_cursor(self, name: str, value: int) -> None:
        self.set_meta(f"cursor:{name}", str(value))

    # -- publishing ----------------------------------------------------------------------------

    def published_keys(self) -> set[str]:
        return {str(row[0]) for row in self.db.execute("SELECT text_key FROM published")}

    def next_round(self) -> int:
        row = self.db.execute("SELECT MAX(round) FROM outbox").fetchone()
        return 1 if row[0] is None else int(row[0]) + 1

    def add_outgoing(self, round_: int, batch: OutgoingBatch, published: Sequence[tuple[str, str]]) -> None:
        """A built round and the experiences it publishes ((text key, experience id)), in one transaction."""
        with self.transaction():
            self.db.execute(
                "INSERT INTO outbox (round, manifest, manifest_cid, signature, state, created_at) "
                "VALUES (?, ?, ?, ?, 'built', ?)",
                (round_, batch.manifest_bytes, batch.manifest_cid, batch.signature, time.time()),
            )
            self.db.executemany(
                "INSERT INTO outbox_records (round, cid, data) VALUES (?, ?, ?)",
                [(round_, cid, data) for cid, data in batch.records],
            )
            self.db.executemany(
                "INSERT OR IGNORE INTO published (text_key, experience_id, round) VALUES (?, ?, ?)",
                [(key, experience_id, round_) for key, experience_id in published],
            )

    def unfinished_outbox(self) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT round, manifest, manifest_cid, signature, state FROM outbox WHERE state != 'done' ORDER BY round"
        ).fetchall()
        return [
            {"round": r[0], "manifest": _blob(r[1]), "manifest_cid": str(r[2]), "signature": _blob(r[3]), "state": r[4]}
            for r in rows
        ]

    def outbox_records(self, round_: int) -> list[tuple[str, bytes]]:
        rows = self.db.execute("SELECT cid, data FROM outbox_records WHERE round = ? ORDER BY cid", (round_,))
        return [(str(cid), _blob(data)) for cid, data in rows]

    def set_outbox_state(self, round_: int, state: str, batch_id: str | None = None) -> None:
        with self.transaction():
            self.db.execute(
                "UPDATE outbox SET state = ?, batch_id = COALESCE(?, batch_id), done_at = ? WHERE round = ?",
                (state, batch_id, time.time() if state == "done" else None, round_),
            )

    def outbox_counts(self) -> dict[str, int]:
        rows = self.db.execute("SELECT state, COUNT(*) FROM outbox GROUP BY state").fetchall()
        return {str(state): int(count) for state, count in rows}

    def own_batches(self) -> list[str]:
        rows = self.db.execute("SELECT batch_id FROM outbox WHERE batch_id IS NOT NULL ORDER BY round")
        return [str(r[0]) for r in rows]

    # -- batches seen on the registry ----------------------------------------------------------

    def note_batch(self, batch_id: str, node: str, round_: int, chain_state: str) -> None:
        self.db.execute(
            "INSERT INTO batches (batch_id, node, round, chain_state) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (batch_id) DO UPDATE SET chain_state = excluded.chain_state",
            (batch_id, node, round_, chain_state),
        )

    def batch_row(self, batch_id: str) -> dict[str, Any] | None:
        row = self.db.execute(
            "SELECT batch_id, node, round, chain_state, verdict, reason, vote, vote_reason, merged "
            "FROM batches WHERE batch_id = ?",
            (batch_id,),
        ).fetchone()
        if row is None:
            return None
        keys = ("batch_id", "node", "round", "chain_state", "verdict", "reason", "vote", "vote_reason", "merged")
        return dict(zip(keys, row, strict=True))

    def batches_in(self, chain_state: str) -> list[str]:
        rows = self.db.execute("SELECT batch_id FROM batches WHERE chain_state = ? ORDER BY rowid", (chain_state,))
        return [str(r[0]) for r in rows]

    def unvoted_pending(self) -> list[str]:
        rows = self.db.execute(
            "SELECT batch_id FROM batches WHERE chain_state = 'pending' AND vote IS NULL ORDER BY rowid"
        )
        return [str(r[0]) for r in rows]

    def record_votes(self, votes: Sequence[tuple[str, bool, str]]) -> None:
        with self.transaction():
            self.db.executemany(
                "UPDATE batches SET vote = ?, vote_reason = ? WHERE batch_id = ?",
                [(int(approve), reason, batch_id) for batch_id, approve, reason in votes],
            )

    def accept_verified(self, batch_id: str, records: Sequence[tuple[SharedRecord, bytes]], cursor: int | None) -> None:
        """A verified accepted batch's records, each with its canonical bytes, and the batch cursor past it
        (None: a retried batch behind the cursor), together."""
        with self.transaction():
            self.db.execute("DELETE FROM retries WHERE batch_id = ?", (batch_id,))
            self.db.execute(
                "UPDATE batches SET verdict = 'verified', reason = NULL, chain_state = 'accepted' WHERE batch_id = ?",
                (batch_id,),
            )
            self.db.executemany(
                "INSERT OR IGNORE INTO records (cid, batch_id, node, round, text, confidence, domain, epoch, "
                "helped, hurt, neutral, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(*dataclasses.astuple(r), data) for r, data in records],  # SharedRecord's field order, then bytes
            )
            if cursor is not None:
                self.set_cursor("batches", cursor)

    def refuse(self, batch_id: str, reason: str, cursor: int | None = None) -> None:
        """A proof of misbehaviour (bad CID, signature, Merkle proof or code): the batch is refused for good."""
        with self.transaction():
            self.db.execute("UPDATE batches SET verdict = 'refused', reason = ? WHERE batch_id = ?", (reason, batch_id))
            self.db.execute("DELETE FROM retries WHERE batch_id = ?", (batch_id,))
            if cursor is not None:
                self.set_cursor("batches", cursor)

    def retry_later(
        self,
        batch_id: str,
        reason: str,
        cursor: int | None = None,
        *,
        epoch: int | None = None,
        now: float | None = None,
    ) -> float:
        """A transient failure (the store or the chain did not answer): the batch stays to be fetched, with a
        growing delay (30 s, doubling, at most an hour); returns when the next attempt is due. `epoch` is the
        batch's registry epoch (None: as noted before): that epoch and the later ones stay open meanwhile."""
        now = time.time() if now is None else now
        with self.transaction():
            row = self.db.execute("SELECT attempts, epoch FROM retries WHERE batch_id = ?", (batch_id,)).fetchone()
            attempts = (int(row[0]) if row else 0) + 1
            epoch = epoch if epoch is not None else (int(row[1]) if row else 0)
            due = float(now) + min(3600.0, 30.0 * 2.0 ** (attempts - 1))
            self.db.execute(
                "INSERT OR REPLACE INTO retries (batch_id, attempts, next_at, reason, epoch) VALUES (?, ?, ?, ?, ?)",
                (batch_id, attempts, due, reason, epoch),
            )
            if cursor is not None:
                self.set_cursor("batches", cursor)
        return due

    def retries(self, *, due_by: float | None = None) -> list[dict[str, Any]]:
        """Batches waiting for another attempt (all, or those due by `due_by`), oldest first."""
        query = "SELECT batch_id, attempts, next_at, reason, epoch FROM retries"
        rows = self.db.execute(
            query + (" WHERE next_at <= ? ORDER BY next_at" if due_by is not None else " ORDER BY next_at"),
            (due_by,) if due_by is not None else (),
        ).fetchall()
        return [{"batch_id": r[0], "attempts": r[1], "next_at": r[2], "reason": r[3], "epoch": r[4]} for r in rows]

    def settled_epoch(self) -> int:
        """The newest epoch this node has closed: every batch of it and of the epochs before is decided and was
        fetched (or refused with a proof); -1 for none. The global library is computed over these epochs."""
        raw = self.meta("settled_epoch") or "-1"
        if not (raw == "-1" or (raw.isascii() and raw.isdigit() and len(raw) <= 18)):
            raise NodeError(
                f"{self.path} is damaged: settled_epoch holds {raw[:40]!r}; restore the file, or move it away to "
                "sync again from the start"
            )
        return int(raw)

    def set_settled_epoch(self, epoch: int) -> None:
        self.set_meta("settled_epoch", str(max(-1, int(epoch))))

    def verified_records(self) -> list[SharedRecord]:
        """Every record of a verified accepted batch, read back from its stored bytes, each re-hashed to its
        CID: a row edited in the file is one error naming the file, never a changed global library."""
        rows = self.db.execute(
            "SELECT r.cid, r.batch_id, r.round, r.data FROM records r "
            "JOIN batches b ON b.batch_id = r.batch_id WHERE b.verdict = 'verified' AND b.chain_state = 'accepted'"
        ).fetchall()
        return [self._read_record(str(cid), str(batch_id), round_, data) for cid, batch_id, round_, data in rows]

    def _read_record(self, cid: str, batch_id: str, round_: Any, data: Any) -> SharedRecord:
        def damaged(what: str) -> NodeError:
            return NodeError(
                f"{self.path} is damaged: record {cid[:64]!r} of batch {batch_id[:66]!r} {what}; restore the file, "
                "or move it away to sync again from the start"
            )

        if cid_of(_blob(data)) != cid:
            raise damaged("does not hash to its CID")
        if not isinstance(round_, int) or not 0 <= round_ < 2**63:
            raise damaged(f"has round {str(round_)[:20]!r}")
        record = self._decoded.get(cid)
        if record is None:
            try:
                record = decode_record(_blob(data))
            except DataError as exc:
                raise damaged(f"does not decode ({str(exc)[:80]})") from None
            if len(self._decoded) >= DECODED_CACHE:
                self._decoded.clear()
            self._decoded[cid] = record
        helped, hurt, neutral = record.evidence or (0, 0, 0)
        return SharedRecord(
            cid, batch_id, record.node, round_, record.text, record.confidence, record.domain, record.epoch,
            helped, hurt, neutral,
        )  # fmt: skip

    def note_trial(self, key: str, text: str, domain: str, verdict: dict[str, Any]) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO trials (text_key, text, domain, adopted, verdict) VALUES (?, ?, ?, ?, ?)",
            (key, text, domain, int(bool(verdict.get("adopted"))), json.dumps(verdict, sort_keys=True)),
        )

    def tried_texts(self) -> set[str]:
        """Text keys of every candidate this node tried, adopted or not: each is tried once."""
        return {str(row[0]) for row in self.db.execute("SELECT text_key FROM trials")}

    def adopted_texts(self) -> set[str]:
        """Text keys of the candidates this node adopted by trial."""
        return {str(row[0]) for row in self.db.execute("SELECT text_key FROM trials WHERE adopted = 1")}

    def trials(self) -> list[dict[str, Any]]:
        """Every trial's verdict, as recorded (JSON this node wrote; a damaged row reads as not adopted)."""
        out = []
        for key, verdict in self.db.execute("SELECT text_key, verdict FROM trials ORDER BY text_key"):
            try:
                row = json.loads(verdict)
            except (TypeError, ValueError):
                row = None
            out.append(row if isinstance(row, dict) else {"text_key": key, "adopted": False, "damaged": True})
        return out

    def knows_record(self, cid: str) -> bool:
        """Whether a record came to this node in a verified accepted batch (it is the network's, not local)."""
        return self.db.execute("SELECT 1 FROM records WHERE cid = ? LIMIT 1", (cid,)).fetchone() is not None

    def unmerged_verified(self, settled_epoch: int) -> list[str]:
        """Verified accepted batches of closed epochs (up to `settled_epoch`) not yet marked merged."""
        rows = self.db.execute(
            "SELECT b.batch_id FROM batches b WHERE b.verdict = 'verified' AND b.chain_state = 'accepted' "
            "AND b.merged = 0 AND NOT EXISTS (SELECT 1 FROM records r WHERE r.batch_id = b.batch_id AND r.round > ?)",
            (settled_epoch,),
        )
        return [str(r[0]) for r in rows]

    def mark_merged(self, batch_ids: Sequence[str]) -> None:
        with self.transaction():
            self.db.executemany("UPDATE batches SET merged = 1 WHERE batch_id = ?", [(b,) for b in batch_ids])

    def refused(self) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT batch_id, node, round, reason FROM batches WHERE verdict = 'refused' ORDER BY rowid"
        ).fetchall()
        return [{"batch_id": r[0], "node": r[1], "round": r[2], "reason": r[3]} for r in rows]

    # -- traffic and syncs ---------------------------------------------------------------------

    def add_traffic(self, sync: int, rows: Sequence[tuple[str, str, int]]) -> None:
        with self.transaction():
            self.db.executemany(
                "INSERT INTO traffic (sync, kind, direction, bytes) VALUES (?, ?, ?, ?)",
                [(sync, kind, direction, n) for kind, direction, n in rows if n],
            )

    def traffic(self, sync: int | None = None) -> dict[str, dict[str, int]]:
        """Bytes per direction and kind, over every sync or one."""
        where, args = ("WHERE sync = ?", (sync,)) if sync is not None else ("", ())
        rows = self.db.execute(
            f"SELECT direction, kind, SUM(bytes) FROM traffic {where} GROUP BY direction, kind", args
        ).fetchall()
        out: dict[str, dict[str, int]] = {"sent": {}, "received": {}}
        for direction, kind, total in rows:
            out[str(direction)][str(kind)] = int(total)
        return out

    def traffic_per_sync(self) -> list[tuple[int, int, int]]:
        """(sync, bytes sent, bytes received) for every sync that moved bytes, in order."""
        rows = self.db.execute(
            "SELECT sync, SUM(CASE WHEN direction = 'sent' THEN bytes ELSE 0 END), "
            "SUM(CASE WHEN direction = 'received' THEN bytes ELSE 0 END) FROM traffic GROUP BY sync ORDER BY sync"
        ).fetchall()
        return [(int(r[0]), int(r[1]), int(r[2])) for r in rows]

    def start_sync(self) -> int:
        with self.transaction():
            cursor = self.db.execute("INSERT INTO syncs (started_at) VALUES (?)", (time.time(),))
        assert cursor.lastrowid is not None
        return int(cursor.lastrowid)

    def finish_sync(self, seq: int, summary: dict[str, Any]) -> None:
        with self.transaction():
            self.db.execute(
                "UPDATE syncs SET finished_at = ?, summary = ? WHERE seq = ?",
                (time.time(), json.dumps(summary, sort_keys=True), seq),
            )

    def last_sync(self) -> dict[str, Any] | None:
        row = self.db.execute(
            "SELECT seq, started_at, finished_at, summary FROM syncs WHERE finished_at IS NOT NULL "
            "ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        if row is None:
            return None
        return {"seq": row[0], "started_at": row[1], "finished_at": row[2], **json.loads(row[3] or "{}")}

    def sync_count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM syncs WHERE finished_at IS NOT NULL").fetchone()[0])
