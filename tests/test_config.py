"""Settings: the packaged defaults file, the user's file, environment overrides, validation, CLI check."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from streamer.config import Settings, default_config_path, env_overrides, load_settings, validate
from streamer.errors import ConfigError


def test_defaults_file_documents_exactly_the_model_defaults() -> None:
    from_file = yaml.safe_load(default_config_path().read_text())
    assert from_file == Settings().model_dump()


def test_defaults_file_has_a_comment_for_every_key() -> None:
    lines = default_config_path().read_text().splitlines()
    for number, line in enumerate(lines):
        stripped = line.strip()
        if stripped and not stripped.startswith("#") and ":" in stripped and not stripped.endswith(":"):
            assert lines[number - 1].strip().startswith("#"), f"key without a comment: {line!r}"


def test_user_file_then_environment_override(tmp_path: Path) -> None:
    user = tmp_path / "my.yaml"
    user.write_text("server:\n  http_port: 9000\ntts:\n  engine: espeak\n")
    env = {
        "STREAMER_SERVER__HTTP_PORT": "9100",
        "STREAMER_TTS__PRELOAD_LANGUAGES": "[en, es]",
        "STREAMER_ENGINES__PIPER__VOICES_DIR": "/voices",
        "STREAMER_CONFIG": "ignored-here",
    }
    settings = load_settings(user, environ=env)
    assert settings.server.http_port == 9100
    assert settings.server.websocket_port == 8081
    assert settings.tts.engine == "espeak"
    assert settings.tts.preload_languages == ["en", "es"]
    assert settings.engines.piper.voices_dir == "/voices"


def test_env_overrides_nest_by_double_underscore() -> None:
    assert env_overrides({"STREAMER_LIMITS__SEND_TIMEOUT_S": "2.5", "OTHER": "1"}) == {
        "limits": {"send_timeout_s": 2.5}
    }


def test_invalid_config_lists_every_bad_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "server:\n  http_port: -1\ntts:\n  engine: nope\n  typo_key: 1\naudio:\n  default_format: wma\n"
    )
    with pytest.raises(ConfigError) as info:
        load_settings(bad, environ={})
    locations = {".".join(e["loc"]) for e in info.value.errors}
    assert {"server.http_port", "tts.engine", "tts.typo_key", "audio.default_format"} <= locations


def test_not_yaml_and_missing_file_are_clear_errors(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("server: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(broken, environ={})
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path / "missing.yaml", environ={})


def test_cli_config_check(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("pool:\n  workers: 1\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("pool:\n  workers: many\n")
    ok = subprocess.run(
        [sys.executable, "-m", "streamer", "config", "check", str(good)], capture_output=True, text=True
    )
    assert ok.returncode == 0 and "valid" in ok.stdout
    no = subprocess.run(
        [sys.executable, "-m", "streamer", "config", "check", str(bad)], capture_output=True, text=True
    )
    assert no.returncode == 2
    assert "pool.workers" in no.stderr


def test_the_mask_is_never_a_secret() -> None:
    for security in ({"api_keys": ["real", "********"]}, {"secret_key": "********"}, {"api_keys": [""]}):
        with pytest.raises(ConfigError) as info:
            validate({"security": security})
        assert info.value.errors[0]["loc"][:2] == ["security", next(iter(security))]
