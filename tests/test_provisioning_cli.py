"""`urbansense device add|update|move|calibrate|retire|history` and `urbansense decode`, as a technician uses them."""

from __future__ import annotations

import base64
import getpass
import json
from pathlib import Path

import pytest
from devicecli import dev
from typer.testing import CliRunner

from cli.app import app

runner = CliRunner()

WATER = ["--model", "milesight-em500-udl", "--mount-height-mm", "2000"]


@pytest.mark.parametrize(("args", "field", "form"), [
    (["--deveui", "24e124713c21000", *WATER], "key", "16 hex digits"),
    (["--deveui", "24e124713c21000g", *WATER], "key", "16 hex digits"),
    (["--imei", "49015420323751", "--model", "milesight-ws302", "--zone-class", "2"], "key", "15 digits"),
    (["--imei", "490154203237519", "--model", "milesight-ws302", "--zone-class", "2"], "key", "check digit"),
    (["--deveui", "24e124713c210002", "--model", "no-such-model"], "model", "urbansense models"),
    ([*["--deveui", "24e124713c210002"], *WATER, "--lat", "91", "--lon", "116"], "latitude", "-90 to 90"),
    ([*["--deveui", "24e124713c210002"], *WATER, "--lat", "39", "--lon", "-181"], "longitude", "-180 to 180"),
    ([*["--deveui", "24e124713c210002"], *WATER, "--lat", "39.9"], "longitude", "give both"),
    (["--deveui", "24e124713c210002", "--model", "milesight-em500-udl"], "mount_height_mm", "millimetres"),
    (["--deveui", "24e124713c210002", "--model", "milesight-em500-udl", "--mount-height-mm", "50000"],
     "mount_height_mm", "300 to 10000 mm"),
    (["--deveui", "24e124713c210002", "--model", "milesight-em500-udl", "--mount-height-mm", "240",
      "--dead-zone-mm", "250"], "mount_height_mm", "300 to 10000"),
    (["--deveui", "24e124713c210002", "--model", "milesight-em310-udl"], "bin_depth_mm", "millimetres"),
    (["--deveui", "24e124713c210002", "--model", "milesight-em310-udl", "--bin-depth-mm", "9000"],
     "bin_depth_mm", "200 to 5000 mm"),
    (["--deveui", "24e124713c210002", "--model", "milesight-ws302"], "zone_class", "0, 1, 2, 3, 4a, 4b"),
    (["--deveui", "24e124713c210002", "--model", "milesight-ws302", "--zone-class", "5"], "zone_class",
     "0, 1, 2, 3, 4a, 4b"),
    (["--deveui", "24e124713c210002", "--model", "milesight-ws302", "--zone-class", "2", "--mount-height-mm",
      "2000"], "mount_height_mm", "not used by noise"),
    (["--deveui", "24e124713c210002", *WATER, "--interval-s", "0"], "expected_interval_s", "whole seconds"),
])
def test_add_refuses_each_bad_input_naming_the_field_and_form(tmp_path: Path, args: list[str], field: str,
                                                              form: str) -> None:
    r = dev(tmp_path, "add", "X-1", *args)
    assert r.exit_code == 2, r.output
    assert f"error: {field}:" in r.stderr
    assert form in r.stderr
    assert dev(tmp_path, "list", "--json").output == ""


def test_bad_id_is_refused(tmp_path: Path) -> None:
    r = dev(tmp_path, "add", "has space", "--deveui", "24e124713c210002", *WATER)
    assert r.exit_code == 2 and "error: id:" in r.stderr


@pytest.mark.parametrize("form", ["24-E1-24-71-3C-21-00-01", "24E124713C210001", "24:e1:24:71:3c:21:00:01"])
def test_deveui_forms_are_accepted_and_normalised(tmp_path: Path, form: str) -> None:
    assert dev(tmp_path, "add", "WL-1", "--deveui", form, *WATER).exit_code == 0
    assert json.loads(dev(tmp_path, "show", "WL-1", "--json", "--no-live").output)["key"] == "24e124713c210001"


def test_duplicate_deveui_and_imei_are_refused_with_the_holder(tmp_path: Path, database: str) -> None:
    assert dev(database, "add", "WL-1", "--deveui", "24e124713c210001", *WATER).exit_code == 0
    r = dev(database, "add", "WL-2", "--deveui", "24-E1-24-71-3C-21-00-01", *WATER)
    assert r.exit_code == 2 and "already registered to device 'WL-1'" in r.stderr
    assert dev(database, "add", "N-1", "--imei", "490154203237518", "--model", "milesight-ws302",
               "--zone-class", "4a").exit_code == 0
    r = dev(database, "add", "N-2", "--imei", "49015420-3237518", "--model", "milesight-ws302", "--zone-class", "1")
    assert r.exit_code == 2 and "already registered to device 'N-1'" in r.stderr
    r = dev(database, "add", "N-1", "--imei", "356938035643809", "--model", "milesight-ws302", "--zone-class", "1")
    assert r.exit_code == 2 and "id 'N-1' is already registered" in r.stderr


def test_city_bounding_box_from_config(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text("[provisioning]\nbbox = [115.4, 39.4, 117.5, 41.1]\n")
    r = dev(tmp_path, "add", "WL-1", "--deveui", "24e124713c210001", *WATER, "--lat", "31.23", "--lon", "121.47",
            config=cfg)
    assert r.exit_code == 2 and "error: latitude/longitude:" in r.stderr and "bounding box" in r.stderr
    r = dev(tmp_path, "add", "WL-1", "--deveui", "24e124713c210001", *WATER, "--lat", "39.9", "--lon", "116.4",
            config=cfg)
    assert r.exit_code == 0, r.output


def test_changes_are_validated_and_audited_with_who_and_what(tmp_path: Path, database: str) -> None:
    assert dev(database, "add", "WL-1", "--deveui", "24e124713c210001", *WATER, "--lat", "39.9", "--lon", "116.4",
               "--by", "li.na").exit_code == 0
    r = dev(database, "update", "WL-1", "--mount-height-mm", "5")
    assert r.exit_code == 2 and "error: mount_height_mm:" in r.stderr
    assert dev(database, "update", "WL-1", "--district", "朝阳", "--status", "maintenance", "--by", "zhang.wei"
               ).exit_code == 0
    r = dev(database, "move", "WL-1", "--lat", "39.93", "--lon", "116.45", "--address", "东三环中路 12 号",
            "--at", "2024-06-01T14:30:00+08:00", "--by", "zhang.wei")
    assert r.exit_code == 0, r.output
    r = dev(database, "calibrate", "WL-1", "--empty-distance-mm", "2150")
    assert r.exit_code == 0 and "2150" in r.output
    r = dev(database, "retire", "WL-1", "--reason", "road works")
    assert r.exit_code == 0
    row = json.loads(dev(database, "show", "WL-1", "--json", "--no-live").output)
    assert row["status"] == "retired" and row["install"] == {"mount_height_mm": 2150.0}
    assert (row["latitude"], row["longitude"], row["address"]) == (39.93, 116.45, "东三环中路 12 号")

    hist = [json.loads(x) for x in dev(database, "history", "WL-1", "--json").output.splitlines()]
    assert [h["action"] for h in hist] == ["add", "update", "move", "calibrate", "retire"]
    assert hist[0]["by"] == hist[1]["by"] == getpass.getuser(), "the OS user is recorded, not --by"
    assert hist[0]["note"] == "li.na" and hist[1]["note"] == "zhang.wei"
    assert hist[1]["changes"] == {"district": ["", "朝阳"], "status": ["active", "maintenance"]}
    assert hist[2]["changes"]["moved_at"] == "2024-06-01T06:30:00Z"
    assert hist[2]["changes"]["latitude"] == [39.9, 39.93]
    assert hist[3]["changes"]["install"] == [{"mount_height_mm": 2000.0}, {"mount_height_mm": 2150.0}]
    assert hist[4]["changes"] == {"reason": "road works", "status": ["maintenance", "retired"]}
    assert all(h["by"] for h in hist)
    table = dev(database, "history", "WL-1").output
    assert "moved_at" in table and "zhang.wei" in table


def test_calibrate_refuses_kinds_without_a_distance(tmp_path: Path) -> None:
    assert dev(tmp_path, "add", "N-1", "--deveui", "24e124713c210009", "--model", "milesight-ws302",
               "--zone-class", "2").exit_code == 0
    r = dev(tmp_path, "calibrate", "N-1", "--empty-distance-mm", "2000")
    assert r.exit_code == 2 and "no distance to calibrate" in r.stderr


def test_every_device_command_has_help_with_an_example() -> None:
    for command in ("add", "import", "export", "list", "show", "update", "calibrate", "watch", "retire", "move",
                    "history"):
        r = runner.invoke(app, ["device", command, "--help"])
        assert r.exit_code == 0 and "Example: urbansense device " + command in " ".join(r.output.split()), command


def test_decode_accepts_hex_and_base64_alike() -> None:
    payload = bytes.fromhex("0175640382e803")
    a = runner.invoke(app, ["decode", "--model", "milesight-em310-udl", "--json", payload.hex()])
    b = runner.invoke(app, ["decode", "--model", "milesight-em310-udl", "--json", "--base64",
                            base64.b64encode(payload).decode()])
    assert a.exit_code == 0 and b.exit_code == 0, a.output + b.output
    assert json.loads(a.output)["fields"] == json.loads(b.output)["fields"]
    assert json.loads(b.output)["fields"]["distance_mm"] == 1000
