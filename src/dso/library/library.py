"""The experience library: ADD / UPDATE / DELETE / MERGE with semantic de-duplication, history and retrieval.

A library remembers the embedder that built it and refuses to be used with another, so vectors of
different models are never compared. Texts are normalised and capped in words before anything is
embedded; embeddings are computed before the write lock is taken, so the lock only covers the cheap
part. A paraphrase of a stored experience (cosine >= `dedup_threshold`) is merged into it instead of
being added. Storage, the vector cache and import / export live in their own modules of this package.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from dso.config import LibraryConfig
from dso.core.experience import (
    MAX_TEXT_BYTES,
    Experience,
    check_fields,
    check_label,
    normalise_text,
    top_k,
    word_count,
)
from dso.core.records import MAX_WORDS
from dso.embed.base import Embedder, Vectors
from dso.errors import LibraryError
from dso.files import read_input, same_file, write_new_file, write_text_atomic
from dso.library._exchange import NewExperience, export_document, grpo_mapping, parse_import, render_for_prompt
from dso.library._formats import MAX_YAML_BYTES, load_yaml, write_ace_playbook, write_grpo_agent
from dso.library._storage import HistoryEntry, Provenance, Storage
from dso.library._vectors import VectorCache
from dso.library._writes import Operation, RemoteExperience, WriteResult, insert_deduplicated

EXPORT_FORMATS = ("dso", "tfgrpo-json", "tfgrpo-agent", "ace")
CONTEXT_FORMATS = ("tfgrpo", "ace", "plain")

_USER_META = "user:"  # keys callers store with `apply(meta=...)`; the library's own keys never clash


@dataclasses.dataclass(frozen=True)
class SearchHit:
    experience: Experience
    score: float


class ExperienceLibrary:
    """Experiences with ADD / UPDATE / DELETE / MERGE, history, top-k retrieval and JSON exchange.

    `embedder` may be omitted for read-only work (show, export, delete); anything that needs a vector
    then fails with a clear error.
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
        create: bool = True,
    ) -> None:
        """Open the library at `path`, creating it unless `create` is False (read-only commands)."""
        self.path = Path(path)
        self.dedup_threshold = dedup_threshold
        self.word_cap = word_cap
        self._embedder = embedder
        self._storage = Storage(self.path, on_rollback=self._forget_vectors, create=create)
        self._vectors = VectorCache(
            self._storage, self.index_path, index_min_size=index_min_size, index_candidates=index_candidates
        )
        if embedder is not None:
            with self._storage.transaction():
                stored = self._storage.meta("embedder_id")
                if stored is None:
                    self._storage.set_meta("embedder_id", embedder.identity)
                    self._storage.set_meta("dim", str(embedder.dim))
                elif stored != embedder.identity:
                    raise LibraryError(
                        f"{self.path} was built with embedder {stored}; "
                        f"refusing to mix in vectors of {embedder.identity}"
                    )

    @classmethod
    def from_config(
        cls, settings: LibraryConfig, embedder: Embedder | None, path: str | Path | None = None, *, create: bool = True
    ) -> ExperienceLibrary:
        """The library at `path` (default `settings.path`) with the configured threshold and word cap."""
        return cls(
            settings.path if path is None else path,
            embedder,
            dedup_threshold=settings.dedup_threshold,
            word_cap=settings.word_cap,
            create=create,
        )

    def _forget_vectors(self) -> None:
        """After a rollback the cached vectors may be ahead of the file (also while opening: none yet)."""
        vectors: VectorCache | None = getattr(self, "_vectors", None)
        if vectors is not None:
            vectors.invalidate()

    # -- lifecycle -----------------------------------------------------------------------------

    def close(self) -> None:
        self._vectors.save()
        self._storage.close()

    def __enter__(self) -> ExperienceLibrary:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def copy_to(self, path: str | Path) -> ExperienceLibrary:
        """A consistent copy at `path` (SQLite's online backup) to try operations on without touching this one."""
        self._storage.backup_to(Path(path))
        return ExperienceLibrary(
            path,
            self._embedder,
            dedup_threshold=self.dedup_threshold,
            word_cap=self.word_cap,
            index_min_size=self._vectors.index_min_size,
            index_candidates=self._vectors.index_candidates,
        )

    @property
    def index_path(self) -> Path:
        return self.path.with_name(self.path.name + ".index.npz")

    @property
    def embedder_id(self) -> str | None:
        return self._storage.meta("embedder_id")

    @property
    def embedder(self) -> Embedder:
        """The embedder the library was opened with (LibraryError without one)."""
        return self._require_embedder()

    def _require_embedder(self) -> Embedder:
        if self._embedder is None:
            raise LibraryError("this operation needs an embedder; open the library with one")
        return self._embedder

    # -- reading -------------------------------------------------------------------------------

    def __len__(self) -> int:
        return self._storage.count()

    def get(self, experience_id: str) -> Experience:
        found = self._storage.find(experience_id)
        if found is None:
            raise LibraryError(f"no experience with id {experience_id!r} in {self.path}")
        return found

    def all(self) -> list[Experience]:
        return self._storage.all()

    def history(self, experience_id: str | None = None) -> list[HistoryEntry]:
        return self._storage.history(experience_id)

    def embedding(self, experience_id: str) -> Vectors:
        """The stored unit vector of one experience (float32, the embedder's dimension)."""
        return np.frombuffer(self._storage.embedding(experience_id), dtype=np.float32).copy()

    def vectors(self) -> tuple[list[str], Vectors]:
        """Every experience id with its vector, in storage order (one row per id)."""
        embedder = self._require_embedder()
        with self._storage.lock:
            ids, matrix = self._vectors.load(embedder.identity, embedder.dim)
            return list(ids), matrix.copy()

    def get_meta(self, key: str) -> str | None:
        """A value stored with `apply(meta=...)`."""
        return self._storage.meta(_USER_META + key)

    def search(
        self,
        query: str,
        k: int = 5,
        *,
        min_similarity: float = -1.0,
        evidence_weight: float = 0.0,
        domain: str | None = None,
    ) -> list[SearchHit]:
        """The k experiences closest in meaning to `query`, best first; none below `min_similarity` (cosine),
        except those of the query's own `domain` when it is given.

        The cut keeps other tasks' lessons out of a prompt; a lesson of the question's own task is on task
        by definition, and a rule stated in general words ("When a conclusion ...") can sit far below the
        cut from a question made of names and numbers. With `evidence_weight`, candidates are ranked by
        similarity + weight x `Experience.net_help`: a lesson that keeps hurting sinks below a slightly
        less similar one that helps."""
        embedder = self._require_embedder()
        vector = embedder.embed([query])[0]
        pool = k if evidence_weight == 0 else max(4 * k, k + 10)
        with self._storage.lock:
            found = self._vectors.nearest(vector, pool, embedder.identity, embedder.dim)
            hits = [SearchHit(self.get(item), score) for item, score in found]
        hits = [h for h in hits if h.score >= min_similarity or (domain is not None and h.experience.domain == domain)]
        if evidence_weight:
            hits.sort(key=lambda h: -(h.score + evidence_weight * h.experience.net_help))
        return hits[:k]

    def retrieve(
        self,
        query: str,
        k: int = 5,
        *,
        count_usage: bool = False,
        min_similarity: float = -1.0,
        evidence_weight: float = 0.0,
        domain: str | None = None,
    ) -> list[SearchHit]:
        """`search`, optionally counting each returned experience as used once (its own transaction)."""
        hits = self.search(query, k, min_similarity=min_similarity, evidence_weight=evidence_weight, domain=domain)
        if count_usage and hits:
            self.count_usage([h.experience.id for h in hits])
        return hits

    def format_for_prompt(
        self,
        query: str,
        k: int = 5,
        *,
        count_usage: bool = False,
        format: str = "tfgrpo",
        min_similarity: float = -1.0,
        domain: str | None = None,
    ) -> str:
        """The experiences relevant to `query`, as a block to put in any agent's prompt, or '' when none is:
        ``tfgrpo`` numbered lines as Training-Free GRPO injects them (``[G0]. ...``), ``ace`` an ACE playbook of
        them (sections by domain, evidence as helpful / harmful counts), ``plain`` one ``- text`` line each."""
        if format not in CONTEXT_FORMATS:
            raise LibraryError(f"unknown context format {format!r:.40}; the formats are {', '.join(CONTEXT_FORMATS)}")
        hits = self.retrieve(query, k, count_usage=count_usage, min_similarity=min_similarity, domain=domain)
        if not hits:
            return ""
        if format == "ace":
            return write_ace_playbook([h.experience for h in hits])
        if format == "plain":
            return "\n".join(f"- {h.experience.text}" for h in hits)
        return render_for_prompt([h.experience.text for h in hits])

    # -- writing -------------------------------------------------------------------------------

    def _clean_text(self, text: str, word_cap: int | None = None) -> str:
        if not isinstance(text, str):
            raise LibraryError(f"experience text must be a string, got {type(text).__name__}")
        clean = normalise_text(text)
        if not clean:
            raise LibraryError("experience text is empty")
        if len(clean.encode("utf-8")) > MAX_TEXT_BYTES:
            raise LibraryError(f"experience is {len(clean.encode('utf-8'))} bytes; the cap is {MAX_TEXT_BYTES}")
        words, cap = word_count(clean), self.word_cap if word_cap is None else word_cap
        if words > cap:
            where = "library.word_cap" if word_cap is None else "the record format's cap"
            raise LibraryError(f"experience has {words} words; the cap is {cap} ({where}): {clean[:60]}...")
        return clean

    def count_usage(self, experience_ids: Sequence[str]) -> None:
        """Count each id once per occurrence as used in a prompt; unknown ids are ignored."""
        with self._storage.transaction():
            self._storage.add_usage(Counter(experience_ids))

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
        return self.add_many([NewExperience(text, confidence, domain, epoch, origin_node, content_id)])[0]

    def add_many(
        self, items: Sequence[NewExperience], vectors: Vectors | None = None, *, word_cap: int | None = None
    ) -> list[WriteResult]:
        """Add several experiences in one transaction: all of them are applied, or none. `word_cap` replaces
        `library.word_cap` for these texts (imports: what other tools wrote, up to the record format's cap)."""
        embedder = self._require_embedder()
        texts = [self._clean_text(item.text, word_cap) for item in items]
        for item in items:
            check_fields(item.confidence, item.domain, item.epoch)
            check_label(item.origin_node, "origin node")
            if item.content_id is not None:
                check_label(item.content_id, "content id")
        vectors = embedder.embed(texts) if vectors is None else vectors
        if vectors.shape != (len(items), embedder.dim):
            raise LibraryError(f"embeddings have shape {vectors.shape}, expected ({len(items)}, {embedder.dim})")
        with self._storage.transaction():
            return self._insert(items, texts, vectors)

    def _insert(self, items: Sequence[NewExperience], texts: list[str], vectors: Vectors) -> list[WriteResult]:
        embedder = self._require_embedder()
        return insert_deduplicated(self._storage, self._vectors, embedder, self.dedup_threshold, items, texts, vectors)

    def apply(
        self,
        operations: Sequence[Operation],
        *,
        meta: Mapping[str, str] | None = None,
        usage: Sequence[str] = (),
        evidence: Mapping[str, tuple[int, int, int]] | None = None,
    ) -> list[WriteResult]:
        """Apply ADD / UPDATE / DELETE operations, `meta` entries, usage and evidence counts in one transaction.

        The trainer stores its cursor in `meta`, the ids its prompts used in `usage` and what they did in
        `evidence` ((helped, hurt, neutral) per id) with the batch's operations, so a crash can never leave a
        batch half-applied, applied without its cursor (which would repeat it on resume) or counted twice.
        """
        embedder = self._require_embedder()
        for operation in operations:
            if operation.op not in ("ADD", "UPDATE", "DELETE"):
                raise LibraryError(f"unknown operation {operation.op!r}")
            if operation.op != "ADD" and not operation.target:
                raise LibraryError(f"{operation.op} needs a target experience id")
            check_fields(operation.confidence, operation.domain, operation.epoch)
        adds = [o for o in operations if o.op == "ADD"]
        updates = [o for o in operations if o.op == "UPDATE"]
        add_texts = [self._clean_text(o.text or "") for o in adds]
        update_texts = [self._clean_text(o.text or "") for o in updates]
        vectors = embedder.embed(add_texts + update_texts)
        results: list[WriteResult] = []
        with self._storage.transaction():
            self._storage.add_usage(Counter(usage))  # before deletes: a deleted lesson's count goes with it
            self._storage.add_evidence(evidence or {})
            for operation in operations:
                current = self._storage.find(operation.target or "") if operation.op == "DELETE" else None
                if current is not None:
                    self._storage.remove(current.id)
                    why = {"reason": operation.reason} if operation.reason else {}
                    self._storage.record(current.id, "DELETE", current.text, None, epoch=operation.epoch, **why)
            for operation, text, vector in zip(updates, update_texts, vectors[len(adds) :], strict=True):
                current = self._storage.find(operation.target or "")
                if current is None:
                    continue  # deleted in this batch, or by someone else meanwhile
                updated = dataclasses.replace(
                    current,
                    text=text,
                    confidence=max(current.confidence, float(operation.confidence)),
                    epoch=max(current.epoch, operation.epoch),
                    updated_at=time.time(),
                )
                self._storage.put(updated, vector)
                self._storage.record(current.id, "UPDATE", current.text, text, epoch=operation.epoch)
                results.append(WriteResult("UPDATE", updated))
            self._vectors.invalidate()  # deletes and updates moved rows: reload before de-duplicating adds
            items = [
                NewExperience(t, o.confidence, o.domain, o.epoch, o.origin_node)
                for o, t in zip(adds, add_texts, strict=True)
            ]
            results += self._insert(items, add_texts, vectors[: len(adds)])
            for key, value in (meta or {}).items():
                self._storage.set_meta(_USER_META + key, value)
        self._vectors.invalidate()
        return results

    def merge_remote(self, items: Sequence[RemoteExperience]) -> tuple[list[WriteResult], list[tuple[str, str]]]:
        """Merge experiences shared by other nodes, in one transaction; returns (results, skipped with reasons).

        A remote item never rewrites or inflates a stored experience: a paraphrase only adds a provenance
        row (the stored text, confidence and epoch stay), a new text is added with its origin and record CID,
        and a record CID already known is skipped, so a batch merged twice changes nothing. An item the
        library refuses (over its word cap, bad fields) is skipped with its reason; the rest still merge.
        """
        embedder = self._require_embedder()
        accepted: list[tuple[RemoteExperience, str]] = []
        skipped: list[tuple[str, str]] = []
        for item in items:
            try:
                text = self._clean_text(item.text)
                check_fields(item.confidence, item.domain, item.epoch)
                check_label(item.node, "origin node")
                check_label(item.record_cid, "record CID")
            except LibraryError as exc:
                skipped.append((item.record_cid, str(exc)))
                continue
            accepted.append((item, text))
        vectors = embedder.embed([text for _, text in accepted]) if accepted else None
        results: list[WriteResult] = []
        now = time.time()
        with self._storage.transaction():
            for index, (item, text) in enumerate(accepted):
                if self._storage.knows_record(item.record_cid):
                    skipped.append((item.record_cid, "record already merged"))
                    continue
                assert vectors is not None
                ids, matrix = self._vectors.load(embedder.identity, embedder.dim)
                nearest = top_k(matrix, vectors[index], 1)
                if nearest and nearest[0][1] >= self.dedup_threshold:
                    existing = self.get(ids[nearest[0][0]])
                    self._storage.record(existing.id, "SUPPORT", existing.text, existing.text, origin_node=item.node)
                    results.append(WriteResult("MERGE", existing, nearest[0][1]))
                    target = existing.id
                else:
                    fresh = NewExperience(text, item.confidence, item.domain, item.epoch, item.node, item.record_cid)
                    result = self._insert([fresh], [text], vectors[index : index + 1])[0]
                    results.append(result)
                    target = result.experience.id
                self._storage.add_provenance(
                    Provenance(target, item.node, item.record_cid, item.batch_id, item.round, now)
                )
        self._vectors.invalidate()
        return results, skipped

    def _insert_locked_one(self, item: NewExperience, text: str, vector: Vectors) -> WriteResult:
        return insert_deduplicated(
            self._storage,
            self._vectors,
            self._require_embedder(),
            self.dedup_threshold,
            [item],
            [text],
            vector[None, :],
        )[0]

    def knows_record(self, record_cid: str) -> bool:
        """Whether a shared record was already merged (its CID is in some experience's provenance)."""
        return self._storage.knows_record(record_cid)

    def provenance(self, experience_id: str) -> list[Provenance]:
        """Every shared record that supports an experience (one experience can have many supporters)."""
        return self._storage.provenance(experience_id)

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
        changed = dataclasses.replace(
            current,
            text=new_text,
            confidence=current.confidence if confidence is None else confidence,
            domain=current.domain if domain is None else domain,
            epoch=current.epoch if epoch is None else epoch,
        )
        check_fields(changed.confidence, changed.domain, changed.epoch)
        vector = self._require_embedder().embed([new_text])[0] if new_text != current.text else None
        with self._storage.transaction():
            latest = self.get(experience_id)  # still there under the lock
            changed = dataclasses.replace(changed, usage_count=latest.usage_count, updated_at=time.time())
            self._storage.put(changed, self._storage.embedding(experience_id) if vector is None else vector)
            self._storage.record(experience_id, "UPDATE", current.text, new_text)
            self._vectors.invalidate()
        return changed

    def delete(self, experience_id: str) -> Experience:
        with self._storage.transaction():
            current = self.get(experience_id)
            self._storage.remove(experience_id)
            self._storage.record(experience_id, "DELETE", current.text, None)
            self._vectors.invalidate()
        return current

    def withdraw(self, experience_id: str, reason: str) -> Experience:
        """Remove a lesson merged from the network that the network's consensus no longer accepts: its history
        keeps it (op WITHDRAW, with the reason), its provenance goes, so it merges again if accepted again."""
        with self._storage.transaction():
            current = self.get(experience_id)
            self._storage.remove(experience_id)
            self._storage.forget_provenance(experience_id)
            self._storage.record(experience_id, "WITHDRAW", current.text, None, reason=reason[:500])
            self._vectors.invalidate()
        return current

    def merge(self, experience_ids: Sequence[str], *, text: str | None = None) -> Experience:
        """Fold several experiences into the first: usage adds up, confidence is the highest."""
        if len(set(experience_ids)) < 2:
            raise LibraryError("merge needs at least two distinct experience ids")
        new_text = None if text is None else self._clean_text(text)
        vector = None if new_text is None else self._require_embedder().embed([new_text])[0]
        with self._storage.transaction():
            parts = [self.get(i) for i in dict.fromkeys(experience_ids)]
            target, others = parts[0], parts[1:]
            merged = dataclasses.replace(
                target,
                text=new_text or target.text,
                confidence=max(p.confidence for p in parts),
                epoch=max(p.epoch for p in parts),
                usage_count=sum(p.usage_count for p in parts),
                updated_at=time.time(),
            )
            self._storage.put(merged, self._storage.embedding(target.id) if vector is None else vector)
            for other in others:
                self._storage.remove(other.id)
                self._storage.move_provenance(other.id, target.id)
                self._storage.record(other.id, "DELETE", other.text, None, merged_into=target.id)
            self._storage.record(target.id, "MERGE", target.text, merged.text, merged=[o.id for o in others])
            self._vectors.invalidate()
        return merged

    # -- exchange ------------------------------------------------------------------------------

    def export_json(
        self,
        path: str | Path,
        *,
        grpo: bool = False,
        overwrite: bool = False,
        format: str | None = None,
        template: Path | None = None,
    ) -> int:
        """Write every experience to a new file; returns the count. An existing file is replaced only with
        `overwrite`, and the library's own files never.

        `format`: ``dso`` (every field, with embeddings; the default), ``tfgrpo-json`` (only the texts, as
        Training-Free GRPO keeps them: ``{"G0": text, ...}``; also `grpo`), ``tfgrpo-agent`` (the agent file
        `template` with the experiences as its ``[Gn].`` lines) or ``ace`` (an ACE playbook).
        """
        chosen = format or ("tfgrpo-json" if grpo else "dso")
        if chosen not in EXPORT_FORMATS:
            raise LibraryError(f"unknown export format {chosen!r:.40}; the formats are {', '.join(EXPORT_FORMATS)}")
        if (chosen == "tfgrpo-agent") != (template is not None):
            raise LibraryError("--template names the agent file to fill, for --format tfgrpo-agent (and only for it)")
        target = Path(path)
        if (
            any(same_file(target, own) for own in (self.path, self.index_path))
            or target.resolve() == self.path.resolve()
        ):
            raise LibraryError(f"{target} is this library's own file; export to another name")
        if target.is_dir():
            raise LibraryError(f"{target} is a directory; name the file to write")
        with self._storage.lock:
            rows = [(e, self._storage.embedding(e.id)) for e in self.all()]
        dim = None if self._embedder is None else self._embedder.dim
        texts = [e.text for e, _ in rows]
        if chosen == "tfgrpo-agent":
            assert template is not None
            agent = load_yaml(
                read_input(template, LibraryError, limit=MAX_YAML_BYTES).decode("utf-8", "replace"), str(template)
            )
            text = write_grpo_agent(agent, texts, str(template))
        elif chosen == "ace":
            text = write_ace_playbook([e for e, _ in rows])
        else:
            document = grpo_mapping(texts) if chosen == "tfgrpo-json" else export_document(rows, self.embedder_id, dim)
            text = json.dumps(document, indent=1, ensure_ascii=False) + "\n"
        if overwrite:
            write_text_atomic(target, text)
        else:
            write_new_file(target, text, LibraryError)
        return len(rows)

    def import_json(self, path: str | Path) -> list[WriteResult]:
        """Import an export, a JSON list of strings, a {"G0": text} mapping, ``[G0]. text`` lines, a
        Training-Free GRPO agent file or an ACE playbook; all or nothing. Experiences written elsewhere are
        capped by the record format (64 words), not by `library.word_cap`, which caps what this library learns:
        Training-Free GRPO's own experiences run to 50 words and more."""
        items, vectors = parse_import(Path(path), self._require_embedder())
        return self.add_many(items, vectors, word_cap=max(self.word_cap, MAX_WORDS))
