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
from dso.files import source_checkout

ARTIFACT = Path(__file__).with_name("ExperienceRegistry.json")
SOURCE_PATH = "contracts/ExperienceRegistry.sol"


@functools.cache
def load_artifact() -> dict[str, Any]:
    artifact: dict[str, Any] = json.loads(ARTIFACT.read_text(encoding="utf-8"))
    return artifact


def compile_contract() -> dict[str, Any]:
    """Compile contracts/ExperienceRegistry.sol with the pinned solc (a source checkout after `make services`)."""
    repo = source_checkout(SOURCE_PATH)
    if repo is None:
        raise DSOError(f"{SOURCE_PATH} is not here: compiling the registry needs a source checkout")
    result = subprocess.run(
        ["node", str(repo / "contracts" / "compile.cjs")], capture_output=True, text=True, check=False, timeout=300
    )
    if result.returncode != 0:
        raise DSOError(f"solc failed: {result.stderr.strip()[-500:]}")
    artifact: dict[str, Any] = json.loads(result.stdout)
    artifact["source_sha256"] = hashlib.sha256((repo / SOURCE_PATH).read_bytes()).hexdigest()
    return artifact


def write_artifact() -> Path:
    ARTIFACT.write_text(json.dumps(compile_contract(), indent=1, sort_keys=True) + "\n", encoding="utf-8")
    load_artifact.cache_clear()
    return ARTIFACT
