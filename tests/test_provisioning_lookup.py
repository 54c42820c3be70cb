"""Devices found the way technicians name them: the DevEUI on the label, a prefix, part of a district's name."""

from __future__ import annotations

import json
import time
from pathlib import Path

from devicecli import dev
from typer.testing import CliRunner

from cli.app import app
from service.config import load_config
from sim.daemons import Daemon
from storage.deadletter import DeadLetter, DeadLetterStore

runner = CliRunner()


def add(tmp: Path | str, device_id: str, key: str, district: str = "", street: str = "",
        model: str = "milesight-em500-udl") -> None:
    extra = ["--mount-height-mm", "2000"] if model == "milesight-em500-udl" else ["--zone-class", "2"]
    r = dev(tmp, "add", device_id, "--key", key, "--model", model, "--district", district, "--street", street, *extra)
    assert r.exit_code == 0, r.output


def fleet(tmp: Path | str) -> None:
    add(tmp, "WL-CY-001", "24e124713c210001", "朝阳区", "建外街道")
    add(tmp, "WL-CY-002", "24e124713c210002", "朝阳区", "呼家楼街道")
    add(tmp, "WL-HD-001", "24e124713c220001", "海淀区", "中关村街道")
    add(tmp, "ZS-DC-001", "70b3d57ed0001234", "东城区", "建国门街道", model="milesight-ws302")


def shown_id(tmp: Path | str, text: str) -> str:
    r = dev(tmp, "show", text, "--json", "--no-live")
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)["id"]


def test_show_and_history_find_a_device_by_the_deveui_on_its_label_in_any_form_or_a_unique_prefix(
        tmp_path: Path, database: str) -> None:
    fleet(database)
    for text in ("24-E1-24-71-3C-21-00-01", "24E124713C210001", "24:e1:24:71:3c:21:00:01", "wl-cy-001",
                 "WL-CY-001", "WL-H", "70B3D57E"):
        assert shown_id(database, text) in ("WL-CY-001", "WL-HD-001", "ZS-DC-001"), text
    assert shown_id(database, "24-E1-24-71-3C-21-00-01") == "WL-CY-001"
    assert shown_id(database, "WL-H") == "WL-HD-001"
    assert shown_id(database, "70B3D57E") == "ZS-DC-001"
    hist = [json.loads(x) for x in dev(database, "history", "24-E1-24-71-3C-21-00-02", "--json").stdout.splitlines()]
    assert [h["device_id"] for h in hist] == ["WL-CY-002"] and hist[0]["at"].endswith("+08:00")


def test_an_ambiguous_prefix_exits_2_listing_the_candidates_and_an_unknown_one_suggests(
        tmp_path: Path, database: str) -> None:
    fleet(database)
    r = dev(database, "show", "WL-CY", "--no-live")
    assert r.exit_code == 2
    assert "WL-CY-001 (24e124713c210001)" in r.stderr and "WL-CY-002 (24e124713c210002)" in r.stderr
    r = dev(database, "show", "24-E1-24-71-3C-2", "--no-live")
    assert r.exit_code == 2 and "3 devices" in r.stderr
    r = dev(database, "show", "WL-CY-01", "--no-live")
    assert r.exit_code == 1 and "did you mean WL-CY-001" in r.stderr
    # a change never goes to a prefix
    r = dev(database, "update", "WL-HD", "--status", "maintenance")
    assert r.exit_code == 1 and "no device" in r.stderr
    assert dev(database, "update", "24-E1-24-71-3C-22-00-01", "--status", "maintenance").exit_code == 0


def listed(tmp: Path | str, *args: str) -> list[str]:
    r = dev(tmp, "list", *args, "--json")
    assert r.exit_code == 0, r.output
    return [json.loads(line)["id"] for line in r.stdout.splitlines()]


def test_list_filters_by_part_of_a_district_or_street_and_by_key(tmp_path: Path, database: str) -> None:
    fleet(database)
    assert listed(database, "--district", "朝阳") == ["WL-CY-001", "WL-CY-002"]
    assert listed(database, "--district", "朝阳区") == ["WL-CY-001", "WL-CY-002"]
    assert listed(database, "--street", "建") == ["WL-CY-001", "ZS-DC-001"]
    assert listed(database, "--key", "24-E1-24-71-3C-22") == ["WL-HD-001"]
    assert listed(database, "--district", "朝阳", "--kind", "noise") == []


def test_list_refuses_an_unknown_kind_or_status_with_exit_2_and_the_accepted_values(tmp_path: Path) -> None:
    fleet(tmp_path)
    r = dev(tmp_path, "list", "--kind", "water")
    assert r.exit_code == 2
    for kind in ("water_level", "bin_fill", "noise", "dust", "parking"):
        assert kind in r.stderr
    r = dev(tmp_path, "list", "--status", "retird")
    assert r.exit_code == 2 and "active, maintenance, retired" in r.stderr and "did you mean 'retired'" in r.stderr


def test_show_gives_the_last_refusal_of_a_device_that_sends_but_is_not_stored(
        tmp_path: Path, influxd: Daemon, influx_db: str, database: str) -> None:
    """With [database] url set, the registry and the dead letters are read from PostgreSQL."""
    cfg = tmp_path / "config.toml"
    shared = f'[database]\nurl = "{database}"\n' if "://" in database else ""
    cfg.write_text(f'{shared}[registry]\npath = "{tmp_path / "r.sqlite"}"\n'
                   f'[influxdb]\nurl = "{influxd.url}"\ndatabase = "{influx_db}"\n'
                   f'[pipeline]\ndead_letter_path = "{tmp_path / "dl.sqlite"}"\n'
                   '[alerts]\ntimezone = "Asia/Shanghai"\n', encoding="utf-8")
    fleet(database if shared else tmp_path)
    sent = time.time_ns() - 90 * 10**9
    with DeadLetterStore(load_config(cfg).dead_letter_database()) as store:
        store.add(DeadLetter(sent - 600 * 10**9, "lorawan", "t", b"\x01", "bad_json", "older", "24e124713c210001"))
        store.add(DeadLetter(sent, "lorawan", "application/1/device/24e124713c210001/event/up", b"\x03\x82",
                             "decode_error", "milesight-em500-udl: channel 0x03 type 0x82 truncated at byte 2",
                             "24e124713c210001"))
    r = runner.invoke(app, ["--config", str(cfg), "device", "show", "24-E1-24-71-3C-21-00-01", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["live"]["last_seen_ns"] is None
    refusal = doc["last_refusal"]
    assert refusal["reason"] == "decode_error" and "truncated at byte 2" in refusal["detail"]
    assert refusal["time"].endswith("+08:00")
    out = runner.invoke(app, ["--config", str(cfg), "device", "show", "WL-CY-001"]).stdout
    text = " ".join(out.replace("│", " ").split())
    assert "last seen never" in text
    assert "last refusal" in text and "decode_error" in text and "Asia/Shanghai" in text
    assert "truncated at byte 2" in text and "nothing stored since" in text
    # a device with no refusal shows none
    assert json.loads(runner.invoke(app, ["--config", str(cfg), "device", "show", "WL-HD-001", "--json"])
                      .stdout)["last_refusal"] is None
