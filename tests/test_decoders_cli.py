"""`urbansense decode` and `urbansense models`, run through typer's CliRunner on a local app."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from cli.decoders import register


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


def run(app: typer.Typer, *args: str):
    return CliRunner().invoke(app, list(args))


def test_decode_prints_canonical_fields(app: typer.Typer) -> None:
    result = run(app, "decode", "--model", "milesight-em500-udl", "01755c03821e00")
    assert result.exit_code == 0
    assert "distance_mm" in result.output and "30.0" in result.output and "battery_pct" in result.output


def test_decode_json_with_port_and_warnings(app: typer.Typer) -> None:
    result = run(app, "decode", "-m", "decentlab-dl-pr26", "--port", "1", "--json", "02016700033e8060170c7f")
    assert result.exit_code == 0
    out = json.loads(result.output)
    assert out["fields"]["temperature_c"] == 25.671875 and out["port"] == 1
    assert "below zero" in out["warnings"][0]


def test_decode_base64(app: typer.Typer) -> None:
    result = run(app, "decode", "-m", "milesight-em500-udl", "--base64", "--json", "AXVaA4IeAA==")
    assert json.loads(result.output)["fields"] == {"battery_pct": 90.0, "distance_mm": 30.0}


def test_bad_payload_prints_the_decode_error_and_exits_1(app: typer.Typer) -> None:
    result = run(app, "decode", "-m", "milesight-em500-udl", "0175")
    assert result.exit_code == 1
    assert "truncated frame" in result.output


def test_payload_that_is_not_hex_exits_1(app: typer.Typer) -> None:
    result = run(app, "decode", "-m", "milesight-em500-udl", "xyz")
    assert result.exit_code == 1
    assert "not valid hex" in result.output


def test_unknown_model_exits_2_with_close_matches(app: typer.Typer) -> None:
    result = run(app, "decode", "-m", "dragino-ldds57", "00")
    assert result.exit_code == 2
    assert "did you mean" in result.output and "dragino-ldds75" in result.output


def test_models_lists_every_model_with_kind_source_and_fields(app: typer.Typer) -> None:
    from decoders import all_models

    result = run(app, "models", "--json")
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert [r["model"] for r in rows] == [m.model for m in all_models()]
    ncc = next(r for r in rows if r["model"] == "nwave-ncc405")
    assert (ncc["kind"], ncc["source"], ncc["fields"]) == ("parking", "js", ["vehicle_count", "battery_v"])
    table = run(app, "models")
    assert table.exit_code == 0 and "milesight-ws302" in table.output and "native" in table.output
