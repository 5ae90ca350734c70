"""Versioned prompt templates: ``dso/prompts/<name>.v<N>.md``, filled with ``$placeholders``.

Templates live in files so that a change of wording is a visible, versioned change; the version a run
used is recorded in its config.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from pathlib import Path
from string import Template

from dso.errors import DSOError

PROMPTS_DIR = Path(__file__).resolve().parents[1] / "prompts"
VERSIONS = {"solver": 1, "summarize": 1, "advantage": 4, "update": 1, "consolidate": 1, "contrast": 1}


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


@functools.cache
def load_prompt(name: str, version: int | None = None) -> Prompt:
    version = version or VERSIONS.get(name)
    path = PROMPTS_DIR / f"{name}.v{version}.md"
    if version is None or not path.is_file():
        raise DSOError(f"no prompt template {name}.v{version} in {PROMPTS_DIR}")
    return Prompt(name, version, Template(path.read_text(encoding="utf-8")))


@functools.cache
def quoted_lessons() -> frozenset[str]:
    """The example lessons the current templates quote; a small extractor may hand them back verbatim."""
    found = set()
    for name in VERSIONS:
        for quoted in re.findall(r'"(When [^"]+)"', load_prompt(name).template.template):
            found.add(" ".join(quoted.lower().split()))
    return frozenset(found)
