"""The config loader: what an operator sees when config.toml is wrong, and that the shipped file is true."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from service.config import Config, ConfigError, load_config, parse_config

ROOT = Path(__file__).resolve().parent.parent


def test_unknown_key_is_rejected_naming_it(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_text("[mqtt]\nhots = 'broker'\n")
    with pytest.raises(ConfigError) as err:
        load_config(p)
    assert "mqtt.hots" in str(err.value)
    assert "unknown key" in str(err.value)
    assert str(p) in str(err.value)


def test_unknown_section_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"influx: unknown key"):
        parse_config({"influx": {"url": "x"}})


def test_wrong_type_names_key_and_expected_type() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({"mqtt": {"port": "1883"}})
    assert "mqtt.port" in str(err.value)
    assert "expected an integer" in str(err.value)


def test_out_of_range_and_non_loopback_metrics_refused() -> None:
    with pytest.raises(ConfigError, match=r"mqtt\.port"):
        parse_config({"mqtt": {"port": 70000}})
    with pytest.raises(ConfigError, match=r"metrics\.host"):
        parse_config({"metrics": {"host": "0.0.0.0"}})


def test_every_problem_is_listed_at_once() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({"mqtt": {"port": "x", "bogus": 1}, "influxdb": {"batch_size": 1.5}})
    text = str(err.value)
    assert "mqtt.port" in text and "mqtt.bogus" in text and "influxdb.batch_size" in text


def test_bad_toml_and_missing_file(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_text("[mqtt\nport=1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(p)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.toml")


def test_secrets_come_from_environment() -> None:
    cfg = parse_config({"influxdb": {"token": "in-file"}},
                       environ={"URBANSENSE_INFLUXDB_TOKEN": "from-env", "URBANSENSE_MQTT_PASSWORD": "pw"})
    assert cfg.influxdb.token.get_secret_value() == "from-env"
    assert cfg.mqtt.password.get_secret_value() == "pw"


def test_config_path_from_environment(tmp_path: Path) -> None:
    p = tmp_path / "other.toml"
    p.write_text("[mqtt]\nport = 11883\n")
    cfg = load_config(environ={"URBANSENSE_CONFIG": str(p)})
    assert cfg.mqtt.port == 11883
    assert cfg.path("var/x.sqlite") == tmp_path / "var/x.sqlite"


def test_shipped_config_loads_and_states_the_defaults() -> None:
    """config.toml documents the defaults: loading it equals loading nothing."""
    shipped = load_config(ROOT / "config.toml", environ={})
    defaults = parse_config({}, base_dir=ROOT, environ={})
    assert shipped.model_dump(exclude={"base_dir"}) == defaults.model_dump(exclude={"base_dir"})


def test_every_key_in_shipped_config_has_a_comment_and_every_setting_is_shown() -> None:
    text = (ROOT / "config.toml").read_text(encoding="utf-8")
    for line in text.splitlines():
        if re.match(r"^\s*[A-Za-z_]+\s*=", line):
            assert "#" in line.split("=", 1)[1], f"key without a comment: {line}"
    data = tomllib.loads(text)
    for name, section in Config.model_fields.items():
        if name == "base_dir":
            continue
        model = section.annotation
        assert name in data, f"section [{name}] missing from config.toml"
        assert set(data[name]) == set(model.model_fields), f"[{name}] keys differ from the model"
