"""File helpers every module shares: content hashes and all-or-nothing writes."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from dso.errors import DSOError


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def read_input(path: Path, error: type[DSOError] = DSOError) -> bytes:
    """A user-named input file's bytes; a missing file or a directory is a one-line `error`."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise error(f"file not found: {path}") from None
    except IsADirectoryError:
        raise error(f"{path} is a directory, not a file") from None


def source_checkout(marker: str) -> Path | None:
    """The root of the source checkout this package runs from, if it holds `marker` (a relative path).

    Development files (the npm services, the contract source) exist only in a checkout; an installed
    wheel has none, and its callers say so in one line instead of looking in site-packages.
    """
    for folder in Path(__file__).resolve().parents:
        if (folder / "pyproject.toml").is_file() and (folder / marker).exists():
            return folder
    return None


def write_text_atomic(path: Path, text: str) -> None:
    """Readers see the old file or the whole new one, never a half-written file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
