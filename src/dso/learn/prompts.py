"""Versioned prompt templates: ``dso/prompts/<name>.v<N>.md``, filled with ``$placeholders``.

Templates live in files so that a change of wording is a visible, versioned change; which version of
each a run uses is configuration (`[prompts]`, `DSO_PROMPTS_ADVANTAGE=3`), recorded in the run's config,
so an ablation of a prompt is reproducible.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from pathlib import Path
from string import Template

from dso.config import PromptConfig
from dso.errors import ConfigError, DSOError

PROMPTS_DIR = Path(__file__).resolve().parents[1] / "prompts"
_SECTION = re.compile(r"^---([a-z]+)---[ \t]*\n", re.MULTILINE)


@dataclasses.dataclass(frozen=True)
class Prompt:
    name: str
    version: int
    template: Template

    def render(self, **values: object) -> str:
        try:
            return self.template.substitute({k: str(v) for k, v in values.items()}).strip() + "\n"
        except KeyError as exc:
            raise DSOError(f"prompt {self.name}.v{self.version} needs a value for {exc}") from None

    def sections(self) -> dict[str, Prompt]:
        """The parts of a template that holds several texts, each after a line ``---<part>---``.

        What comes before the first such line is the part "system"; a template without those lines is one
        part, "system", itself.
        """
        pieces = _SECTION.split(self.template.template)
        parts = {"system": pieces[0]} | dict(zip(pieces[1::2], pieces[2::2], strict=True))
        return {part: Prompt(self.name, self.version, Template(text)) for part, text in parts.items()}


@functools.cache
def load_prompt(name: str, version: int) -> Prompt:
    path = PROMPTS_DIR / f"{name}.v{version}.md"
    if not path.is_file():
        known = sorted(p.name.removesuffix(".md") for p in PROMPTS_DIR.glob(f"{name}.v*.md"))
        raise ConfigError(f"no prompt template {name}.v{version} (available: {', '.join(known) or 'none'})")
    return Prompt(name, version, Template(path.read_text(encoding="utf-8")))


@dataclasses.dataclass(frozen=True)
class PromptSet:
    """The templates one run uses, loaded (and so checked) up front."""

    versions: PromptConfig = dataclasses.field(default_factory=PromptConfig)

    def __post_init__(self) -> None:
        for name, version in self.to_json().items():
            load_prompt(name, version)

    def to_json(self) -> dict[str, int]:
        return dataclasses.asdict(self.versions)

    def get(self, name: str) -> Prompt:
        return load_prompt(name, getattr(self.versions, name))

    @functools.cached_property
    def quoted_lessons(self) -> frozenset[str]:
        """The example lessons these templates quote; a small extractor may hand them back verbatim."""
        found = set()
        for name, version in self.to_json().items():
            for quoted in re.findall(r'"(When [^"]+)"', load_prompt(name, version).template.template):
                found.add(" ".join(quoted.lower().split()))
        return frozenset(found)
