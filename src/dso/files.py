"""File helpers every module shares: content hashes, capped reads of user-named inputs, safe writes.

Inputs are named by users (and, through them, by strangers): a FIFO, a device or a huge file must give
one clear line, not a hang or an out-of-memory. Writes never leave a half-written file (a unique
temporary in the same folder, then a rename), and a file that must not be replaced is created with a
hard link, which fails if the name exists, so two processes racing for one name cannot both win.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import tempfile
from pathlib import Path

from dso.errors import DSOError

MAX_INPUT_BYTES = 64 * 1024 * 1024  # the largest user-named input read whole (library files, blocks)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def read_input(path: Path, error: type[DSOError] = DSOError, limit: int = MAX_INPUT_BYTES) -> bytes:
    """A user-named regular file's bytes, at most `limit`; anything else is a one-line `error`."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise error(f"file not found: {path}") from None
    except OSError as exc:
        raise error(f"cannot read {path}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(info.st_mode):
        raise error(f"{path} is a directory, not a file")
    if not stat.S_ISREG(info.st_mode):
        raise error(f"{path} is not a regular file (a pipe, socket or device); refused")
    try:
        with open(path, "rb") as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        raise error(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise error(f"{path} is larger than {limit} bytes; refused")
    return data


def same_file(a: Path, b: Path) -> bool:
    """Whether two names are one file (an export must never overwrite the library it reads)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _temporary_beside(path: Path, text: str, mode: int) -> str:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return tmp


def write_text_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    """Readers see the old file or the whole new one, never a half-written file."""
    tmp = _temporary_beside(path, text, mode)
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_new_file(path: Path, text: str, error: type[DSOError], mode: int = 0o644) -> None:
    """Create `path` whole, or fail with `error` if the name exists, even when another process races for it."""
    tmp = _temporary_beside(path, text, mode)
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise error(f"{path} exists; refusing to overwrite it") from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def source_checkout(marker: str) -> Path | None:
    """The root of the source checkout this package runs from, if it holds `marker` (a relative path).

    Development files (the npm services, the contract source) exist only in a checkout; an installed
    wheel has none, and its callers say so in one line instead of looking in site-packages.
    """
    for folder in Path(__file__).resolve().parents:
        if (folder / "pyproject.toml").is_file() and (folder / marker).exists():
            return folder
    return None
