"""Hostile settings: every numeric setting has a range, every choice its values, checked at load."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dso.config import CHOICES, RANGES, DSOConfig, load_config
from dso.errors import ConfigError

FIELDS = {
    f"{section}.{field.name}"
    for section in ("llm", "embedder", "library", "chain", "train", "prompts", "consensus")
    for field in dataclasses.fields(getattr(DSOConfig(), section))
}


def test_every_numeric_setting_has_a_range() -> None:
    config = DSOConfig()
    numeric = {
        key
        for key in FIELDS
        if isinstance(getattr(getattr(config, key.split(".")[0]), key.split(".")[1]), (int, float))
        and not isinstance(getattr(getattr(config, key.split(".")[0]), key.split(".")[1]), bool)
    }
    assert numeric <= set(RANGES), sorted(numeric - set(RANGES))
    load_config(environ={})  # the defaults themselves pass


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("library.dedup_threshold", "-1"),  # would merge every new lesson into the first
        ("library.word_cap", "-5"),  # would refuse everything
        ("library.dedup_threshold", "nan"),
        ("train.rollout_temperature", "inf"),
        ("chain.voting_window", str(2**64 - 2)),  # deploys a registry whose every submission reverts
        ("train.max_tokens", "9" * 5000),  # a huge integer
        ("llm.backend", "gpt"),
        ("train.verifier", "oracle"),
    ],
)
def test_out_of_range_values_are_one_line_errors(key: str, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(environ={"DSO_" + key.replace(".", "_").upper(): value})
    assert key in str(info.value) and "\n" not in str(info.value)


def test_a_list_for_a_string_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "dso.toml"
    path.write_text('[llm]\nmodel = ["a", "b"]\n')
    with pytest.raises(ConfigError, match="expected a single value"):
        load_config(path, environ={})
    path.write_text("[train]\nseed = [[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]\n")
    with pytest.raises(ConfigError):
        load_config(path, environ={})


SCALARS = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.booleans(),
)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(sorted(FIELDS)), SCALARS)
def test_any_value_loads_in_range_or_is_refused(key: str, value: object) -> None:
    try:
        config = load_config(overrides={key: value}, environ={})
    except ConfigError as exc:
        assert "\n" not in str(exc)
        return
    section, field = key.split(".")
    loaded = getattr(getattr(config, section), field)
    if key in RANGES:
        assert RANGES[key][0] <= loaded <= RANGES[key][1]
    if key in CHOICES:
        assert loaded in CHOICES[key]


@pytest.mark.parametrize(
    "content", [b"a = " + b"[" * 200_000, b"\xff\xfe", b"[llm\nmodel = 1", b"x" * (2 * 1024 * 1024)]
)
def test_junk_config_files_are_one_line_errors(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "dso.toml"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert "\n" not in str(info.value).strip()
