"""DSO: frozen-LLM agents that learn natural-language experiences and share them.

The public API is what this module exports: load a `DSOConfig`, open an `ExperienceLibrary` with an
`Embedder` from `make_embedder`, and talk to a model through an `LLM` from `make_llm`. Every error
DSO raises on purpose is a `DSOError` (the tree is drawn in `dso.errors`). `dso.llm.testing` ships a
scripted `LLM` double for your tests. Modules and names that start with an underscore, and anything
not listed in `__all__`, are internal and may change.

    from dso import ExperienceLibrary, load_config, make_embedder

    config = load_config()
    with ExperienceLibrary("lib.db", make_embedder(config.embedder)) as library:
        library.add("When units differ, convert everything to one unit first.", domain="math")
        print(library.format_for_prompt("convert 3 feet to inches", k=3))
"""

from dso.config import DSOConfig, load_config
from dso.core.experience import Experience
from dso.embed import Embedder, make_embedder
from dso.errors import (
    AggregationError,
    CARError,
    CertificateError,
    ChainError,
    CIDError,
    CodecError,
    ConfigError,
    ContractRevert,
    DataError,
    DSOError,
    IndexFileError,
    KeystoreError,
    LibraryError,
    LLMError,
    MerkleError,
    ModelError,
    RecordError,
    ServiceError,
    SignatureError,
    StoreError,
)
from dso.library import (
    ExperienceLibrary,
    HistoryEntry,
    NewExperience,
    Operation,
    OperationKind,
    SearchHit,
    WriteKind,
    WriteResult,
)
from dso.llm import LLM, ChatMessage, Completion, make_llm

__version__ = "0.1.0"

__all__ = [
    "LLM",
    "AggregationError",
    "CARError",
    "CIDError",
    "CertificateError",
    "ChainError",
    "ChatMessage",
    "CodecError",
    "Completion",
    "ConfigError",
    "ContractRevert",
    "DSOConfig",
    "DSOError",
    "DataError",
    "Embedder",
    "Experience",
    "ExperienceLibrary",
    "HistoryEntry",
    "IndexFileError",
    "KeystoreError",
    "LLMError",
    "LibraryError",
    "MerkleError",
    "ModelError",
    "NewExperience",
    "Operation",
    "OperationKind",
    "RecordError",
    "SearchHit",
    "ServiceError",
    "SignatureError",
    "StoreError",
    "WriteKind",
    "WriteResult",
    "__version__",
    "load_config",
    "make_embedder",
    "make_llm",
]
