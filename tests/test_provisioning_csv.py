"""`urbansense device import|export`: all-or-nothing bulk provisioning, Excel's BOM, round trips; the tests that
store devices run on a SQLite registry and on PostgreSQL (`database`)."""

from __future__ import annotations

import csv
import getpass
import io
import json
from pathlib import Path

from devicecli import dev, registry
from sqlalchemy import text

from core.database import open_engine
from provisioning.csvio import HEADER

DISTRICTS = ("朝阳区", "海淀区", "东城区", "丰台区")
KINDS = (  # model, extra columns
    ("milesight-em500-udl", {"mount_height_mm": "2000"}),
    ("milesight-em310-udl", {"bin_depth_mm": "1200"}),
    ("milesight-ws302", {"zone_class": "4a"}),
    ("milesight-am319", {}),
    ("nwave-nps310", {}),
)


def row(i: int) -> dict[str, str]:
    model, extra = KINDS[i % len(KINDS)]
    return {"id": f"D-{i:05d}", "key": f"{0x70B3D57ED0000000 + i:016X}", "model": model,
            "latitude": f"{39.8 + i * 1e-5:.5f}", "longitude": f"{116.3 + i * 1e-5:.5f}",
            "address": f"建国路 {i} 号, 近地铁站", "district": DISTRICTS[i % 4], "street": "建外街道", **extra}


def write(path: Path, rows: list[dict[str, str]], *, bom: bool = False) -> Path:
    with path.open("w", encoding="utf-8-sig" if bom else "utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=HEADER)
        w.writeheader()
        w.writerows(rows)
    return path


def count(where: Path | str, table: str) -> int:
    engine = open_engine(registry(where))
    try:
        with engine.connect() as conn:
            return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())
    finally:
        engine.dispose()


def test_5000_rows_with_3_bad_import_nothing_then_4997_with_skip_invalid_then_reimport_is_a_no_op(
        tmp_path: Path, database: str) -> None:
    rows = [row(i) for i in range(5000)]
    rows[99]["key"] = "70B3D57ED00000ZZ"           # line 101
    rows[2500]["model"] = "acme-9000"              # line 2502
    rows[4998]["latitude"] = "139.9"               # line 5000
    path = write(tmp_path / "fleet.csv", rows)

    r = dev(database, "import", str(path))
    assert r.exit_code == 1
    bad_lines = [line for line in r.stderr.splitlines() if line.startswith("invalid: line ")]
    assert [int(line.split()[2]) for line in bad_lines] == [101, 2502, 5000]
    assert "key:" in bad_lines[0] and "model:" in bad_lines[1] and "latitude:" in bad_lines[2]
    assert "nothing was written" in r.stderr
    assert count(database, "devices") == 0 and count(database, "audit") == 0

    r = dev(database, "import", str(path), "--skip-invalid", "--by", "import-bot")
    assert r.exit_code == 0, r.output
    assert "4997 added, 0 updated, 0 unchanged, 3 invalid rows skipped" in r.stdout
    assert count(database, "devices") == 4997
    assert count(database, "audit") == 4997

    r = dev(database, "import", str(path), "--skip-invalid")
    assert "0 added, 0 updated, 4997 unchanged" in r.stdout
    assert count(database, "devices") == 4997 and count(database, "audit") == 4997

    one = json.loads(dev(database, "show", "D-00002", "--json", "--no-live").output)
    assert one["key"] == "70b3d57ed0000002" and one["kind"] == "noise" and one["district"] == "东城区"
    assert one["address"] == "建国路 2 号, 近地铁站"
    hist = json.loads(dev(database, "history", "D-00002", "--json").output)
    assert hist["by"] == getpass.getuser() and hist["note"] == "import-bot" and hist["action"] == "import:add"


def test_export_then_import_round_trips(tmp_path: Path, database: str) -> None:
    rows = [row(i) for i in range(40)]
    rows[5].update(dead_zone_mm="300", expected_interval_s="600", status="maintenance", site="工地 A")
    write(tmp_path / "in.csv", rows)
    assert dev(database, "import", str(tmp_path / "in.csv")).exit_code == 0
    before = dev(database, "list", "--json").output
    assert dev(database, "export", "-o", str(tmp_path / "out.csv"), "--excel").exit_code == 0

    other = tmp_path / "other"
    other.mkdir()
    assert dev(other, "import", str(tmp_path / "out.csv")).exit_code == 0
    assert dev(other, "list", "--json").output == before
    assert dev(other, "export").output == dev(database, "export").output
    r = dev(database, "import", str(tmp_path / "out.csv"))
    assert "0 added, 0 updated, 40 unchanged" in r.stdout


def test_excel_csv_with_bom_and_chinese_text_imports(tmp_path: Path, database: str) -> None:
    text = ("id,key,model,district,address,zone_class\r\n"
            "噪声-001,24-E1-24-71-3C-21-00-01,milesight-ws302,朝阳区,\"朝阳路 88 号, 北门\",4a\r\n")
    (tmp_path / "excel.csv").write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    r = dev(database, "import", str(tmp_path / "excel.csv"))
    assert r.exit_code == 0, r.output
    got = json.loads(dev(database, "show", "噪声-001", "--json", "--no-live").output)
    assert (got["district"], got["address"], got["key"]) == ("朝阳区", "朝阳路 88 号, 北门", "24e124713c210001")


def test_a_file_in_no_known_encoding_is_refused_with_how_to_save_it(tmp_path: Path) -> None:
    (tmp_path / "bin.csv").write_bytes(b"id,key,model\n\xff\xfe\x00\x81\xff\x00,\x80\x80\x80\n")
    r = dev(tmp_path, "import", str(tmp_path / "bin.csv"))
    assert r.exit_code == 2 and "neither UTF-8 nor GBK" in r.stderr and "CSV UTF-8" in r.stderr


def test_header_and_in_file_duplicates_are_reported(tmp_path: Path) -> None:
    (tmp_path / "h.csv").write_text("id,serial,model\nA,24e124713c210001,milesight-ws302\n")
    r = dev(tmp_path, "import", str(tmp_path / "h.csv"))
    assert r.exit_code == 2 and "unknown column(s) 'serial'" in r.stderr and "missing column(s) key" in r.stderr

    rows = [row(0), row(1), {**row(2), "id": "D-00000"}, {**row(3), "key": row(1)["key"]}]
    write(tmp_path / "d.csv", rows)
    r = dev(tmp_path, "import", str(tmp_path / "d.csv"))
    assert r.exit_code == 1
    assert "line 4 (D-00000): id: 'D-00000' is already on line 2" in r.stderr
    assert "line 5 (D-00003): key: 70b3d57ed0000001 is already on line 3" in r.stderr


def test_a_key_held_by_another_registered_device_is_refused_by_name(tmp_path: Path, database: str) -> None:
    assert dev(database, "add", "OLD-1", "--deveui", row(0)["key"], "--model", "milesight-em500-udl",
               "--mount-height-mm", "2000").exit_code == 0
    write(tmp_path / "f.csv", [row(0), row(1)])
    r = dev(database, "import", str(tmp_path / "f.csv"))
    assert r.exit_code == 1 and "line 2 (D-00000): key: 70b3d57ed0000000 is already registered to device 'OLD-1'" \
        in r.stderr
    assert count(database, "devices") == 1


def test_a_changed_row_updates_the_device_and_audits_the_difference(tmp_path: Path, database: str) -> None:
    write(tmp_path / "a.csv", [row(0), row(1)])
    dev(database, "import", str(tmp_path / "a.csv"))
    changed = row(0)
    changed["mount_height_mm"] = "2500"
    write(tmp_path / "b.csv", [changed, row(1)])
    r = dev(database, "import", str(tmp_path / "b.csv"), "--by", "li.na")
    assert "0 added, 1 updated, 1 unchanged" in r.stdout
    last = dev(database, "history", "D-00000", "--json").output.splitlines()[-1]
    assert json.loads(last)["changes"] == {"install": [{"mount_height_mm": 2000.0}, {"mount_height_mm": 2500.0}]}


def test_export_writes_the_documented_header(tmp_path: Path) -> None:
    out = dev(tmp_path, "export").output
    assert next(csv.reader(io.StringIO(out))) == list(HEADER)
    readme = (Path(__file__).resolve().parent.parent / "provisioning" / "README.md").read_text(encoding="utf-8")
    assert ",".join(HEADER) in readme


def test_a_sheet_without_some_columns_leaves_those_fields_of_existing_devices_as_they_are(
        tmp_path: Path, database: str) -> None:
    """A bulk "change the district" sheet must not erase the fleet's map positions: a missing column
    keeps the registered value, an empty cell in a present column clears it."""
    assert dev(database, "import", str(write(tmp_path / "full.csv", [row(0), row(5)]))).exit_code == 0
    partial = tmp_path / "partial.csv"
    partial.write_text("id,key,model,district,street\n"
                       f"D-00000,{row(0)['key']},milesight-em500-udl,海淀区,\n"
                       f"D-00005,{row(5)['key']},milesight-em500-udl,丰台区,新街道\n", encoding="utf-8")
    dry = dev(database, "import", str(partial), "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "latitude" not in dry.output and "address" not in dry.output, dry.output
    result = dev(database, "import", str(partial))
    assert result.exit_code == 0, result.output
    shown = {d["id"]: d for d in map(json.loads, dev(database, "list", "--json").output.splitlines())}
    first, second = shown["D-00000"], shown["D-00005"]
    assert (first["district"], first["street"]) == ("海淀区", "")          # present column, empty cell: cleared
    assert (second["district"], second["street"]) == ("丰台区", "新街道")
    for device, i in ((first, 0), (second, 5)):                          # missing columns: kept
        assert device["latitude"] == float(row(i)["latitude"]) and device["address"] == row(i)["address"]
        assert device["install"]["mount_height_mm"] == 2000.0
