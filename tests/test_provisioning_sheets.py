"""Import sheets as technicians have them: GBK CSV and .xlsx, Chinese headers, Excel's damage, dry runs, templates."""

from __future__ import annotations

import csv
import io
import json
import socket
from pathlib import Path

import pytest
from devicecli import dev, registry
from openpyxl import Workbook, load_workbook
from sqlalchemy import text
from typer.testing import CliRunner

from cli.app import app
from core.database import open_engine
from provisioning.columns import COLUMNS, TEMPLATE_EXAMPLE
from provisioning.excel_repair import CellRefused, repair_cell
from provisioning.validate import check_device

runner = CliRunner()
HEADER_ZH = ["设备编号", "DevEUI", "IMEI", "型号", "纬度", "经度", "地址", "区", "街道", "声环境功能区",
             "安装高度（mm）"]
SCI_IMEI = "8.66123456789018E+14"   # every digit still there: repairable
IMEI = "866123456789018"
WIDE_LAT = "３９.９２１９"             # full-width digits typed with a Chinese input method


def fleet() -> list[list[object]]:
    """30 devices: 25 LoRaWAN (DevEUI) of three kinds, 5 NB-IoT water-level sensors (IMEI)."""
    rows: list[list[object]] = []
    for i in range(30):
        lat, lon = f"{39.90 + i / 1000:.4f}", f"{116.40 + i / 1000:.4f}"
        district = ("朝阳区", "海淀区", "东城区")[i % 3]
        if i >= 25:
            imei = f"86612345678{i:02d}00"
            imei = next(imei[:-1] + str(c) for c in range(10) if _luhn(imei[:-1] + str(c)))
            rows.append([f"NB-{i:02d}", "", imei, "generic-nb-wl", lat, lon, f"建国路 {i} 号", district, "建外街道",
                         "", "2500"])
        elif i % 2:
            rows.append([f"ZS-{i:02d}", f"24E124713C21{i:04X}", "", "milesight-ws302", lat, lon, f"朝阳路 {i} 号",
                         district, "建外街道", "4a", ""])
        else:
            rows.append([f"JS-{i:02d}", f"24-E1-24-71-3C-20-{i:02X}-01", "", "milesight-em500-udl", lat, lon,
                         f"东三环 {i} 号", district, "呼家楼街道", "", "2000"])
    rows[25][2] = SCI_IMEI + " "     # scientific notation with a trailing space
    rows[3][4] = WIDE_LAT
    return rows


def _luhn(digits: str) -> bool:
    from core.keys import luhn_ok
    return luhn_ok(digits)


def gbk_csv(path: Path, rows: list[list[object]]) -> Path:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(HEADER_ZH)
    w.writerows(rows)
    path.write_bytes(buf.getvalue().encode("gbk"))
    return path


def xlsx(path: Path, rows: list[list[object]], *, numeric_imei: bool = True) -> Path:
    book = Workbook()
    ws = book.active
    ws.append(["朝阳区设备台账"])          # a title row above the header, as real sheets have
    ws.append(HEADER_ZH)
    for r in rows:
        cells = list(r)
        if numeric_imei and str(cells[2]).strip():
            cells[2] = float(str(cells[2]).strip())   # Excel's General column: the IMEI is a number
        cells[4], cells[5] = float(str(cells[4]).replace("３９", "39")), float(str(cells[5]))
        ws.append(cells)
    book.save(path)
    return path


def count(where: Path | str) -> int:
    if isinstance(where, Path) and not (where / "r.sqlite").exists():
        return 0
    engine = open_engine(registry(where))
    try:
        with engine.connect() as conn:
            has = conn.dialect.has_table(conn, "devices")
            return int(conn.execute(text("SELECT count(*) FROM devices")).scalar_one()) if has else 0
    finally:
        engine.dispose()


def shown(tmp: Path | str, device_id: str) -> dict:
    r = dev(tmp, "show", device_id, "--json", "--no-live")
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def test_gbk_csv_with_chinese_headers_imports_30_devices_and_reports_the_repairs(tmp_path: Path, database: str) -> None:
    path = gbk_csv(tmp_path / "朝阳设备.csv", fleet())
    r = dev(database, "import", str(path), "--by", "zhang.wei")
    assert r.exit_code == 0, r.output
    assert "read as GB18030" in r.stderr
    assert f"repaired: line 27, IMEI (key): '{SCI_IMEI} ' → '{IMEI}'" in r.stderr
    assert "scientific notation" in r.stderr
    assert ("repaired: line 5, 纬度 (latitude): '３９.９２１９' → '39.9219' (full-width characters made ASCII)"
            in r.stderr)
    assert "30 added, 0 updated, 0 unchanged, 2 cells repaired" in r.stdout
    assert count(database) == 30
    nb = shown(database, "NB-25")
    assert (nb["key"], nb["kind"], nb["district"], nb["install"]) == (IMEI, "water_level", "海淀区",
                                                                      {"mount_height_mm": 2500.0})
    assert shown(database, "ZS-03")["latitude"] == 39.9219
    assert shown(database, "JS-00")["key"] == "24e124713c200001"


def test_xlsx_with_chinese_headers_and_a_numeric_imei_imports_with_the_repairs_reported(tmp_path: Path) -> None:
    rows = fleet()
    rows[25][2] = IMEI
    path = xlsx(tmp_path / "朝阳设备.xlsx", rows)
    r = dev(tmp_path, "import", str(path))
    assert r.exit_code == 0, r.output
    assert "read as xlsx, 30 data rows" in r.stderr
    # Excel kept the five IMEIs as numbers; each is read back whole, with a note
    assert r.stderr.count("the key was stored as a number") == 5
    assert f"IMEI (key): {IMEI!r} → {IMEI!r} (the key was stored as a number)" in r.stderr
    assert count(tmp_path) == 30
    assert shown(tmp_path, "NB-25")["key"] == IMEI


@pytest.mark.parametrize("kind", ["csv", "xlsx"])
def test_a_wrong_model_and_an_out_of_range_latitude_write_nothing_and_are_named_by_row_and_column(
        tmp_path: Path, kind: str) -> None:
    rows = fleet()
    rows[6][3] = "milesight-em500-udI"    # capital I for l
    rows[20][4] = "399.92"
    path = gbk_csv(tmp_path / "bad.csv", rows) if kind == "csv" else xlsx(tmp_path / "bad.xlsx", rows)
    r = dev(tmp_path, "import", str(path))
    assert r.exit_code == 1
    first = 8 if kind == "csv" else 9     # the .xlsx has a title row above its header
    bad = [line for line in r.stderr.splitlines() if line.startswith("invalid:")]
    assert len(bad) == 2, r.stderr
    assert bad[0].startswith(f"invalid: line {first} (JS-06): 型号 (model): ")
    assert "milesight-em500-udl" in bad[0]      # did you mean
    assert bad[1].startswith(f"invalid: line {first + 14} (JS-20): 纬度 (latitude): 399.92 is out of range")
    assert "nothing was written" in r.stderr
    assert count(tmp_path) == 0


def test_an_imei_cut_by_scientific_notation_is_refused_with_the_fix(tmp_path: Path) -> None:
    rows = fleet()
    rows[26][2] = "8.66123E+14"
    r = dev(tmp_path, "import", str(gbk_csv(tmp_path / "cut.csv", rows)))
    assert r.exit_code == 1
    bad = [line for line in r.stderr.splitlines() if line.startswith("invalid:")]
    assert len(bad) == 1 and bad[0].startswith("invalid: line 28 (NB-26): IMEI (key): '8.66123E+14'")
    assert "6 significant digits" in r.stderr and "Text" in r.stderr
    assert count(tmp_path) == 0


def test_excel_artefacts_cell_by_cell() -> None:
    assert repair_cell("key", 66123456789016, key_kind="IMEI") == (
        "066123456789016",
        ["the key was stored as a number", "IMEI lost its leading zero (Excel stored it as a number)"])
    assert repair_cell("key", 112233445566.0, key_kind="DevEUI") == (
        "0000112233445566", ["the key was stored as a number", "DevEUI lost 4 leading zero(s) (Excel stored it as a "
                             "number)"])
    assert repair_cell("key", "24e1247100000301") == ("24e1247100000301", [])  # a DevEUI, not 24·10^1247100000301
    assert repair_cell("key", "1.122334455667788E+15", key_kind="DevEUI")[0] == "1122334455667788"
    with pytest.raises(CellRefused, match="is a DevEUI that Excel turned into scientific notation"):
        repair_cell("key", "2.4E+15", key_kind="DevEUI")
    assert repair_cell("zone_class", "４ａ类")[0] == "4a"
    assert repair_cell("status", "维护") == ("maintenance", ["Chinese status word"])
    assert repair_cell("address", "朝阳路 8 号，北门") == ("朝阳路 8 号，北门", [])  # kept as typed (validation trims)
    assert repair_cell("id", "WL-01\u00a0")[1] == ["invisible spaces removed"]
    with pytest.raises(CellRefused):
        repair_cell("key", 1.2345678901234567e16)


def test_dry_run_lists_added_changed_field_by_field_and_unchanged(tmp_path: Path) -> None:
    rows = fleet()
    path = gbk_csv(tmp_path / "f.csv", rows)
    assert dev(tmp_path, "import", str(path)).exit_code == 0
    rows[0][7] = "丰台区"                 # JS-00 moves district
    rows[1][9] = "2"                      # ZS-01 zone class
    rows.append(["JS-30", "24E124713C21AAAA", "", "milesight-em500-udl", "39.95", "116.45", "", "朝阳区", "", "",
                 "1800"])
    r = dev(tmp_path, "import", str(gbk_csv(tmp_path / "g.csv", rows)), "--dry-run")
    assert r.exit_code == 0, r.output
    out = r.stdout
    assert "+ add JS-30: milesight-em500-udl (water_level), key 24e124713c21aaaa" in out
    assert "~ change JS-00:\n    district: 朝阳区 → 丰台区" in out
    assert "~ change ZS-01:\n    zone_class: 4a → 2" in out
    assert "dry run: 1 to add, 2 to change, 28 unchanged; nothing written" in out
    assert count(tmp_path) == 30


@pytest.mark.parametrize("name,lang", [("t.csv", "zh"), ("t.xlsx", "zh"), ("t.csv", "en")])
def test_template_has_the_headers_and_one_example_row_that_imports(tmp_path: Path, name: str, lang: str) -> None:
    out = tmp_path / name
    r = runner.invoke(app, ["device", "template", str(out), "--lang", lang])
    assert r.exit_code == 0, r.output
    if name.endswith(".xlsx"):
        ws = load_workbook(out).active
        header, example = ([c.value for c in row] for row in ws.iter_rows(max_row=2))
        assert ws.cell(row=2, column=2).number_format == "@"    # key column is Text: IMEIs keep their digits
    else:
        header, example = list(csv.reader(out.read_text(encoding="utf-8-sig").splitlines()))
    assert len(header) == len(COLUMNS) and header[0] == ("设备编号" if lang == "zh" else "id")
    assert example[0] == "WL-CY-001"
    check_device(TEMPLATE_EXAMPLE)
    r = dev(tmp_path, "import", str(out))
    assert r.exit_code == 0, r.output
    assert shown(tmp_path, "WL-CY-001")["district"] == "朝阳区"


def test_a_formula_cell_without_a_stored_value_is_refused_by_row_and_column(tmp_path: Path) -> None:
    rows = fleet()
    rows[4][6] = '=HYPERLINK("http://evil","x")'  # openpyxl, like other tools, stores no value for it
    path = xlsx(tmp_path / "formula.xlsx", rows)
    r = dev(tmp_path, "import", str(path))
    assert r.exit_code == 1
    bad = [line for line in r.stderr.splitlines() if line.startswith("invalid:")]
    assert len(bad) == 1, r.stderr
    assert bad[0].startswith("invalid: line 7 (JS-04): 地址 (address): '=HYPERLINK(")
    assert "a formula without a value: type the text" in bad[0]
    assert count(tmp_path) == 0
    r = dev(tmp_path, "import", str(path), "--skip-invalid")
    assert r.exit_code == 0, r.output
    assert count(tmp_path) == 29 and dev(tmp_path, "show", "JS-04", "--no-live").exit_code != 0


def test_export_and_list_match_a_district_alike_and_say_when_it_matches_nothing(tmp_path: Path) -> None:
    assert dev(tmp_path, "import", str(gbk_csv(tmp_path / "fleet.csv", fleet()))).exit_code == 0
    listed = dev(tmp_path, "list", "--district", "朝阳", "--json")
    assert listed.exit_code == 0, listed.output
    ids = sorted(json.loads(line)["id"] for line in listed.stdout.splitlines())
    assert len(ids) == 10
    exported = dev(tmp_path, "export", "--district", "朝阳")   # the help's own example
    assert exported.exit_code == 0, exported.output
    assert sorted(r["id"] for r in csv.DictReader(io.StringIO(exported.stdout))) == ids
    assert exported.stderr == ""
    for command in ("export", "list"):
        none = dev(tmp_path, command, "--district", "西城")
        assert none.exit_code == 0, none.output
        assert "0 devices matched district '西城' (known districts: 东城区, 朝阳区, 海淀区)" in none.stderr
    exported = dev(tmp_path, "export", "--district", "海淀区", "--kind", "noise")
    assert {r["district"] for r in csv.DictReader(io.StringIO(exported.stdout))} == {"海淀区"}
    with socket.socket() as s:  # a port nobody listens on: simulate says so, after the district note
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[mqtt]\nport = {closed}\n[registry]\npath = "{registry(tmp_path)}"\n', encoding="utf-8")
    sim = runner.invoke(app, ["--config", str(cfg), "simulate", "--scenario", "rainstorm", "--storm-district", "西城"])
    assert sim.exit_code == 1, sim.output
    assert "0 water gauges matched district '西城' (known districts: 东城区, 朝阳区, 海淀区)" in sim.stderr
    assert "error: simulator could not connect to the broker" in sim.stderr
    assert isinstance(sim.exception, SystemExit)  # a clear exit, not a ConnectionError's traceback
