"""The committed contract artifact must be what the pinned compiler makes of the committed source."""

import hashlib
from pathlib import Path

import pytest

from dso.chain.artifact import SOURCE_PATH, compile_contract, load_artifact

SOURCE = Path(__file__).resolve().parents[1] / SOURCE_PATH


@pytest.mark.slow
def test_artifact_matches_a_fresh_compile() -> None:
    committed = load_artifact()
    assert committed["source_sha256"] == hashlib.sha256(SOURCE.read_bytes()).hexdigest(), (
        "contracts/ExperienceRegistry.sol changed: run `make contract` and commit the artifact"
    )
    fresh = compile_contract()
    assert fresh["compiler"].startswith("0.8.37+") and fresh["settings"]["evmVersion"] == "paris"
    assert fresh["abi"] == committed["abi"]
    assert fresh["bytecode"] == committed["bytecode"], "stale artifact: run `make contract` and commit it"
    assert fresh["deployedBytecode"] == committed["deployedBytecode"]
