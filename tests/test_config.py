from pathlib import Path

import pytest

from dso.config import load_config
from dso.errors import ConfigError


def test_defaults_are_the_embedded_offline_stack() -> None:
    config = load_config(environ={})
    assert config.llm.backend == "llamacpp"
    assert config.embedder.backend == "onnx"
    assert config.library.dedup_threshold == 0.9
    assert config.library.word_cap == 32


def test_layers_override_in_order_toml_env_flags(tmp_path: Path) -> None:
    toml = tmp_path / "dso.toml"
    toml.write_text('[llm]\nmodel = "qwen2.5-0.5b"\nthreads = 1\n[library]\nword_cap = 20\n')
    env = {"DSO_LLM_THREADS": "3", "DSO_HOME": str(tmp_path / "home")}
    config = load_config(toml, {"library.word_cap": 25}, environ=env)
    assert config.llm.model == "qwen2.5-0.5b"  # from TOML
    assert config.llm.threads == 3  # env beats TOML
    assert config.library.word_cap == 25  # flag beats TOML
    assert config.home == tmp_path / "home"
    assert config.models_dir == tmp_path / "home" / "models"


def test_none_flags_do_not_override(tmp_path: Path) -> None:
    config = load_config(None, {"llm.model": None}, environ={"DSO_LLM_MODEL": "x.gguf"})
    assert config.llm.model == "x.gguf"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[llm]\nmodle = 'x'\n", "unknown config key 'llm.modle'"),
        ("[nope]\nx = 1\n", "unknown config key 'nope.x'"),
        ("[llm]\nthreads = 'many'\n", "cannot use 'many'"),
        ("[llm]\nthreads = 2.5\n", "cannot use 2.5"),
        ("[llm\n", "not valid TOML"),
    ],
)
def test_bad_config_is_a_one_line_error(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")) as info:
        load_config(path, environ={})
    assert "\n" not in str(info.value)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "absent.toml", environ={})


def test_bool_and_float_coercion_from_env() -> None:
    config = load_config(environ={"DSO_LIBRARY_DEDUP_THRESHOLD": "0.85", "DSO_LLM_TIMEOUT_S": "5"})
    assert config.library.dedup_threshold == pytest.approx(0.85)
    assert config.llm.timeout_s == 5.0
