"""The experience library (the seed's E): a persistent SQLite store with semantic de-duplication.

One SQLite file in WAL mode holds the experiences, their embeddings and a history of every change,
so several processes can read and write it at once. Writes take SQLite's write lock for the whole
check-then-write step (`BEGIN IMMEDIATE`), so two writers never both add the same paraphrase and
no write is lost. Embeddings are computed before the lock is taken; the lock only covers the
cheap part.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import math
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dso.core.experience import Experience, normalise_text, top_k, word_count
from dso.embed.base import Embedder, Vectors
from dso.errors import DSOError, LibraryError
from dso.files import read_input, write_text_atomic
from dso.index import BinaryIndex

SCHEMA_VERSION = 1
EXPORT_FORMAT = "dso-library"
_ID_PATTERN = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")

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
    content_id TEXT
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
"""

_COLUMNS = (
    "id, text, confidence, domain, epoch, usage_count, created_at, updated_at, origin_node, content_id, embedder_id"
)


@dataclasses.dataclass(frozen=True)
class NewExperience:
    """What a caller supplies to add an experience; the library assigns the rest."""

    text: str
    confidence: float = 0.5
    domain: str = "general"
    epoch: int = 0
    origin_node: str = "local"
    content_id: str | None = None
    id: str | None = None  # kept when free (import of an export), otherwise a new id is made


@dataclasses.dataclass(frozen=True)
class Operation:
    """One change to the library, as the learning loop proposes it."""

    op: str  # "ADD", "UPDATE" or "DELETE"
    text: str | None = None  # for ADD and UPDATE
    target: str | None = None  # experience id, for UPDATE and DELETE
    confidence: float = 0.5
    domain: str = "general"
    epoch: int = 0
    origin_node: str = "local"


@dataclasses.dataclass(frozen=True)
class WriteResult:
    op: str  # "ADD" or "MERGE" (the text was a paraphrase of `experience`)
    experience: Experience
    similarity: float | None = None


@dataclasses.dataclass(frozen=True)
class SearchHit:
    experience: Experience
    score: float


@dataclasses.dataclass(frozen=True)
class HistoryEntry:
    seq: int
    experience_id: str
    op: str
    old_text: str | None
    new_text: str | None
    at: float
    detail: dict[str, Any]


def new_experience_id() -> str:
    return "e" + secrets.token_hex(6)


def render_for_prompt(texts: Sequence[str]) -> str:
    """Numbered lines as Training-Free GRPO injects them: ``[G0]. text``."""
    return "\n".join(f"[G{i}]. {text}" for i, text in enumerate(texts))


def _row_to_experience(row: sqlite3.Row) -> Experience:
    return Experience(
        id=row["id"],
        text=row["text"],
        confidence=row["confidence"],
        domain=row["domain"],
        epoch=row["epoch"],
        usage_count=row["usage_count"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        origin_node=row["origin_node"],
        content_id=row["content_id"],
        embedder_id=row["embedder_id"],
    )


class ExperienceLibrary:
    """Experiences with ADD / UPDATE / DELETE / MERGE, history, top-k retrieval and JSON exchange.

    `embedder` may be omitted for read-only work (show, export, delete); anything that needs a
    vector then fails with a clear error. A library remembers the embedder that built it and
    refuses to be used with another, so vectors of different models are never compared.
    """

    def __init__(
        self,
        path: str | Path,
        embedder: Embedder | None = None,
        *,
        dedup_threshold: float = 0.9,
        word_cap: int = 32,
        index_min_size: int = 20_000,
        index_candidates: int = 1000,
    ) -> None:
        self.path = Path(path)
        self.dedup_threshold = dedup_threshold
        self.word_cap = word_cap
        self.index_min_size = index_min_size
        self.index_candidates = index_candidates
        self._index: BinaryIndex | None = None
        self._index_dirty = False
        self._embedder = embedder
        self._lock = threading.RLock()
        if self.path.exists() and self.path.is_dir():
            raise LibraryError(f"library path {self.path} is a directory")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.path, timeout=60.0, isolation_level=None, check_same_thread=False)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA busy_timeout = 60000")
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = NORMAL")
            with self._write():
                for statement in filter(str.strip, _SCHEMA.split(";")):
                    self._db.execute(statement)
                self._check_meta()
        except sqlite3.DatabaseError as exc:
            raise LibraryError(f"{self.path} is not a usable experience library: {exc}") from None
        self._cache: tuple[int, list[str], Vectors] | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    def close(self) -> None:
        if self._index is not None and self._index_dirty:
            self._index.save(self.index_path, stamp=self._stamp())
        self._db.close()

    def copy_to(self, path: str | Path) -> ExperienceLibrary:
        """A consistent copy at `path` (SQLite's online backup) to try operations on without touching this one."""
        with self._lock:
            target = sqlite3.connect(path)
            try:
                self._db.backup(target)
            finally:
                target.close()
        return ExperienceLibrary(
            path,
            self._embedder,
            dedup_threshold=self.dedup_threshold,
            word_cap=self.word_cap,
            index_min_size=self.index_min_size,
            index_candidates=self.index_candidates,
        )

    @property
    def index_path(self) -> Path:
        return self.path.with_name(self.path.name + ".index.npz")

    def _stamp(self) -> str:
        """Changes whenever any vector changes: every such write adds a history row."""
        row = self._db.execute("SELECT MAX(seq), (SELECT COUNT(*) FROM experiences) FROM history").fetchone()
        return f"{row[0]}:{row[1]}:{self.embedder_id}"

    def __enter__(self) -> ExperienceLibrary:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _write(self) -> Iterator[None]:
        """One write transaction holding SQLite's write lock; rolled back whole on any error."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                self._cache = None
                self._index = None
                raise
            self._db.execute("COMMIT")

    def _check_meta(self) -> None:
        meta = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        version = int(meta.get("schema_version", SCHEMA_VERSION))
        if version != SCHEMA_VERSION:
            raise LibraryError(f"{self.path} has schema version {version}; this dso reads {SCHEMA_VERSION}")
        self._db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        stored = meta.get("embedder_id")
        if self._embedder is None:
            return
        if stored is None:
            self._db.execute(
                "INSERT INTO meta (key, value) VALUES ('embedder_id', ?), ('dim', ?)",
                (self._embedder.identity, str(self._embedder.dim)),
            )
        elif stored != self._embedder.identity:
            raise LibraryError(
                f"{self.path} was built with embedder {stored}; refusing to mix in vectors of {self._embedder.identity}"
            )

    @property
    def embedder_id(self) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = 'embedder_id'").fetchone()
        return None if row is None else str(row[0])

    def _require_embedder(self) -> Embedder:
        if self._embedder is None:
            raise LibraryError("this operation needs an embedder; open the library with one")
        return self._embedder

    # -- reading -------------------------------------------------------------------------------

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM experiences").fetchone()[0])

    def get(self, experience_id: str) -> Experience:
        row = self._db.execute(f"SELECT {_COLUMNS} FROM experiences WHERE id = ?", (experience_id,)).fetchone()
        if row is None:
            raise LibraryError(f"no experience with id {experience_id!r} in {self.path}")
        return _row_to_experience(row)

    def all(self) -> list[Experience]:
        rows = self._db.execute(f"SELECT {_COLUMNS} FROM experiences ORDER BY created_at, id").fetchall()
        return [_row_to_experience(r) for r in rows]

    def history(self, experience_id: str | None = None) -> list[HistoryEntry]:
        query = "SELECT seq, experience_id, op, old_text, new_text, at, detail FROM history"
        rows = (
            self._db.execute(query + " WHERE experience_id = ? ORDER BY seq", (experience_id,))
            if experience_id
            else self._db.execute(query + " ORDER BY seq")
        ).fetchall()
        return [HistoryEntry(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6])) for r in rows]

    def _vectors(self) -> tuple[list[str], Vectors]:
        """All (id, embedding) rows, cached until another connection commits a change."""
        version = int(self._db.execute("PRAGMA data_version").fetchone()[0])
        if self._cache is not None and self._cache[0] == version:
            return self._cache[1], self._cache[2]
        embedder = self._require_embedder()
        rows = self._db.execute(
            "SELECT id, embedding FROM experiences WHERE embedder_id = ? ORDER BY rowid",
            (embedder.identity,),
        ).fetchall()
        ids = [r[0] for r in rows]
        matrix = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(ids), embedder.dim)
        self._cache = (version, ids, matrix.copy())
        self._index = None  # rebuilt (or loaded) from these vectors when a search needs it
        return self._cache[1], self._cache[2]

    def _binary_index(self, ids: list[str], matrix: Vectors) -> BinaryIndex:
        """The Hamming index over the current vectors: kept, loaded from disk if current, or built."""
        if self._index is not None:
            return self._index
        stamp = self._stamp()
        if self.index_path.is_file():
            try:
                index, saved = BinaryIndex.load(self.index_path)
                if saved == stamp and len(index) == len(ids):
                    self._index = index
                    return index
            except DSOError:
                pass  # a damaged or stale file is rebuilt below
        self._index = BinaryIndex.build(ids, matrix)
        self._index.save(self.index_path, stamp=stamp)
        self._index_dirty = False
        return self._index

    def search(self, query: str, k: int = 5) -> list[SearchHit]:
        """The k experiences closest in meaning to `query`, best first."""
        vector = self._require_embedder().embed([query])[0]
        with self._lock:
            ids, matrix = self._vectors()
            if len(ids) >= self.index_min_size:
                index = self._binary_index(ids, matrix)
                # 1% of the library, at least index_candidates: recall@10 >= 0.99 up to 1M (bench/results)
                pool = max(self.index_candidates, len(ids) // 100)
                found = index.search(vector, k, candidates=pool)
                return [SearchHit(self.get(item), score) for item, score in found]
            ranked = top_k(matrix, vector, k)
            return [SearchHit(self.get(ids[i]), score) for i, score in ranked]

    def retrieve(self, query: str, k: int = 5, *, count_usage: bool = False) -> list[SearchHit]:
        """`search`, optionally counting each returned experience as used once."""
        hits = self.search(query, k)
        if count_usage and hits:
            with self._write():
                self._db.executemany(
                    "UPDATE experiences SET usage_count = usage_count + 1 WHERE id = ?",
                    [(h.experience.id,) for h in hits],
                )
        return hits

    def format_for_prompt(self, query: str, k: int = 5, *, count_usage: bool = False) -> str:
        """The experiences relevant to `query` as numbered lines (``[G0]. ...``), or ''."""
        return render_for_prompt([h.experience.text for h in self.retrieve(query, k, count_usage=count_usage)])

    # -- writing -------------------------------------------------------------------------------

    def _clean_text(self, text: str) -> str:
        if not isinstance(text, str):
            raise LibraryError(f"experience text must be a string, got {type(text).__name__}")
        clean = normalise_text(text)
        if not clean:
            raise LibraryError("experience text is empty")
        words = word_count(clean)
        if words > self.word_cap:
            raise LibraryError(
                f"experience has {words} words; the cap is {self.word_cap} (library.word_cap): {clean[:60]}..."
            )
        return clean

    @staticmethod
    def _check_fields(confidence: float, domain: str, epoch: int) -> None:
        if isinstance(confidence, bool) or not isinstance(confidence, (int, float)):
            raise LibraryError(f"confidence must be a number, got {confidence!r}")
        if not (math.isfinite(confidence) and 0.0 <= confidence <= 1.0):
            raise LibraryError(f"confidence must lie in [0, 1], got {confidence!r}")
        if not isinstance(domain, str) or not domain.strip() or len(domain) > 64:
            raise LibraryError(f"domain must be a non-empty string of at most 64 characters, got {domain!r}")
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise LibraryError(f"epoch must be a non-negative integer, got {epoch!r}")

    def _record(self, experience_id: str, op: str, old: str | None, new: str | None, **detail: Any) -> None:
        self._db.execute(
            "INSERT INTO history (experience_id, op, old_text, new_text, at, detail) VALUES (?, ?, ?, ?, ?, ?)",
            (experience_id, op, old, new, time.time(), json.dumps(detail, sort_keys=True)),
        )

    def add(
        self,
        text: str,
        *,
        confidence: float = 0.5,
        domain: str = "general",
        epoch: int = 0,
        origin_node: str = "local",
        content_id: str | None = None,
    ) -> WriteResult:
        """Add an experience, or merge it into an existing paraphrase (cosine >= dedup_threshold)."""
        item = NewExperience(text, confidence, domain, epoch, origin_node, content_id)
        return self.add_many([item])[0]

    def add_many(self, items: Sequence[NewExperience], vectors: Vectors | None = None) -> list[WriteResult]:
        """Add several experiences in one transaction: all of them are applied, or none."""
        embedder = self._require_embedder()
        texts = [self._clean_text(item.text) for item in items]
        for item in items:
            self._check_fields(item.confidence, item.domain, item.epoch)
        if vectors is None:
            vectors = embedder.embed(texts)
        if vectors.shape != (len(items), embedder.dim):
            raise LibraryError(f"embeddings have shape {vectors.shape}, expected ({len(items)}, {embedder.dim})")
        with self._write():
            return self._insert_locked(items, texts, vectors)

    def _insert_locked(self, items: Sequence[NewExperience], texts: list[str], vectors: Vectors) -> list[WriteResult]:
        """The de-duplicating insert; the caller holds the write transaction."""
        embedder = self._require_embedder()
        results: list[WriteResult] = []
        known_ids, known = self._vectors()
        ids = list(known_ids)
        # One buffer for old and new rows: each item is checked against everything before it.
        matrix = np.empty((len(ids) + len(items), embedder.dim), dtype=np.float32)
        matrix[: len(ids)] = known
        changed_rows: list[int] = []
        for item, text, vector in zip(items, texts, vectors, strict=True):
            best = top_k(matrix[: len(ids)], vector, 1)
            if best and best[0][1] >= self.dedup_threshold:
                row, similarity = best[0]
                result = self._merge_paraphrase(self.get(ids[row]), item, text, vector, similarity)
                if result.experience.text == text:
                    matrix[row] = vector  # the incoming wording was adopted
                    changed_rows.append(row)
                results.append(result)
                continue
            experience_id = item.id if item.id and self._id_free(item.id) else new_experience_id()
            now = time.time()
            self._db.execute(
                "INSERT INTO experiences (id, text, embedding, embedder_id, confidence, domain, epoch, "
                "usage_count, created_at, updated_at, origin_node, content_id) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?)",
                (
                    experience_id,
                    text,
                    vector.astype(np.float32).tobytes(),
                    embedder.identity,
                    float(item.confidence),
                    item.domain,
                    item.epoch,
                    now,
                    now,
                    item.origin_node,
                    item.content_id,
                ),
            )
            self._record(experience_id, "ADD", None, text, origin_node=item.origin_node)
            matrix[len(ids)] = vector
            changed_rows.append(len(ids))
            ids.append(experience_id)
            results.append(WriteResult("ADD", self.get(experience_id)))
        version = int(self._db.execute("PRAGMA data_version").fetchone()[0])
        index = self._index
        self._cache = (version, ids, matrix[: len(ids)].copy())
        if index is not None and changed_rows:  # keep the Hamming index in step, row by row
            index.add([ids[r] for r in changed_rows], matrix[changed_rows])
            self._index, self._index_dirty = index, True
        return results

    def _id_free(self, experience_id: str) -> bool:
        return bool(_ID_PATTERN.match(experience_id)) and not self._exists(experience_id)

    def _merge_paraphrase(
        self, existing: Experience, item: NewExperience, text: str, vector: Vectors, similarity: float
    ) -> WriteResult:
        """A paraphrase keeps the existing id; the more confident wording wins."""
        adopt = text != existing.text and item.confidence > existing.confidence
        new_text = text if adopt else existing.text
        self._db.execute(
            "UPDATE experiences SET text = ?, embedding = CASE WHEN ? THEN ? ELSE embedding END, "
            "confidence = MAX(confidence, ?), epoch = MAX(epoch, ?), updated_at = ? WHERE id = ?",
            (
                new_text,
                adopt,
                vector.astype(np.float32).tobytes(),
                float(item.confidence),
                item.epoch,
                time.time(),
                existing.id,
            ),
        )
        self._record(
            existing.id,
            "MERGE",
            existing.text,
            new_text,
            incoming=text,
            similarity=round(similarity, 4),
            origin_node=item.origin_node,
        )
        return WriteResult("MERGE", self.get(existing.id), similarity)

    def apply(self, operations: Sequence[Operation], *, meta: Mapping[str, str] | None = None) -> list[WriteResult]:
        """Apply ADD / UPDATE / DELETE operations and `meta` entries in one transaction: all or nothing.

        The trainer stores its cursor in `meta` with the batch's operations, so a crash can never leave
        a batch half-applied or applied without its cursor (which would repeat it on resume).
        """
        embedder = self._require_embedder()
        for operation in operations:
            if operation.op not in ("ADD", "UPDATE", "DELETE"):
                raise LibraryError(f"unknown operation {operation.op!r}")
            if operation.op != "ADD" and not operation.target:
                raise LibraryError(f"{operation.op} needs a target experience id")
            self._check_fields(operation.confidence, operation.domain, operation.epoch)
        adds = [o for o in operations if o.op == "ADD"]
        updates = [o for o in operations if o.op == "UPDATE"]
        add_texts = [self._clean_text(o.text or "") for o in adds]
        update_texts = [self._clean_text(o.text or "") for o in updates]
        vectors = embedder.embed(add_texts + update_texts)
        results: list[WriteResult] = []
        with self._write():
            for operation in operations:
                if operation.op == "DELETE" and operation.target and self._exists(operation.target):
                    current = self.get(operation.target)
                    self._db.execute("DELETE FROM experiences WHERE id = ?", (current.id,))
                    self._record(current.id, "DELETE", current.text, None, epoch=operation.epoch)
            for operation, text, vector in zip(updates, update_texts, vectors[len(adds) :], strict=True):
                if operation.target is None or not self._exists(operation.target):
                    continue  # deleted in this batch, or by someone else meanwhile
                current = self.get(operation.target)
                self._db.execute(
                    "UPDATE experiences SET text = ?, embedding = ?, confidence = MAX(confidence, ?), "
                    "epoch = MAX(epoch, ?), updated_at = ? WHERE id = ?",
                    (
                        text,
                        vector.astype(np.float32).tobytes(),
                        float(operation.confidence),
                        operation.epoch,
                        time.time(),
                        current.id,
                    ),
                )
                self._record(current.id, "UPDATE", current.text, text, epoch=operation.epoch)
                results.append(WriteResult("UPDATE", self.get(current.id)))
            self._cache = None  # deletes and updates moved rows: reload before de-duplicating adds
            items = [
                NewExperience(t, o.confidence, o.domain, o.epoch, o.origin_node)
                for o, t in zip(adds, add_texts, strict=True)
            ]
            results += self._insert_locked(items, add_texts, vectors[: len(adds)])
            for key, value in (meta or {}).items():
                self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (f"user:{key}", value))
        self._cache = None
        self._index = None
        return results

    def get_meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (f"user:{key}",)).fetchone()
        return None if row is None else str(row[0])

    def _exists(self, experience_id: str) -> bool:
        return self._db.execute("SELECT 1 FROM experiences WHERE id = ?", (experience_id,)).fetchone() is not None

    def update(
        self,
        experience_id: str,
        *,
        text: str | None = None,
        confidence: float | None = None,
        domain: str | None = None,
        epoch: int | None = None,
    ) -> Experience:
        """Change fields of one experience; a new text is re-embedded."""
        current = self.get(experience_id)
        new_text = current.text if text is None else self._clean_text(text)
        new_conf = current.confidence if confidence is None else confidence
        new_domain = current.domain if domain is None else domain
        new_epoch = current.epoch if epoch is None else epoch
        self._check_fields(new_conf, new_domain, new_epoch)
        vector = self._require_embedder().embed([new_text])[0] if new_text != current.text else None
        with self._write():
            self.get(experience_id)  # still there under the lock
            self._db.execute(
                "UPDATE experiences SET text = ?, confidence = ?, domain = ?, epoch = ?, updated_at = ?, "
                "embedding = COALESCE(?, embedding) WHERE id = ?",
                (
                    new_text,
                    float(new_conf),
                    new_domain,
                    new_epoch,
                    time.time(),
                    None if vector is None else vector.astype(np.float32).tobytes(),
                    experience_id,
                ),
            )
            self._record(experience_id, "UPDATE", current.text, new_text)
            self._cache = None
        return self.get(experience_id)

    def delete(self, experience_id: str) -> Experience:
        with self._write():
            current = self.get(experience_id)
            self._db.execute("DELETE FROM experiences WHERE id = ?", (experience_id,))
            self._record(experience_id, "DELETE", current.text, None)
            self._cache = None
        return current

    def merge(self, experience_ids: Sequence[str], *, text: str | None = None) -> Experience:
        """Fold several experiences into the first: usage adds up, confidence is the highest."""
        if len(set(experience_ids)) < 2:
            raise LibraryError("merge needs at least two distinct experience ids")
        new_text = None if text is None else self._clean_text(text)
        vector = None if new_text is None else self._require_embedder().embed([new_text])[0]
        with self._write():
            parts = [self.get(i) for i in dict.fromkeys(experience_ids)]
            target, others = parts[0], parts[1:]
            final_text = new_text or target.text
            self._db.execute(
                "UPDATE experiences SET text = ?, confidence = ?, epoch = ?, usage_count = ?, updated_at = ?, "
                "embedding = COALESCE(?, embedding) WHERE id = ?",
                (
                    final_text,
                    max(p.confidence for p in parts),
                    max(p.epoch for p in parts),
                    sum(p.usage_count for p in parts),
                    time.time(),
                    None if vector is None else vector.astype(np.float32).tobytes(),
                    target.id,
                ),
            )
            for other in others:
                self._db.execute("DELETE FROM experiences WHERE id = ?", (other.id,))
                self._record(other.id, "DELETE", other.text, None, merged_into=target.id)
            self._record(target.id, "MERGE", target.text, final_text, merged=[o.id for o in others])
            self._cache = None
        return self.get(target.id)

    # -- exchange ------------------------------------------------------------------------------

    def export_json(self, path: str | Path) -> int:
        """Write every experience, with its embedding, to a JSON file; returns the count."""
        rows = self._db.execute(f"SELECT {_COLUMNS}, embedding FROM experiences ORDER BY created_at, id")
        items = []
        for row in rows.fetchall():
            item = _row_to_experience(row).to_json()
            item["embedding"] = base64.b64encode(row["embedding"]).decode("ascii")
            items.append(item)
        document = {
            "format": EXPORT_FORMAT,
            "version": SCHEMA_VERSION,
            "embedder": self.embedder_id,
            "dim": None if self._embedder is None else self._embedder.dim,
            "experiences": items,
        }
        write_text_atomic(Path(path), json.dumps(document, indent=1, ensure_ascii=False) + "\n")
        return len(items)

    def import_json(self, path: str | Path) -> list[WriteResult]:
        """Import an export, a JSON list of strings, or a {"G0": text} mapping; all or nothing."""
        items, vectors = parse_import(Path(path), self._require_embedder())
        return self.add_many(items, vectors)


def _load_json(path: Path) -> Any:
    raw = read_input(path, LibraryError)
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise LibraryError(f"{path} is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise LibraryError(f"{path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None


def parse_import(path: Path, embedder: Embedder) -> tuple[list[NewExperience], Vectors | None]:
    """Validate a whole import file before anything is written."""
    document = _load_json(path)
    if isinstance(document, list):
        entries: list[Any] = document
        exported = False
    elif isinstance(document, dict) and document.get("format") == EXPORT_FORMAT:
        entries = document.get("experiences")  # type: ignore[assignment]
        exported = True
        if not isinstance(entries, list):
            raise LibraryError(f"{path}: 'experiences' must be a list")
    elif isinstance(document, dict) and all(isinstance(v, str) for v in document.values()):
        entries = list(document.values())  # Training-Free GRPO style {"G0": "When ...", ...}
        exported = False
    else:
        raise LibraryError(f"{path}: expected a dso-library export, a list of strings or a mapping of strings")
    if not entries:
        raise LibraryError(f"{path} holds no experiences")
    same_model = exported and document.get("embedder") == embedder.identity
    if exported and document.get("dim") not in (None, embedder.dim) and same_model:
        raise LibraryError(f"{path}: embedding dimension {document.get('dim')}, expected {embedder.dim}")
    items: list[NewExperience] = []
    vectors: list[Vectors] = []
    for index, entry in enumerate(entries):
        where = f"{path}: experience {index}"
        if isinstance(entry, str):
            items.append(NewExperience(text=entry))
            continue
        if not isinstance(entry, dict) or not isinstance(entry.get("text"), str):
            raise LibraryError(f"{where}: expected a string or an object with a 'text' string")
        try:
            item = NewExperience(
                text=entry["text"],
                confidence=entry.get("confidence", 0.5),
                domain=entry.get("domain", "general"),
                epoch=entry.get("epoch", 0),
                origin_node=str(entry.get("origin_node", "local")),
                content_id=entry.get("content_id"),
                id=entry.get("id") if isinstance(entry.get("id"), str) else None,
            )
        except TypeError as exc:
            raise LibraryError(f"{where}: {exc}") from None
        ExperienceLibrary._check_fields(item.confidence, item.domain, item.epoch)
        items.append(item)
        if same_model and "embedding" in entry:
            vectors.append(_decode_embedding(entry["embedding"], embedder.dim, where))
    if same_model and len(vectors) == len(items):
        return items, np.stack(vectors)
    return items, None  # re-embed everything with this library's model


def _decode_embedding(value: Any, dim: int, where: str) -> Vectors:
    try:
        raw = base64.b64decode(value, validate=True)
    except (ValueError, TypeError):
        raise LibraryError(f"{where}: embedding is not valid base64") from None
    if len(raw) != dim * 4:
        raise LibraryError(f"{where}: embedding has {len(raw) // 4} dimensions, expected {dim}")
    vector = np.frombuffer(raw, dtype="<f4").astype(np.float32)
    if not np.all(np.isfinite(vector)) or not 0.98 < float(np.linalg.norm(vector)) < 1.02:
        raise LibraryError(f"{where}: embedding is not a finite unit vector")
    return vector
