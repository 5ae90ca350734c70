"""Hostile text through the CLI: refused at the door when it carries control characters, shown inert
otherwise (no escape sequences reach the terminal, rich markup is printed as text)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # runs dso as processes

MARKUP = "When [bold red]this[/bold red] shows, do [link=https://example.invalid]that[/link]."


def dso(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "300", "TERM": "xterm-256color"}
    return subprocess.run(
        [sys.executable, "-m", "dso", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=120
    )


def test_escape_sequences_are_refused_and_markup_is_printed_as_text(tmp_path: Path) -> None:
    for domain in ("\x1b[31mred", "tab\there", "\u202eevil", "x" * 65):
        refused = dso("library", "add", "When a domain is hostile, refuse it.", "--domain", domain, cwd=tmp_path)
        assert refused.returncode == 1 and refused.stderr.startswith("error: domain must be")
        assert len(refused.stderr.strip().splitlines()) == 1 and "\x1b" not in refused.stderr
    long_word = "When" + "a" * 2000 + " do."
    too_long = dso("library", "add", long_word, cwd=tmp_path)
    assert too_long.returncode == 1 and "bytes; the cap is 1024" in too_long.stderr
    added = dso("library", "add", MARKUP + "\x1b[2J\u202e", cwd=tmp_path)  # control characters are dropped
    assert added.returncode == 0, added.stderr
    for command in (("library", "show"), ("library", "search", "what shows")):
        out = dso(*command, cwd=tmp_path).stdout
        assert "\x1b" not in out and "\u202e" not in out
        assert "[bold red]this[/bold red]" in out.replace("\n", "")  # the markup is text, not style
