"""Moving experiences in and out of a library: its own JSON export, Training-Free GRPO's files, ACE playbooks.

Formats read by `parse_import`, each validated whole before anything is written:
- a DSO export (``{"format": "dso-library", ...}``) with every field and, optionally, embeddings;
- a JSON list of strings, or a mapping ``{"G0": "When ...", "G1": ...}`` as Training-Free GRPO keeps them;
- a text file of ``[G0]. When ...`` lines, as Training-Free GRPO injects them into a prompt;
- a Training-Free GRPO agent file (YAML, experiences in ``agent.instructions``) and an ACE playbook
  (``## SECTION`` headers, ``[id] helpful=N harmful=M :: text`` bullets): `dso.library._formats`.
"""

from __future__ import annotations

import base64
import dataclasses
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dso.core.experience import Experience, check_fields, normalise_text
from dso.core.untrusted import load_json
from dso.embed.base import Embedder, Vectors
from dso.errors import LibraryError
from dso.files import read_input
from dso.library._formats import grpo_agent_experiences, is_ace_playbook, load_yaml, parse_ace_playbook

EXPORT_FORMAT = "dso-library"
EXPORT_VERSION = 1
CLAIMED_VECTOR_MIN_COSINE = 0.98  # int8 vs int8 of the same text agree to ~1.0; other text is far below
_PROMPT_LINE = re.compile(r"^\[G(\d+)\]\.\s*(.*)$")


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
    helped: int = 0  # evidence a file brings along (an ACE playbook's helpful / harmful counts)
    hurt: int = 0


def render_for_prompt(texts: Sequence[str]) -> str:
    """Numbered lines as Training-Free GRPO injects them: ``[G0]. text``."""
    return "\n".join(f"[G{i}]. {text}" for i, text in enumerate(texts))


def export_document(
    experiences: Sequence[tuple[Experience, bytes]], embedder_id: str | None, dim: int | None
) -> dict[str, Any]:
    """A DSO export: every field of every experience, with its embedding as base64 float32."""
    items = []
    for experience, embedding in experiences:
        item = experience.to_json()
        item["embedding"] = base64.b64encode(embedding).decode("ascii")
        items.append(item)
    return {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "embedder": embedder_id,
        "dim": dim,
        "experiences": items,
    }


def grpo_mapping(texts: Sequence[str]) -> dict[str, str]:
    """Training-Free GRPO's experience mapping ``{"G0": text, ...}``."""
    return {f"G{i}": text for i, text in enumerate(texts)}


def _load_document(path: Path) -> Any:
    """The file as data: a list of texts, a list of `NewExperience` (an ACE playbook), or a JSON document."""
    raw = read_input(path, LibraryError)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise LibraryError(f"{path} is not UTF-8 text") from None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    matches = [_PROMPT_LINE.match(line) for line in lines]
    if lines and all(matches):
        return [match.group(2) for match in matches if match]
    if is_ace_playbook(lines):
        bullets = parse_ace_playbook(text.splitlines(), str(path))
        return [NewExperience(text, domain=domain, helped=up, hurt=down) for text, domain, up, down in bullets]
    if text.lstrip()[:1] in ("{", "["):
        return load_json(text, LibraryError, str(path))
    document = load_yaml(text, str(path))
    texts = grpo_agent_experiences(document, str(path))
    if texts is None:
        raise LibraryError(
            f"{path}: not a dso export, a Training-Free GRPO agent or experience file, or an ACE playbook"
        )
    return texts


def parse_import(path: Path, embedder: Embedder) -> tuple[list[NewExperience], Vectors]:
    """Validate a whole import file before anything is written; vectors are recomputed from the texts.

    Embeddings in a file are never trusted: a file could pair a stored lesson's vector with other text to
    merge over it. Where a file of the same embedder claims one, it must agree with the recomputed one.
    """
    document = _load_document(path)
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
    vectors: list[Vectors | None] = []
    for index, entry in enumerate(entries):
        where = f"{path}: experience {index}"
        if isinstance(entry, str):
            items.append(NewExperience(text=entry))
            vectors.append(None)
            continue
        if isinstance(entry, NewExperience):  # an ACE bullet, already checked
            check_fields(entry.confidence, entry.domain, entry.epoch)
            items.append(entry)
            vectors.append(None)
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
        check_fields(item.confidence, item.domain, item.epoch)
        items.append(item)
        has_vector = same_model and "embedding" in entry
        vectors.append(_decode_embedding(entry["embedding"], embedder.dim, where) if has_vector else None)
    fresh = embedder.embed([normalise_text(item.text) for item in items])
    claimed = [(index, vector) for index, vector in enumerate(vectors) if vector is not None]
    for index, vector in claimed:  # a claimed vector is a hint at best: it must agree with its own text
        if float(vector @ fresh[index]) < CLAIMED_VECTOR_MIN_COSINE:
            raise LibraryError(f"{path}: experience {index}: its embedding does not match its text; nothing imported")
    return items, fresh


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
