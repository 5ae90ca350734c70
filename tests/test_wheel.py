"""The package as a user installs it: a wheel built from this tree, in a fresh virtualenv, run elsewhere.

The fresh environment gets the wheel itself with pip (offline: --no-index --no-deps) and sees the
dependencies of the development environment through a .pth file, so nothing is downloaded; the
editable development install of dso is not visible there, so every import comes from the wheel.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def test_wheel_runs_from_a_fresh_virtualenv(tmp_path: Path) -> None:
    source = tmp_path / "source"  # built from a copy, so the build leaves nothing in the working tree
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    dist = tmp_path / "dist"
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    wheel = next(dist.glob("dso-*.whl"))
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    site = Path(sysconfig.get_path("purelib", vars={"base": str(env_dir), "platbase": str(env_dir)}))
    (site / "dev-dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    pip = [str(env_dir / "bin" / "python"), "-m", "pip", "install", "-q", "--no-index", "--no-deps", str(wheel)]
    assert subprocess.run(pip, capture_output=True, text=True, timeout=300).returncode == 0

    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DSO_SERVICES_DIR")}
    env["DSO_KEY_PASSWORD"] = "wheel test"

    def dso(*args: str) -> subprocess.CompletedProcess[str]:
        command = [str(env_dir / "bin" / "dso"), *args]
        return subprocess.run(command, capture_output=True, text=True, cwd=work, env=env, timeout=300)

    where = subprocess.run(
        [str(env_dir / "bin" / "python"), "-c", "import dso; print(dso.__file__)"],
        capture_output=True,
        text=True,
        cwd=work,
        env=env,
    )
    assert str(env_dir) in where.stdout, where.stdout + where.stderr  # the wheel, not the source tree
    assert dso("--version").stdout.startswith("dso 0.")
    assert dso("library", "add", "When units differ, convert them first.", "--library", "lib.db").returncode == 0
    hits = json.loads(dso("library", "search", "convert meters", "--library", "lib.db", "--json").stdout)
    assert hits["hits"][0]["text"] == "When units differ, convert them first."
    (work / "hello.json").write_bytes(b'{"hello":"world","n":1}')
    assert dso("cid", "hello.json").stdout.strip() == "bafkreibsw5uzqkr2nyw7cictbmdnzoxr5d3v4acm52usvq7jdpl2esgxfa"
    address = json.loads(dso("keys", "new", "--keystore", "key.json", "--json").stdout)["address"]
    members = dso("chain", "members", "list", "--keystore", "key.json", "--json")  # the embedded EVM
    assert members.returncode == 0 and json.loads(members.stdout) == [address], members.stderr
    up = dso("chain", "up")  # the development services are not part of the wheel: one line says how to get them
    assert up.returncode == 1 and up.stderr.startswith("error: ") and len(up.stderr.strip().splitlines()) == 1
    assert "make services" in up.stderr and "Traceback" not in up.stderr
