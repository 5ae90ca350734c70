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
import shutil
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


def check_output(path: Path, force: bool, error: type[DSOError] = DSOError) -> None:
    """Before long work that ends by writing `path`: refuse now what the write would refuse later. An existing
    name is replaced only with `force`, and only when it is a regular file (never a folder, a device node, a
    pipe or a link); the folder it goes in must exist."""
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise error(f"{path} exists and is not a regular file; refusing to write over it")
    if path.exists() and not force:
        raise error(f"{path} exists; refusing to overwrite it (--force replaces it)")
    if not path.parent.is_dir():
        raise error(f"{path.parent} is not a folder; cannot write {path.name} there")


def write_output(path: Path, text: str, force: bool, error: type[DSOError] = DSOError) -> None:
    """Write a command's output file whole: a new name, or with `force` a regular file replaced atomically."""
    check_output(path, force, error)
    if force:
        write_text_atomic(path, text)
    else:
        write_new_file(path, text, error)


def fresh_run_dir(run_dir: Path, marker: str, command: str) -> None:
    """Make `run_dir` the command's own folder: replace it only if the command made it (its `marker` file is
    there) or it is empty; refuse anything else (a link, a file, a folder holding other things, `/`)."""
    if run_dir.is_symlink() or (run_dir.exists() and not run_dir.is_dir()):
        raise DSOError(f"{run_dir} is not a directory {command} made; pick another --run-dir")
    if run_dir.is_dir() and any(run_dir.iterdir()):
        if not (run_dir / marker).is_file():
            raise DSOError(
                f"{run_dir} is not empty and was not made by {command}; refusing to replace it (pick another --run-dir)"
            )
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / marker).write_text(f"made by {command}; replaced by the next {command} with this --run-dir\n")
