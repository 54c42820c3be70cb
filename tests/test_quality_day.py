"""A simulated day with planted faults, through the real pipeline, rules, influxd, report and dashboard.

The day (2026-11-20, Asia/Shanghai) is compressed in event time: every device's uplinks are real
codec payloads with past timestamps, pushed through `Pipeline.process_chunk` (decode, derive, the
quality judge) and the rules (`RuleSet` with the shipped presets), and written to a real influxd.
Planted: a depth spike, a stuck noise sensor, an out-of-range bin, a depth above the mount height
and a dust sensor silent for 3 hours.
"""

from __future__ import annotations

import asyncio
import csv
import math
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import openpyxl
import pytest
from conftest import influx_query
from typer.testing import CliRunner

from alerts.points import transition_point
from cli.app import app
from core.device import Device
from core.transition import AlertState, AlertTransition
from core.uplink import Incoming, Uplink
from decoders import get_model
from decoders.quality import Judge
from grafana.dashboards import build_dashboards
from grafana.device_info import device_info_lines
from grafana.influxql import Expansion, expand
from provisioning.registry import Registry
from provisioning.view import RegistryView
from report.figures import ALL, Figures, clip_to_now
from report.gather import gather
from rules.gate import RuleSet
from rules.loader import load_rules
from service.metrics import Metrics
from service.pipeline import Pipeline
from storage.influx import InfluxClient
from storage.lineprotocol import encode_points, join_lines

TZ = ZoneInfo("Asia/Shanghai")
DAY0 = int(datetime(2026, 11, 20, tzinfo=TZ).timestamp()) * 10**9
DAY_S, STEP_S = 86_400, 300
STEPS = DAY_S // STEP_S  # 288 expected reports per device
NS = 10**9
H = 3600 * NS

DEVICES = [
    Device("wl-spike", "a840410000000001", "dragino-ldds75", "water_level", district="朝阳区",
           install={"mount_height_mm": 3000.0}),
    Device("wl-flood", "a840410000000002", "dragino-ldds75", "water_level", district="朝阳区",
           install={"mount_height_mm": 3000.0}),
    Device("wl-mount", "a840410000000003", "decentlab-dl-pr26", "water_level", district="海淀区",
           install={"mount_height_mm": 500.0}),
    Device("nz-stuck", "a840410000000004", "milesight-ws302", "noise", district="朝阳区", zone_class="2"),
    Device("nz-ok", "a840410000000005", "milesight-ws302", "noise", district="海淀区", zone_class="2"),
    Device("bin-oor", "a840410000000006", "milesight-em310-udl", "bin_fill", district="海淀区",
           install={"bin_depth_mm": 1200.0}),
    Device("dust-silent", "a840410000000007", "decentlab-dl-pm", "dust", district="朝阳区"),
    Device("dust-ok", "a840410000000008", "decentlab-dl-pm", "dust", district="海淀区"),
    Device("park-1", "a840410000000009", "bosch-tps110", "parking", district="朝阳区", expected_interval_s=600),
]

SPIKE_AT = 10 * 12           # 10:00: the ultrasonic gauge echoes off a leaf (depth 20 → 2,400 mm → 20)
STUCK = range(8 * 12, 14 * 12)  # 08:00–14:00 the noise sensor repeats 63.2 dB(A)
OOR = range(12 * 12, 12 * 12 + 3)  # 12:00–12:10 the bin sensor reads 4,800 mm (rated to 4,500)
MOUNT = range(15 * 12, 15 * 12 + 2)  # 15:00–15:05 the pressure gauge says 650 mm, above its 500 mm mount
SILENT = range(2 * 12, 5 * 12)  # 02:00–05:00 the dust sensor is silent: 36 reports missing
FLOOD = range(17 * 12, 18 * 12)  # 17:00–18:00 real water on the road: 200 mm (a waterlogging case)


def fields_at(d: Device, k: int) -> dict | None:
    """What device `d` reports at step `k` (None: nothing), before encoding."""
    wobble = (k * 7919) % 23  # deterministic variety, so no good sensor repeats itself
    if d.id == "wl-spike":
        return {"distance_mm": 600.0 if k == SPIKE_AT else 2980.0 - wobble % 5, "battery_v": 3.3}
    if d.id == "wl-flood":
        return {"distance_mm": 2800.0 if k in FLOOD else 2990.0 - wobble % 4, "battery_v": 3.3}
    if d.id == "wl-mount":
        return {"depth_mm": 650.0 if k in MOUNT else float(wobble % 3), "temperature_c": 12.5, "battery_v": 3.3}
    if d.id == "nz-stuck":
        return {"laeq_db": 63.2 if k in STUCK else 45.0 + wobble / 10, "lmax_db": 70.0 + wobble / 10,
                "milesight_lp_db": 50.0, "battery_pct": 90.0}
    if d.id == "nz-ok":
        return {"laeq_db": 44.0 + wobble / 10, "lmax_db": 60.0, "milesight_lp_db": 50.0, "battery_pct": 90.0}
    if d.id == "bin-oor":
        return {"distance_mm": 4800.0 if k in OOR else 900.0 - k, "tilted": False, "battery_pct": 80.0}
    if d.id == "dust-silent":
        return None if k in SILENT else {"pm1_0_ugm3": 10.0 + wobble / 10, "pm2_5_ugm3": 20.0 + wobble / 10,
                                         "pm10_ugm3": 40.0 + wobble / 10, "battery_v": 3.1}
    if d.id == "dust-ok":
        return {"pm1_0_ugm3": 12.0 + wobble / 10, "pm2_5_ugm3": 25.0 + wobble / 10, "pm10_ugm3": 50.0,
                "battery_v": 3.1}
    if d.id == "park-1":
        return {"occupied": bool(k % 4 < 2), "temperature_c": 10.0} if k % 2 == 0 else None
    raise AssertionError(d.id)


def planted_checks(d: Device, k: int) -> str | None:
    """The check each planted fault must fail, worked out from the plan above (None: good)."""
    if d.id == "wl-spike" and k == SPIKE_AT:
        return "spike"
    if d.id == "nz-stuck" and k in STUCK and (k - STUCK.start) * STEP_S > 3600:  # noise: stuck after 1 h
        return "stuck"
    if d.id == "bin-oor" and k in OOR:
        return "range"
    if d.id == "wl-mount" and k in MOUNT:
        return "install"
    return None


class Day:
    def __init__(self, db: str, registry: Path, transitions: list[AlertTransition],
                 readings: dict[tuple[str, int], dict]) -> None:
        self.db, self.registry, self.transitions, self.readings = db, registry, transitions, readings


@pytest.fixture(scope="module")
def day(influxd, tmp_path_factory: pytest.TempPathFactory) -> Day:
    tmp = tmp_path_factory.mktemp("quality_day")
    db = "t_quality_day"
    httpx.post(f"{influxd.url}/query", params={"q": f'DROP DATABASE "{db}"'}).raise_for_status()
    httpx.post(f"{influxd.url}/query", params={"q": f'CREATE DATABASE "{db}"'}).raise_for_status()
    registry = tmp / "registry.sqlite"
    with Registry(registry) as reg:
        for d in DEVICES:
            reg.add(d)
    view = RegistryView(registry)
    pipeline = Pipeline(view=view, writer=None, deadletters=None, metrics=Metrics(), parsers={},  # type: ignore[arg-type]
                        judge=Judge())
    rules = RuleSet(load_rules([]), tz="Asia/Shanghai")
    rules.set_devices(view.by_id.values())
    transitions: list[AlertTransition] = []
    readings: dict[tuple[str, int], dict] = {}
    body: list[bytes] = [device_info_lines(DEVICES, DAY0)]
    for k in range(STEPS):
        chunk = []
        for i, d in enumerate(DEVICES):
            fields = fields_at(d, k)
            if fields is None:
                continue
            payload, port = get_model(d.model).codec.encode(fields)
            t = DAY0 + k * STEP_S * NS + (i + 1) * 3 * NS  # a few seconds into the slot, like a real schedule
            chunk.append(Incoming("lorawan", "t", b"", t, uplink=Uplink(d.key, payload, port, t, "lorawan")))
        result = pipeline.process_chunk(chunk)
        assert not result.dead and not result.skipped, ([x.detail for x in result.dead], result.skipped)
        body.append(result.body)
        for r in result.readings:
            readings[(r.device_id, k)] = r.fields
            for tr in rules.process(r):
                transitions.append(tr)
                body.append(encode_points([transition_point(tr)]))
        for tr in rules.tick(DAY0 + (k + 1) * STEP_S * NS):
            transitions.append(tr)
            body.append(encode_points([transition_point(tr)]))
    httpx.post(f"{influxd.url}/write", params={"db": db, "precision": "ns"}, content=join_lines(body),
               timeout=60).raise_for_status()
    view.close()
    return Day(db, registry, transitions, readings)


def test_every_planted_fault_is_flagged_with_its_check_and_kept(influxd, day: Day) -> None:
    for d in DEVICES:
        for k in range(STEPS):
            fields = day.readings.get((d.id, k))
            if fields_at(d, k) is None:
                assert fields is None
                continue
            expected = planted_checks(d, k)
            got = (fields["quality"], fields.get("quality_check"))
            if expected is None:
                assert got == ("good", None), (d.id, k, fields)
            else:
                verdict = "suspect" if expected == "stuck" else "bad"
                assert got == (verdict, expected), (d.id, k, fields)
    # nothing dropped: every uplink is a stored point, flagged ones included
    rows = influx_query(influxd, day.db, 'SELECT count("quality") FROM "water_level", "noise", "bin_fill", '
                                         '"dust", "parking" GROUP BY "device_id"')
    stored = {s["tags"]["device_id"]: s["values"][0][1] for s in rows}
    assert stored == {d.id: sum(fields_at(d, k) is not None for k in range(STEPS)) for d in DEVICES}
    spike = influx_query(influxd, day.db, 'SELECT "depth_mm", "quality", "quality_check" FROM "water_level" '
                                          "WHERE \"quality\" = 'bad'")
    assert [(v[1], v[2], v[3]) for v in spike[0]["values"]] == [(2400.0, "bad", "spike"), (650.0, "bad", "install"),
                                                                (650.0, "bad", "install")]


def test_no_flood_case_from_the_spike_but_one_from_real_water(day: Day) -> None:
    water = [t for t in day.transitions if t.rule_id.startswith("water.")]
    assert not [t for t in water if t.device_id in ("wl-spike", "wl-mount")]
    flood = [t for t in water if t.device_id == "wl-flood" and t.to_state is AlertState.FIRING]
    assert [t.route for t in flood] == ["case"]  # 200 mm: waterlogged, a case (not the 270 mm emergency)


def test_one_maintenance_alert_for_the_stuck_sensor(day: Day) -> None:
    maintenance = [t for t in day.transitions if t.route == "maintenance"]
    firing = [(t.rule_id, t.device_id) for t in maintenance if t.to_state is AlertState.FIRING]
    # the only data-quality alert of the day; the silent dust sensor has its own no-data one
    assert sorted(firing) == [("device.silent", "dust-silent"), ("quality.stuck", "nz-stuck")]
    maintenance = [t for t in maintenance if t.rule_id.startswith("quality.")]
    fired = next(t for t in maintenance if t.to_state is AlertState.FIRING)
    assert not [t for t in day.transitions if t.device_id == "nz-stuck" and t.route == "emergency"]
    # stuck from 08:00, flagged after an hour (09:05), alert after 30 more minutes of stuck readings
    assert fired.time_ns == DAY0 + (9 * 3600 + 35 * 60) * NS + 4 * 3 * NS
    assert dict(fired.labels)["task"] == "maintenance" and dict(fired.labels)["kind"] == "noise"
    resolved = [t for t in maintenance if t.to_state is AlertState.RESOLVED]
    assert [(t.device_id, t.time_ns // NS - DAY0 // NS) for t in resolved] == [("nz-stuck", 14 * 3600 + 12)]


def _independent(day: Day) -> dict[tuple[str, str], dict]:
    """The figures worked out from the plan and the raw points, without the report's code."""
    out: dict[tuple[str, str], dict] = {}
    for d in DEVICES:
        f = out.setdefault((d.district, d.kind), {"devices": 0, "expected": 0.0, "reports": 0, "readings": 0,
                                                  "good": 0, "opened": 0, "closed": 0})
        f["devices"] += 1
        f["expected"] += DAY_S / d.expected_interval_s
        sent = [k for k in range(STEPS) if fields_at(d, k) is not None]
        f["reports"] += len(sent)  # one uplink per slot at most in this plan
        f["readings"] += len(sent)
        f["good"] += sum(planted_checks(d, k) is None for k in sent)
    kinds = {d.id: (d.district, d.kind) for d in DEVICES}
    for t in day.transitions:
        if t.to_state is AlertState.FIRING and t.from_state is not AlertState.FIRING:
            out[kinds[t.device_id]]["opened"] += 1
        elif t.to_state is AlertState.RESOLVED:
            out[kinds[t.device_id]]["closed"] += 1
    return out


def _report(influxd, day: Day) -> list[Figures]:
    async def go() -> list[Figures]:
        async with InfluxClient(influxd.url, day.db) as client:
            with Registry(day.registry) as reg:
                devices = reg.all()
            return await gather(client, devices, day.registry.parent / "no-alerts.sqlite", DAY0, DAY0 + DAY_S * NS)
    return asyncio.run(go())


def test_report_equals_the_figures_computed_from_the_raw_points(influxd, day: Day) -> None:
    figures = _report(influxd, day)
    mine = _independent(day)
    rows = {(f.district, f.kind): f for f in figures if f.district != ALL}
    assert set(rows) == set(mine)
    for key, want in mine.items():
        f = rows[key]
        assert (f.devices, f.reports, f.readings, f.good_readings, f.alerts_opened, f.alerts_closed) == (
            want["devices"], want["reports"], want["readings"], want["good"], want["opened"], want["closed"]), key
        assert f.expected_reports == pytest.approx(want["expected"])
        assert f.online_rate == pytest.approx(want["reports"] / want["expected"])
        assert f.accuracy_rate == pytest.approx(want["good"] / want["readings"])
    silent = rows[("朝阳区", "dust")]
    assert (silent.reports, silent.expected_reports) == (STEPS - 36, STEPS)
    assert silent.online_rate == pytest.approx(252 / 288)
    assert rows[("朝阳区", "parking")].online_rate == 1.0  # every 10 minutes, as registered
    assert any(f.alerts_opened for f in rows.values())  # the day has alerts to count
    grand = next(f for f in figures if f.district == ALL and f.kind == ALL)
    assert grand.readings == sum(w["readings"] for w in mine.values())


def test_report_command_prints_and_writes_csv_and_xlsx(influxd, day: Day, tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[influxdb]\nurl = "{influxd.url}"\ndatabase = "{day.db}"\n'
                   f'[registry]\npath = "{day.registry}"\n[alerts]\ndb_path = "{tmp_path / "alerts.sqlite"}"\n',
                   encoding="utf-8")
    out_csv, out_xlsx = tmp_path / "figures.csv", tmp_path / "figures.xlsx"
    result = CliRunner().invoke(app, ["--config", str(cfg), "report", "--from", "2026-11-20", "--to", "2026-11-21",
                                      "--district", "朝阳", "--csv", str(out_csv), "--xlsx", str(out_xlsx)])
    assert result.exit_code == 0, result.output
    assert "87.50 %" in result.output  # the silent dust sensor: 252 of 288 reports
    with out_csv.open(encoding="utf-8-sig") as fh:
        rows = {(r["district"], r["kind"]): r for r in csv.DictReader(fh)}
    assert set(rows) >= {("朝阳区", "dust"), ("朝阳区", "noise"), ("朝阳区", "water_level")}
    assert not any(k[0] == "海淀区" for k in rows)
    assert float(rows[("朝阳区", "dust")]["online_rate"]) == pytest.approx(252 / 288, abs=1e-6)
    sheet = openpyxl.load_workbook(out_xlsx).active
    header = [c.value for c in sheet[2]]
    dust = next(r for r in sheet.iter_rows(min_row=3, values_only=True) if r[:2] == ("朝阳区", "dust"))
    assert dust[header.index("online_rate")] == pytest.approx(252 / 288)
    noise_csv = tmp_path / "noise.csv"
    only = CliRunner().invoke(app, ["--config", str(cfg), "report", "--from", "2026-11-20", "--to", "2026-11-21",
                                    "--kind", "noise", "--csv", str(noise_csv)])
    assert only.exit_code == 0, only.output
    with noise_csv.open(encoding="utf-8-sig") as fh:
        assert {(r["district"], r["kind"]) for r in csv.DictReader(fh)} == {
            ("朝阳区", "noise"), ("海淀区", "noise"), (ALL, "noise")}
    bad = CliRunner().invoke(app, ["--config", str(cfg), "report", "--from", "2026-11-21", "--to", "2026-11-20"])
    assert bad.exit_code != 0 and "--to must be after --from" in bad.output
    bad = CliRunner().invoke(app, ["--config", str(cfg), "report", "--from", "2026-11-20", "--to", "2026-11-21",
                                   "--kind", "nois"])
    assert bad.exit_code != 0 and "unknown kind 'nois'" in bad.output
    west = CliRunner().invoke(app, ["--config", str(cfg), "report", "--from", "2026-11-20", "--to", "2026-11-21",
                                    "--district", "西城"])
    assert west.exit_code == 0 and "0 devices matched district '西城' (known districts: 朝阳区, 海淀区)" in west.stderr
    future = CliRunner().invoke(app, ["--config", str(cfg), "report", "--from", "2999-01-01", "--to", "2999-01-02"])
    assert future.exit_code != 0 and "starts in the future" in future.output


def test_a_report_for_a_period_not_over_yet_counts_only_the_reports_already_due() -> None:
    """Today's report at noon expects half a day of reports, not a whole day (0.83 % online otherwise)."""
    day_ns, noon_ns = 86_400 * 10**9, 1_764_504_000 * 10**9
    start = noon_ns - day_ns // 2
    assert clip_to_now(start, start + day_ns, noon_ns) == noon_ns
    assert clip_to_now(start, start + day_ns, noon_ns + day_ns) == start + day_ns
    with pytest.raises(ValueError, match="starts in the future"):
        clip_to_now(noon_ns + 1, noon_ns + day_ns, noon_ns)


def test_dashboard_queries_return_the_reports_numbers(influxd, day: Day) -> None:
    """Each kind's figures panel: its queries on influxd, joined and divided as its transformations say."""
    figures = {(f.district, f.kind): f for f in _report(influxd, day) if f.district != ALL}
    dash = build_dashboards("en")["urbansense-figures"]
    yesterday = Expansion(absolute_ms=(DAY0 // 10**6, (DAY0 + DAY_S * NS) // 10**6 - 1),
                          variables={"district": ([".*"], False)})
    seen = 0
    for panel in dash["panels"]:
        kind = next(k for k in ("water_level", "noise", "dust", "bin_fill", "parking")
                    if f"\"{k}\"" in panel["targets"][1]["query"])
        joined: dict[str, dict[str, float]] = {}
        for target in panel["targets"]:
            for s in influx_query(influxd, day.db, expand(target["query"], yesterday)):
                cols = s["columns"]
                joined.setdefault(s["tags"]["district"], {}).update(
                    {c: v for c, v in zip(cols, s["values"][0], strict=True) if c != "time"})
        calc = {t["options"]["alias"]: t["options"]["binary"] for t in panel["transformations"]
                if t["id"] == "calculateField"}
        for district, row in joined.items():
            f = figures[(district, kind)]
            for alias, b in calc.items():
                row[alias] = row[b["left"]] / row[b["right"]]
            assert row["devices"] == f.devices and row["expected"] == pytest.approx(f.expected_reports)
            assert (row["reports"], row["readings"], row["good"]) == (f.reports, f.readings, f.good_readings)
            assert row.get("opened", 0) == f.alerts_opened and row.get("closed", 0) == f.alerts_closed
            assert math.isclose(row["online_rate"], f.online_rate or 0) and \
                math.isclose(row["accuracy_rate"], f.accuracy_rate or 0)
            seen += 1
    assert seen == len(figures)
