"""The compiled ExperienceRegistry (ABI + bytecode), committed so that running needs no Node.js.

`compile_contract` rebuilds it with the pinned solcjs (contracts/compile.cjs); a test compares the
result with the committed artifact so that a stale artifact cannot land.
"""

from __future__ import annotations

import functools
import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

from dso.errors import DSOError

ARTIFACT = Path(__file__).with_name("ExperienceRegistry.json")
REPO = Path(__file__).resolve().parents[3]
SOURCE = REPO / "contracts" / "ExperienceRegistry.sol"


@functools.cache
def load_artifact() -> dict[str, Any]:
    artifact: dict[str, Any] = json.loads(ARTIFACT.read_text(encoding="utf-8"))
    return artifact


def compile_contract() -> dict[str, Any]:
    """Compile contracts/ExperienceRegistry.sol with the pinned solc (needs `make services`)."""
    if not SOURCE.is_file():
        raise DSOError(f"contract source not found at {SOURCE}")
    result = subprocess.run(
        ["node", str(REPO / "contracts" / "compile.cjs")], capture_output=True, text=True, check=False, timeout=300
    )
    if result.returncode != 0:
        raise DSOError(f"solc failed: {result.stderr.strip()[-500:]}")
    artifact: dict[str, Any] = json.loads(result.stdout)
    artifact["source_sha256"] = hashlib.sha256(SOURCE.read_bytes()).hexdigest()
    return artifact


def write_artifact() -> Path:
    ARTIFACT.write_text(json.dumps(compile_contract(), indent=1, sort_keys=True) + "\n", encoding="utf-8")
    load_artifact.cache_clear()
    return ARTIFACT
