"""DSO: frozen-LLM agents that learn natural-language experiences and share them.

The public API is small: load a `DSOConfig`, open an `ExperienceLibrary` with an embedder, and talk
to a model through an `LLM` backend. Everything else is internal.
"""

from dso.config import DSOConfig, load_config
from dso.core.experience import Experience
from dso.errors import DSOError
from dso.library import ExperienceLibrary, SearchHit

__version__ = "0.1.0"

__all__ = [
    "DSOConfig",
    "DSOError",
    "Experience",
    "ExperienceLibrary",
    "SearchHit",
    "__version__",
    "load_config",
]
