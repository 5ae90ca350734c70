"""Experience files of the tools DSO's users already run: Training-Free GRPO and ACE, both ways.

- **Training-Free GRPO agent files**: YAML agent configurations whose ``agent.instructions`` end with the
  learned experiences as ``[G0]. text`` lines (its practice agents). Read: every ``[Gn].`` line of the
  instructions, in order. Written: a given agent file (the template) with its instructions' old
  experiences replaced by the library's, everything else kept.
- **Training-Free GRPO experience JSON**: ``{"G0": text, ...}`` (read and written by `_exchange`).
- **ACE playbooks**: Markdown with ``## SECTION`` headers and ``[id] helpful=N harmful=M :: text`` bullets.
  The counts become evidence (helped / hurt) and the section the domain; written back the same way.

Strangers write these files: YAML is read with a loader that builds only plain mappings, lists and scalars
(no tags that construct objects, no anchors or aliases, so no "billion laughs"), nesting and size are
bounded, and a file is parsed and checked whole before anything is imported.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import yaml

from dso.core.experience import Experience, check_label
from dso.errors import LibraryError

MAX_YAML_BYTES = 4 * 1024 * 1024
MAX_DEPTH = 32
MAX_COUNT = 1_000_000  # helpful / harmful counts above this are not a playbook's
GRPO_LINE = re.compile(r"^\[G(\d+)\]\.\s*(.*)$")
ACE_BULLET = re.compile(r"^\[([A-Za-z0-9_.:-]{1,64})\]\s+helpful=(\d{1,9})\s+harmful=(\d{1,9})\s*::\s*(.*)$")
ACE_HEADER = re.compile(r"^##\s+(.+?)\s*$")
ACE_DEFAULT_SECTION = "OTHERS"


class _PlainLoader(yaml.SafeLoader):
    """Safe YAML with no anchors or aliases: every value is written out where it stands."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            raise LibraryError("YAML aliases (*name) are not accepted in an experience file")
        event = self.peek_event()  # type: ignore[no-untyped-call]
        if getattr(event, "anchor", None):
            raise LibraryError("YAML anchors (&name) are not accepted in an experience file")
        return super().compose_node(parent, index)


def _depth(value: Any, limit: int = MAX_DEPTH) -> None:
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            raise LibraryError(f"nested deeper than {limit} levels")
        if isinstance(item, dict):
            stack += [(v, depth + 1) for v in item.values()]
        elif isinstance(item, list):
            stack += [(v, depth + 1) for v in item]


def load_yaml(text: str, where: str) -> Any:
    """A YAML document from a stranger: plain data only, bounded; any problem is one LibraryError."""
    if len(text.encode("utf-8")) > MAX_YAML_BYTES:
        raise LibraryError(f"{where} is larger than {MAX_YAML_BYTES} bytes")
    try:
        documents = list(yaml.load_all(text, Loader=_PlainLoader))
    except LibraryError as exc:
        raise LibraryError(f"{where}: {exc}") from None
    except (yaml.YAMLError, RecursionError, ValueError, TypeError) as exc:
        problem = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        raise LibraryError(f"{where} is not valid YAML: {problem[:200]}") from None
    if len(documents) != 1:
        raise LibraryError(f"{where} holds {len(documents)} YAML documents, expected one")
    try:
        _depth(documents[0])
    except LibraryError as exc:
        raise LibraryError(f"{where}: {exc}") from None
    return documents[0]


def grpo_agent_experiences(document: Any, where: str) -> list[str] | None:
    """The ``[Gn].`` experiences of a Training-Free GRPO agent file, in order; None if it is not one."""
    if not isinstance(document, dict) or not isinstance(document.get("agent"), dict):
        return None
    instructions = document["agent"].get("instructions")
    if not isinstance(instructions, str):
        raise LibraryError(f"{where}: agent.instructions must be text")
    found = [(int(m.group(1)), m.group(2).strip()) for m in map(GRPO_LINE.match, instructions.splitlines()) if m]
    if not found:
        raise LibraryError(f"{where}: agent.instructions holds no [G0]. experiences")
    return [text for _, text in found]


def write_grpo_agent(template: Any, texts: Sequence[str], where: str) -> str:
    """The agent file `template` (a Training-Free GRPO agent configuration) with the library's experiences as
    its ``[Gn].`` lines: the template's own experience lines are replaced, everything else is kept."""
    if not isinstance(template, dict) or not isinstance(template.get("agent"), dict):
        raise LibraryError(f"{where} is not an agent file (no 'agent' mapping)")
    instructions = template["agent"].get("instructions", "")
    if not isinstance(instructions, str):
        raise LibraryError(f"{where}: agent.instructions must be text")
    kept = [line for line in instructions.splitlines() if not GRPO_LINE.match(line)]
    while kept and not kept[-1].strip():
        kept.pop()
    lines = [*kept, *(f"[G{i}]. {text}" for i, text in enumerate(texts))]
    agent = {**template["agent"], "instructions": "\n".join(lines)}
    document = {**template, "agent": agent}
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100)


def is_ace_playbook(lines: Sequence[str]) -> bool:
    return any(ACE_BULLET.match(line) for line in lines)


def parse_ace_playbook(lines: Sequence[str], where: str) -> list[tuple[str, str, int, int]]:
    """(text, domain, helpful, harmful) per bullet, in order: every non-empty line must be a ``## SECTION``
    header or a bullet (anything else is an error naming the line, and nothing is imported)."""
    section = ACE_DEFAULT_SECTION
    bullets = []
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line:
            continue
        header = ACE_HEADER.match(line)
        if header:
            section = header.group(1)
            continue
        bullet = ACE_BULLET.match(line)
        if not bullet:
            raise LibraryError(f"{where}: line {number} is neither a '## SECTION' header nor an ACE bullet")
        helpful, harmful = int(bullet.group(2)), int(bullet.group(3))
        if max(helpful, harmful) > MAX_COUNT:
            raise LibraryError(f"{where}: line {number}: counts above {MAX_COUNT:,} are not accepted")
        bullets.append((bullet.group(4), ace_domain(section, f"{where}: line {number}"), helpful, harmful))
    if not bullets:
        raise LibraryError(f"{where} holds no ACE bullets")
    return bullets


def ace_domain(section: str, where: str) -> str:
    """A playbook section as a library domain: lower case, words joined by underscores."""
    domain = re.sub(r"[^a-z0-9]+", "_", section.lower()).strip("_")[:64] or "others"
    check_label(domain, f"{where}: section", 64, LibraryError)
    return domain


def section_name(domain: str) -> str:
    return domain.replace("_", " ").upper() or ACE_DEFAULT_SECTION


def write_ace_playbook(experiences: Sequence[Experience]) -> str:
    """The library as an ACE playbook: a section per domain (in first-seen order), a bullet per experience with
    its evidence as helpful / harmful counts."""
    sections: dict[str, list[Experience]] = {}
    for experience in experiences:
        sections.setdefault(experience.domain, []).append(experience)
    lines: list[str] = []
    number = 0
    for domain, members in sections.items():
        lines += [f"## {section_name(domain)}"]
        for experience in members:
            number += 1
            prefix = re.sub(r"[^a-z]", "", domain)[:3] or "dso"
            counts = f"helpful={experience.helped} harmful={experience.hurt}"
            lines.append(f"[{prefix}-{number:05d}] {counts} :: {experience.text}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
