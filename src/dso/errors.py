"""User-facing errors.

Every failure a user can cause (bad file, wrong hash, dead endpoint) is a `DSOError` whose message is
one complete line; the CLI prints it and exits non-zero instead of showing a traceback.
"""

from __future__ import annotations


class DSOError(Exception):
    """A failure caused by input or environment, explained in one line."""


class ConfigError(DSOError):
    """The configuration (TOML, environment or flags) is invalid."""


class ModelError(DSOError):
    """A model pack is unknown, missing or fails its integrity check."""


class LLMError(DSOError):
    """An LLM backend could not produce a completion (dead endpoint, bad reply)."""


class LibraryError(DSOError):
    """An experience library operation was refused (bad input, unknown id, wrong embedder)."""
