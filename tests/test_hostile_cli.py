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


def test_files_that_are_not_inputs_are_refused_and_nothing_is_overwritten(tmp_path: Path) -> None:
    assert dso("library", "add", "When exporting, never overwrite the library.", cwd=tmp_path).returncode == 0
    library = tmp_path / "dso-library.db"
    kept = library.read_bytes()
    own = dso("library", "export", "dso-library.db", "--force", cwd=tmp_path)
    assert own.returncode == 1 and "own file" in own.stderr and library.read_bytes() == kept
    (tmp_path / "taken.json").write_text("mine")
    taken = dso("library", "export", "taken.json", cwd=tmp_path)
    assert taken.returncode == 1 and "exists" in taken.stderr and (tmp_path / "taken.json").read_text() == "mine"
    assert dso("library", "export", "taken.json", "--force", cwd=tmp_path).returncode == 0
    os.mkfifo(tmp_path / "pipe")
    for args in (("cid", "pipe"), ("library", "import", "pipe"), ("cid", "/dev/zero"), ("cid", ".")):
        result = dso(*args, cwd=tmp_path)  # a FIFO or a device must not hang or fill memory
        assert result.returncode == 1 and result.stderr.startswith("error: ") and "Traceback" not in result.stderr
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # no temporary left behind


def test_two_key_creations_on_one_path_cannot_both_win(tmp_path: Path) -> None:
    env = {**os.environ, "DSO_KEY_PASSWORD": "race"}
    command = [sys.executable, "-m", "dso", "keys", "new", "--keystore", "key.json", "--json"]
    racers = [
        subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    outcomes = [
        (r.wait(timeout=120), r.stdout.read() if r.stdout else "", r.stderr.read() if r.stderr else "") for r in racers
    ]
    winners = [out for code, out, _ in outcomes if code == 0]
    assert len(winners) == 1, outcomes
    assert all(code == 1 and err.startswith("error: ") for code, _, err in outcomes if code != 0)
    shown_address = dso("keys", "show", "--keystore", "key.json", "--json", cwd=tmp_path)
    assert shown_address.stdout.split('"address": ')[1].split('"')[1] in winners[0]  # the file holds the winner's key


JUNK_FILES = {
    "empty": b"",
    "random": bytes(range(256)) * 16,
    "nested": b"[" * 300_000,
    "not utf-8": b"\xff\xfe\xfd" * 100,
    "wrong types": b'{"format": "dso-library", "experiences": [{"text": 5, "confidence": "x"}]}',
}


def make_junk(path: Path, kind: str) -> None:
    """A junk input at `path`: one of JUNK_FILES' contents, a FIFO, a folder or a symlink loop."""
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "dir":
        path.mkdir()
    elif kind == "loop":
        path.symlink_to(path)
    else:
        path.write_bytes(JUNK_FILES[kind])


@pytest.mark.parametrize("kind", ["empty", "random", "nested", "not utf-8", "wrong types", "fifo", "dir", "loop"])
def test_every_command_that_reads_a_file_refuses_junk_in_one_line(tmp_path: Path, kind: str) -> None:
    assert dso("library", "add", "When junk arrives, refuse it whole.", cwd=tmp_path).returncode == 0
    before = (tmp_path / "dso-library.db").read_bytes()
    make_junk(tmp_path / "junk", kind)
    commands = [
        ("library", "import", "junk"),
        ("library", "show", "-l", "junk"),
        ("keys", "show", "--keystore", "junk"),
        ("eval", "--run-dir", "junk"),
    ]
    if kind != "empty":  # an empty file is a fine (empty) TOML file
        commands.append(("--config", "junk", "library", "show"))
    if kind in ("fifo", "dir", "loop", "nested"):  # any other regular file up to 256 KiB has a CID
        commands.append(("cid", "junk"))
    (tmp_path / "junkrun").mkdir()
    make_junk(tmp_path / "junkrun" / "config.json", kind)  # a run directory whose recorded configuration is junk
    commands += [("eval", "--run-dir", "junkrun"), ("bench", "extraction", "junkrun")]
    make_junk(tmp_path / "junk.jsonl", kind)  # a dataset file: the first thing dso train reads
    if kind != "empty":
        commands.append(("train", "--dataset", "junk.jsonl", "--run-dir", "run"))
    for command in commands:
        result = dso(*command, cwd=tmp_path)
        assert result.returncode == 1, (command, result.stdout[-200:])
        assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1, (
            command,
            result.stderr[-300:],
        )
        assert "\x1b" not in result.stderr
    assert (tmp_path / "dso-library.db").read_bytes() == before
