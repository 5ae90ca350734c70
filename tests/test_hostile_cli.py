"""Hostile text through the CLI: refused at the door when it carries control characters, shown inert
otherwise (no escape sequences reach the terminal, rich markup is printed as text)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # runs dso as processes

MARKUP = "When [bold red]this[/bold red] shows, do [link=https://example.invalid]that[/link]."


def dso(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return dso_env({}, *args, cwd=cwd)


def dso_env(extra: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "300", "TERM": "xterm-256color", **extra}
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


def test_simulate_never_writes_over_what_it_did_not_make(tmp_path: Path) -> None:
    """--output replaces a file only with --force and never a folder or a device node; --run-dir is the
    simulation's own folder, never `/` or one holding other things; --plots must be a folder. Each is one
    error line before any node runs."""
    kept = tmp_path / "report.json"
    kept.write_text("mine")
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "data").write_text("x")
    small = ["simulate", "--nodes", "3", "--committee", "2", "--rounds", "1", "--chain", "memory"]
    for extra, message in (
        (["--output", str(kept)], "exists; refusing to overwrite"),
        (["--output", str(kept), "--force", "--plots", str(kept)], "is not a folder"),
        (["--output", str(folder)], "not a regular file"),
        (["--output", "/dev/null", "--force"], "not a regular file"),
        (["--run-dir", "/"], "refusing to replace it"),
        (["--run-dir", str(folder)], "refusing to replace it"),
    ):
        result = dso(*small, *extra, cwd=tmp_path)
        assert result.returncode == 1, (extra, result.stderr)
        assert result.stderr.startswith("error: ") and message in result.stderr, (extra, result.stderr)
        assert "Traceback" not in result.stderr
    assert kept.read_text() == "mine" and (folder / "data").read_text() == "x"
    made = dso(*small, "--output", str(kept), "--force", "--run-dir", str(tmp_path / "run"), cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert json.loads(kept.read_text())["poisoned_accepted"] == 0
    again = dso(*small, "--run-dir", str(tmp_path / "run"), cwd=tmp_path)  # its own folder: replaced
    assert again.returncode == 0, again.stderr


def test_damaged_keystores_and_paths_under_a_file_are_one_error_line(tmp_path: Path) -> None:
    env = {"DSO_KEY_PASSWORD": "pw"}
    made = dso_env(env, "keys", "new", "--keystore", "key.json", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    good = json.loads((tmp_path / "key.json").read_text())
    for name, damage in (("salt", {"kdfparams": {"n": "junk"}}), ("text", {"ciphertext": 5})):
        broken = dict(good, crypto=dict(good["crypto"], **damage))
        (tmp_path / f"{name}.json").write_text(json.dumps(broken))
    (tmp_path / "flat.json").write_text(json.dumps(dict(good, crypto="nope")))
    for name in ("salt", "text", "flat"):
        result = dso_env(env, "keys", "show", "--keystore", f"{name}.json", "--check", cwd=tmp_path)
        assert result.returncode == 1 and result.stderr.startswith("error: ") and "V3 keystore" in result.stderr
        assert "Traceback" not in result.stderr
    (tmp_path / "afile").write_text("x")
    for env_extra, args, message in (
        ({"DSO_LIBRARY_PATH": "afile/lib.db"}, ("library", "add", "When x is y, do z."), "cannot keep a library"),
        (
            {"DSO_CHAIN_KEYSTORE": "key.json", "DSO_NETWORK_NODE_DIR": "afile"},
            ("node", "status"),
            "cannot keep",
        ),
    ):
        result = dso_env({**env, **env_extra}, *args, cwd=tmp_path)
        assert result.returncode == 1 and result.stderr.startswith("error: ") and message in result.stderr, (
            result.stderr
        )
        assert "Traceback" not in result.stderr


def test_damaged_state_files_are_one_error_line(tmp_path: Path) -> None:
    """A junk cursor in a node's state, and bytes damaged inside a library file after it was made: one
    `error:` line each, never a traceback."""
    import sqlite3

    from dso.errors import NodeError
    from dso.node.state import NodeState

    state = NodeState(tmp_path / "node.db")
    with state.transaction():
        state.set_meta("cursor:accepted", "12abc")
    with pytest.raises(NodeError, match="is damaged: cursor 'accepted'"):
        state.cursor("accepted")
    state.close()
    added = dso("library", "add", "When two units differ, convert both first.", cwd=tmp_path)
    assert added.returncode == 0, added.stderr
    library = tmp_path / "dso-library.db"
    db = sqlite3.connect(library)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    data = bytearray(library.read_bytes())
    for offset in range(4096, len(data), 97):  # every page after the header: the schema stays readable
        data[offset] ^= 0xFF
    library.write_bytes(bytes(data))
    shown = dso("library", "show", cwd=tmp_path)
    assert shown.returncode == 1 and shown.stderr.startswith("error: ") and "Traceback" not in shown.stderr
    assert len(shown.stderr.strip().splitlines()) == 1
