"""config.toml and docs/schema.md are generated from the models: the shipped files must be current."""

from __future__ import annotations

from pathlib import Path

import pytest

from service import docgen


def test_shipped_config_toml_is_what_the_config_models_say() -> None:
    assert docgen.CONFIG_TOML.read_text(encoding="utf-8") == docgen.render_config(), \
        "config.toml is out of date: run `python -m service.docgen`"


def test_shipped_schema_md_tables_are_what_core_schema_says() -> None:
    text = docgen.SCHEMA_MD.read_text(encoding="utf-8")
    assert text == docgen.render_schema(text), "docs/schema.md is out of date: run `python -m service.docgen`"
    assert "| `reachable` | — | boolean |" in text and "| `depth_mm` | mm | float |" in text


def test_every_config_key_appears_with_its_description(tmp_path: Path) -> None:
    text = docgen.render_config()
    assert 'udp_buffer = 50000             # datagrams waiting for the pipeline' in text
    assert "[alerts.outbox]" in text and text.count("[[alerts.inhibit_rules]]") == 3


def test_check_names_a_stale_file_and_regenerating_fixes_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    config, schema = tmp_path / "config.toml", tmp_path / "schema.md"
    config.write_text(docgen.CONFIG_TOML.read_text(encoding="utf-8").replace("port = 1883", "port = 1884"),
                      encoding="utf-8")
    schema.write_text(docgen.SCHEMA_MD.read_text(encoding="utf-8"), encoding="utf-8")
    monkeypatch.setattr(docgen, "CONFIG_TOML", config)
    monkeypatch.setattr(docgen, "SCHEMA_MD", schema)
    monkeypatch.setattr(docgen, "ROOT", tmp_path)
    assert docgen.main(["--check"]) == 1
    assert "config.toml" in capsys.readouterr().out
    assert docgen.main([]) == 0
    assert docgen.main(["--check"]) == 0
    assert "port = 1883" in config.read_text(encoding="utf-8")
