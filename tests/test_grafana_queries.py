"""Every dashboard query, expanded as Grafana expands it, returns data from a real influxd after a rainstorm."""

from __future__ import annotations

import dataclasses
import time

import httpx
import pytest
from conftest import influx_query
from servicekit import make_config, running, wait_until

from alerts.points import transition_point
from core.transition import AlertState, AlertTransition, Severity
from grafana.dashboards import build_dashboards
from grafana.device_info import device_info_lines
from grafana.influxql import Expansion, expand
from provisioning.registry import Registry
from sim.simulator import FleetSimulator, Publisher, Scenario, demo_fleet
from storage.lineprotocol import encode_points

ROUNDS, STEP_S = 25, 300  # one uplink per device every 5 minutes over the last 2 hours

ALL = Expansion(range_="6h", interval="1m", variables={
    "district": ([".*"], False), "zone_class": ([".*"], False), "device": ([".*"], False),
    "online_window": (["15m"], False), "overstay": (["10m"], False)})
"""All selected: Grafana inserts the custom all value `.*` unescaped."""

SOME = Expansion(range_="6h", interval="1m", variables={
    "district": (["朝阳", "海淀", "东城", "丰台"], True), "zone_class": (["1", "2", "3", "4a", "0", "4b"], True),
    "device": ([".*"], False), "online_window": (["15m"], False), "overstay": (["10m"], False)})
"""A multi-value selection: `/^$district$/` becomes `/^(朝阳|海淀|东城|丰台)$/` (the demo ties zones to districts)."""


def _fleet() -> list:
    devices = demo_fleet()
    noise = [i for i, d in enumerate(devices) if d.kind == "noise"]
    for i, zone in zip(noise[:2], ("0", "4b"), strict=True):  # every GB 3096 zone class has a device
        devices[i] = dataclasses.replace(devices[i], zone_class=zone)
    return devices


def _queries(dashboards: dict) -> list[tuple[str, str]]:
    out = []
    for uid, dash in dashboards.items():
        for panel in dash["panels"]:
            out += [(f"{uid} / {panel['title']} / {t['refId']}", t["query"]) for t in panel.get("targets", [])]
        out += [(f"{uid} / annotation {a['name']}", a["target"]["query"]) for a in dash["annotations"]["list"]]
        out += [(f"{uid} / variable {v['name']}", v["query"]) for v in dash["templating"]["list"]
                if v["type"] == "query"]
    return out


@pytest.fixture(scope="module")
def stormed(tmp_path_factory: pytest.TempPathFactory, influxd, request) -> str:
    """A database holding 2 hours of a rainstorm over 朝阳 from the demo fleet, ingested by the real service."""
    from sim.daemons import start_mosquitto

    tmp = tmp_path_factory.mktemp("grafana")
    db = "t_grafana_storm"
    httpx.post(f"{influxd.url}/query", params={"q": f'DROP DATABASE "{db}"'}).raise_for_status()
    broker = start_mosquitto(tmp)
    request.addfinalizer(broker.stop)
    devices = _fleet()
    cfg = make_config(tmp, broker, influxd, db)
    with Registry(cfg.registry_database()) as reg:
        for d in devices:
            reg.add(d)
    sim = FleetSimulator(devices, Scenario("rainstorm", ("朝阳",), ramp_s=ROUNDS * 60 / 2), seed=7)
    start_ns = time.time_ns() - ROUNDS * STEP_S * 10**9
    with running(cfg):
        pub = Publisher("127.0.0.1", broker.port)
        sent = 0
        for k in range(ROUNDS + 1):
            for u in sim.round(k * 60.0, start_ns + k * STEP_S * 10**9):
                pub.publish(u.topic, u.event)
                sent += 1
        pub.close()

        def stored() -> int:
            rows = influx_query(influxd, db, 'SELECT count("rssi_dbm") FROM "device_health"')
            return rows[0]["values"][0][1] if rows else 0
        wait_until(lambda: stored() >= sent, 60, f"{sent} uplinks stored")
    now = time.time_ns()
    transitions = [AlertTransition("waterlogging_depth", d.id, AlertState.PENDING, AlertState.FIRING,
                                   Severity.CRITICAL, now - (30 - i) * 10**9, 300.0, 270.0, "flood",
                                   summary=f"{d.id} water 300 mm",
                                   labels=(("district", d.district), ("kind", d.kind)))
                   for i, d in enumerate(devices) if d.kind == "water_level" and d.district == "朝阳"]
    for kind in ("noise", "dust", "bin_fill", "parking", "water_level"):  # an alert of each kind came and went
        d = next(d for d in devices if d.kind == kind and d.district != "朝阳")
        for j, (a, b) in enumerate(((AlertState.PENDING, AlertState.FIRING), (AlertState.FIRING, AlertState.RESOLVED))):
            transitions.append(AlertTransition(f"{kind}.test", d.id, a, b, Severity.WARNING, now - (60 - j) * 10**9,
                                               1.0, 1.0, "case", summary=f"{d.id} {b}",
                                               labels=(("district", d.district), ("kind", kind))))
    body = encode_points(transition_point(t) for t in transitions) + device_info_lines(devices, now)
    httpx.post(f"{influxd.url}/write", params={"db": db, "precision": "ns"}, content=body).raise_for_status()
    return db


@pytest.mark.parametrize("selection", [ALL, SOME], ids=["all", "multi-value"])
def test_every_panel_query_returns_series_after_a_rainstorm(influxd, stormed, selection):
    queries = _queries(build_dashboards("en"))
    assert len(queries) > 40
    empty = []
    for where, query in queries:
        if not influx_query(influxd, stormed, expand(query, selection)):
            empty.append(f"{where}: {expand(query, selection)}")
    assert not empty, "queries without data:\n" + "\n".join(empty)


def test_the_storm_shows_on_the_water_dashboard_and_the_map(influxd, stormed):
    water = build_dashboards("en")["urbansense-water-level"]
    by_district = next(p for p in water["panels"] if "per district" in p["title"])
    series = influx_query(influxd, stormed, expand(by_district["targets"][0]["query"], ALL))
    peak = {s["tags"]["district"]: max(v[1] for v in s["values"]) for s in series}
    assert peak["朝阳"] > 270 > max(v for k, v in peak.items() if k != "朝阳")

    device_map = build_dashboards("en")["urbansense-overview"]["panels"][0]
    assert device_map["type"] == "geomap"
    located = influx_query(influxd, stormed, expand(device_map["targets"][0]["query"], ALL))
    alerting = influx_query(influxd, stormed, expand(device_map["targets"][2]["query"], ALL))
    assert len(located) == len(_fleet())
    assert {s["tags"]["device_id"] for s in alerting} >= {d.id for d in _fleet()
                                                          if d.kind == "water_level" and d.district == "朝阳"}


def test_grafana_expands_a_single_and_a_multi_value_variable_like_grafana():
    q = 'SELECT 1 FROM "x" WHERE "district" =~ /^$district$/ AND $timeFilter GROUP BY time($__interval)'
    one = expand(q, Expansion("1h", "30s", {"district": (["a.b"], True)}))
    two = expand(q, Expansion("1h", "30s", {"district": (["a.b", "c/d"], True)}))
    assert one == 'SELECT 1 FROM "x" WHERE "district" =~ /^a\\.b$/ AND time >= now() - 1h and time <= now() ' \
                  'GROUP BY time(30s)'
    assert "/^(a\\.b|c\\/d)$/" in two


