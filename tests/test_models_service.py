"""Models without code in the running service: every decoded-object envelope into real Mosquitto and influxd,
a model folder added and broken while it runs."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import orjson
import pytest
from loguru import logger
from nbiotkit import imei, provision, stored
from servicekit import make_config, recent_ns, running, wait_until
from test_models_defined import GOOD

from collectors.lorawan.chirpstack import build_chirpstack_event
from collectors.lorawan.chirpstack_v3 import build_chirpstack_v3_uplink
from collectors.lorawan.tts import build_tts_uplink
from collectors.nbiot.platforms import onenet_signature
from core.device import Device
from sim.daemons import Daemon
from sim.simulator import Publisher
from storage.deadletter import DeadLetterStore

pytestmark = pytest.mark.timeout(180)
T0 = recent_ns() // 1_000_000_000  # the time policy trusts source times of the last 7 days
GW = "0016c001ff10a235"


def _dev(n: int, model: str, kind: str, key: str, **install: float) -> Device:
    return Device(id=f"X-{n:02d}", key=key, model=model, kind=kind, district="朝阳", zone_class="1",
                  install=install, expected_interval_s=600)


DEVICES = [
    _dev(1, "milesight-am308", "dust", "24e124710c140001"),
    _dev(2, "senso8-lrs20uxx", "bin_fill", "70b3d50000000002", bin_depth_mm=1200.0),
    _dev(3, "senso8-lrs20uxx", "bin_fill", "70b3d50000000003", bin_depth_mm=1200.0),
    _dev(4, "milesight-ws302-decoded", "noise", "24e124710c140004"),
    _dev(5, "ctwing-nb-water-level", "water_level", imei(5), mount_height_mm=3000.0),
    _dev(6, "ipso-distance-onenet", "water_level", "onenet:504920006", mount_height_mm=3000.0),
    _dev(7, "ipso-distance-onenet", "water_level", "onenet:504920007", mount_height_mm=3000.0),
    _dev(8, "acme-wl100", "water_level", "70b3d50000000008", mount_height_mm=3000.0),
]
D = {d.id: d for d in DEVICES}


def _v4_with_object(dev: Device, t: int, obj: dict | None, payload: bytes = b"\x01") -> tuple[str, bytes]:
    topic, body = build_chirpstack_event(dev.key, payload, 85, t % 1000, t * 10**9, [(GW, -90, 6.0)])
    if obj is None:
        return topic, body
    return topic, orjson.dumps({**orjson.loads(body), "object": obj})


def _onenet(token: str, points: list[dict]) -> bytes:
    msg = orjson.dumps(points).decode()
    return orjson.dumps({"msg": msg, "nonce": "n0nce123", "signature": onenet_signature(token, "n0nce123", msg)})


def test_every_decoded_object_envelope_lands_in_influxdb_and_model_folders_reload_live(
        tmp_path: Path, mosquitto: Daemon, influxd: Daemon, influx_db: str, database: str) -> None:
    folder = tmp_path / "models"
    cfg = make_config(tmp_path, mosquitto, influxd, influx_db, database=database,
                      lorawan={"chirpstack": True, "chirpstack_v3": True, "tts": True},
                      nbiot={"push": True, "push_port": 0, "ctwing_token": "ct-1", "onenet_token": "on-2"},
                      decoders={"paths": [str(folder)], "reload_interval_s": 0.2})
    provision(cfg.registry_database(), DEVICES)
    logged: list[str] = []
    sink = logger.add(lambda m: logged.append(str(m)), level="WARNING", format="{message}")
    with running(cfg) as svc:
        assert any("not a folder (decoders.paths)" in p for p in svc.model_folders.problems)
        pub = Publisher("127.0.0.1", mosquitto.port)
        # ChirpStack v4 `object`
        pub.publish(*_v4_with_object(D["X-01"], T0 + 1, {"pm2_5": 37, "pm10": 52, "temperature": 24.6,
                                                          "humidity": 51.5, "battery": 98}))
        # the same model without an object: dead letter naming what was missing
        pub.publish(*_v4_with_object(D["X-01"], T0 + 2, None))
        # ChirpStack v3, json marshaler on the old /rx topic (objectJSON), and json_v3 on /event/up (object)
        pub.publish(*build_chirpstack_v3_uplink(D["X-02"].key, bytes.fromhex("0c005704080000"), 10, 5,
                                                (T0 + 3) * 10**9, [(GW, -100, 3.0)], marshaler="json",
                                                topic_generation="rx", decoded={"distance": 55.5, "battery": 80}))
        pub.publish(*build_chirpstack_v3_uplink(D["X-03"].key, bytes.fromhex("0c005704080000"), 10, 6,
                                                (T0 + 4) * 10**9, [(GW, -100, 3.0)], marshaler="json_v3",
                                                topic_generation="event", decoded={"distance": 99.0,
                                                                                   "battery": 81}))
        # ChirpStack v3 bytes only: the model's own TS013 codec decodes them
        pub.publish(*build_chirpstack_v3_uplink(D["X-03"].key, bytes.fromhex("0c005704080000"), 10, 7,
                                                (T0 + 5) * 10**9, [(GW, -100, 3.0)], marshaler="json_v3"))
        # The Things Stack `decoded_payload`
        topic, body = build_tts_uplink(D["X-04"].key, b"\x01", 85, 9, (T0 + 6) * 10**9, [("gw-1", -70.0, 7.5)])
        doc = orjson.loads(body)
        doc["uplink_message"]["decoded_payload"] = {"battery": 100, "LAF": 57.5, "LAeq": 47.4, "LAFmax": 61.8}
        pub.publish(topic, orjson.dumps(doc))
        pub.flush()

        base = f"http://127.0.0.1:{svc.collector('nbiot').push.port}/push"
        with httpx.Client(timeout=10) as http:
            ctwing = {"messageType": "dataReport", "IMEI": D["X-05"].key, "timestamp": (T0 + 7) * 1000,
                      "productId": "15044001", "payload": {"serviceId": "data_report", "serviceData": {
                          "liquid_level": 2.314, "battery_value": 76, "battery_voltage": 3.58}}}
            assert http.post(f"{base}/ctwing/ct-1", content=orjson.dumps(ctwing)).status_code == 200
            one = [{"type": 1, "dev_id": 504920006, "ds_id": "3330_0_5700", "at": (T0 + 8) * 1000, "value": 1.85}]
            assert http.post(f"{base}/onenet", content=_onenet("on-2", one)).status_code == 200
            batch = [{"type": 1, "imei": imei(70), "dev_id": 504920007, "ds_id": ds, "at": (T0 + 9) * 1000,
                      "value": v} for ds, v in (("3330_0_5700", "0.42"), ("3_0_9", 64), ("3_0_7", 3610))]
            r = http.post(f"{base}/onenet", content=_onenet("on-2", batch))
            assert r.status_code == 200 and r.json()["readings"] == 1

        wait_until(lambda: svc.pipeline.stats.readings >= 8, 30, "eight readings")
        # a model folder appears while the service runs: the next uplink of its device is stored
        folder.mkdir()
        (folder / "acme-wl100.toml").write_text(GOOD, encoding="utf-8")
        wait_until(lambda: [m.model for m in svc.model_folders.models] == ["acme-wl100"], 10, "the new folder")
        pub.publish(*_v4_with_object(D["X-08"], T0 + 10, {"level": {"distance": 100.0}, "bat": 3600}))
        wait_until(lambda: svc.pipeline.stats.readings >= 9, 30, "the new model's reading")
        # a broken file is refused with file, key and reason; every model keeps working
        broken = folder / "acme-broken.toml"
        broken.write_text(GOOD.replace("acme-wl100", "acme-broken").replace("[fields]", "[fields]\nlaeq_db = 5"),
                          encoding="utf-8")
        wait_until(lambda: any(str(broken) in p for p in svc.model_folders.problems), 10, "the refusal")
        pub.publish(*_v4_with_object(D["X-08"], T0 + 11, {"level": {"distance": 150.0}}))
        pub.publish(*_v4_with_object(D["X-01"], T0 + 12, {"pm2_5": 12, "pm10": 20}))
        pub.close()
        wait_until(lambda: svc.pipeline.stats.readings >= 11, 30, "readings after the refusal")
        problems = list(svc.model_folders.problems)
        time.sleep(0.3)
    logger.remove(sink)

    assert f"{broken}: fields.laeq_db: 'laeq_db' is not a field of kind 'water_level'; expected one of " \
           "battery_pct, battery_v, depth_mm, distance_mm" in "\n".join(problems)
    assert any(p.startswith(f"{broken}: fields.laeq_db: expected a table") for p in problems)
    assert any(line.startswith(f"model definition refused: {broken}: fields.laeq_db:") for line in logged)
    dust, bins, noise, water = (stored(influxd, influx_db, k) for k in ("dust", "bin_fill", "noise", "water_level"))
    health = stored(influxd, influx_db, "device_health")
    ns = 10**9
    assert dust[("X-01", (T0 + 1) * ns)]["pm2_5_ugm3"] == 37.0 and dust[("X-01", (T0 + 1) * ns)]["pm10_ugm3"] == 52.0
    assert health[("X-01", (T0 + 1) * ns)]["temperature_c"] == 24.6
    assert ("X-01", (T0 + 2) * ns) not in dust
    assert bins[("X-02", (T0 + 3) * ns)]["distance_mm"] == 555.0           # objectJSON wins over the bytes
    assert bins[("X-03", (T0 + 4) * ns)]["distance_mm"] == 990.0           # json_v3 object
    assert bins[("X-03", (T0 + 5) * ns)]["distance_mm"] == 1032.0          # bytes through the TS013 codec
    assert bins[("X-03", (T0 + 5) * ns)]["fill_pct"] == pytest.approx(14.0)
    assert noise[("X-04", (T0 + 6) * ns)]["laeq_db"] == 47.4 and noise[("X-04", (T0 + 6) * ns)]["lmax_db"] == 61.8
    assert water[("X-05", (T0 + 7) * ns)]["distance_mm"] == 2314.0 and water[("X-05", (T0 + 7) * ns)]["depth_mm"] \
        == 686.0
    assert health[("X-05", (T0 + 7) * ns)]["battery_v"] == 3.58
    assert water[("X-06", (T0 + 8) * ns)]["distance_mm"] == 1850.0
    assert water[("X-07", (T0 + 9) * ns)]["distance_mm"] == 420.0          # one reading from three datastreams
    assert health[("X-07", (T0 + 9) * ns)]["battery_pct"] == 64.0 and health[("X-07", (T0 + 9) * ns)]["battery_v"] \
        == 3.61
    assert water[("X-08", (T0 + 10) * ns)]["distance_mm"] == 1000.0
    assert water[("X-08", (T0 + 11) * ns)]["distance_mm"] == 1500.0
    assert dust[("X-01", (T0 + 12) * ns)]["pm2_5_ugm3"] == 12.0
    with DeadLetterStore(cfg.dead_letter_database()) as dl:
        assert dl.count_by_reason() == {"missing_input": 1}
        (letter,) = dl.list(limit=5)
    assert "milesight-am308 reads a decoded object" in letter.detail and "1 payload byte" in letter.detail
