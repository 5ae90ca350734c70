"""Shared fixtures: the real embedder and the real embedded LLM, loaded once per session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dso.config import load_config
from dso.embed import Embedder, make_embedder
from dso.llm.llamacpp import LlamaCppLLM
from dso.llm.models import resolve_model


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    return make_embedder()


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    # `make test` pulls this pack first; a missing pack fails here with the command that fixes it.
    return resolve_model("smollm2-135m", load_config().models_dir)


@pytest.fixture(scope="session")
def small_llm(smollm2_path: Path) -> Iterator[LlamaCppLLM]:
    llm = LlamaCppLLM(smollm2_path, name="smollm2-135m", threads=2, n_ctx=2048, parallel=2)
    yield llm
    llm.close()


@pytest.fixture(scope="session")
def ipfs_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real IPFS daemon (js-ipfs, kubo RPC API) on loopback for the whole session."""
    from dso.services import start_ipfs

    with start_ipfs(tmp_path_factory.mktemp("ipfs")) as service:
        yield service.url


@pytest.fixture(scope="session")
def anvil_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real anvil JSON-RPC node on loopback for the whole session."""
    from dso.services import start_anvil

    with start_anvil(tmp_path_factory.mktemp("anvil")) as service:
        yield service.url


# Fixtures that load an LLM or start an npm service: a test using one is `slow` (left out of `make test-fast`),
# and so is every registry test on a chain (anvil, or the embedded py-evm: seconds per test, growing with the chain).
SLOW_FIXTURES = {"small_llm", "smollm2_path", "ipfs_api", "anvil_url"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if fixtures & SLOW_FIXTURES or "[anvil" in item.name or "[embedded" in item.name:
            item.add_marker(pytest.mark.slow)
