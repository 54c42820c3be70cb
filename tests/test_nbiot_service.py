"""NB-IoT into the real service on loopback: UDP, CoAP, CTWing and OneNET pushes, stored in the real InfluxDB."""

from __future__ import annotations

import asyncio
import os
import random
import time
from pathlib import Path

import aiocoap
import httpx
import orjson
import pytest
from nbiotkit import count, imei, nb_fleet, provision, stored
from servicekit import make_config, recent_ns, running, wait_until

from collectors.nbiot.frame import build_frame, parse_frame
from sim.daemons import Daemon, free_port
from sim.nbiot import NbiotSimulator, UdpPlayer, ctwing_push, ctwing_push_decoded, onenet_push
from sim.simulator import Scenario
from storage.deadletter import DeadLetterStore

T0 = recent_ns() // 1_000_000_000


def _config(tmp_path: Path, mosquitto: Daemon, influxd: Daemon, db: str, database: str = "", **nbiot: object):
    return make_config(tmp_path, mosquitto, influxd, db, database, lorawan={"chirpstack": False},
                       nbiot={"udp_port": 0, "push_port": 0, **nbiot})


def _assert_stored(influxd: Daemon, db: str, frames) -> None:
    for kind in ("water_level", "noise"):
        points = stored(influxd, db, kind)
        for f in (f for f in frames if f.device.kind == kind):
            # a frame stamped by a whole-second device clock is stored at that second + its sequence in µs,
            # so that two frames of one second stay two points (core.timepolicy.spread)
            rec = points[(f.device.id, f.time_ns + f.seq * 1000 if f.time_ns % 1_000_000_000 == 0 else f.time_ns)]
            for name, value in f.expected.items():
                assert rec[name] == value, f"{f.device.id} {name}: stored {rec[name]!r}, sent {value!r}"


def test_udp_frames_from_200_devices_are_all_stored_and_acked(
        tmp_path: Path, mosquitto: Daemon, influxd: Daemon, influx_db: str) -> None:
    cfg = _config(tmp_path, mosquitto, influxd, influx_db, udp=True)
    devices = nb_fleet(200)
    provision(cfg.registry_database(), devices)
    frames = NbiotSimulator(devices, Scenario("rainstorm", ("朝阳",), ramp_s=10), seed=5).round(8.0, T0)
    with running(cfg) as svc:
        player = UdpPlayer("127.0.0.1", svc.collector("nbiot").udp.port)
        for f in frames:
            player.send(f.frame)
        wait_until(lambda: svc.pipeline.stats.readings >= 200, 30, "200 readings")
        acks = [parse_frame(a) for a in player.acks(1.0)]
        player.close()
    assert count(influxd, influx_db, "water_level") + count(influxd, influx_db, "noise") == 200
    _assert_stored(influxd, influx_db, frames)
    # the water gauges ask for an ack, the noise monitors do not
    assert sorted((a.imei, a.seq) for a in acks) == sorted((f.device.key, f.seq) for f in frames
                                                           if f.device.kind == "water_level")
    assert any(f.expected.get("depth_mm", 0) > 100 for f in frames)


def test_coap_post_is_stored_and_answered_with_the_ack(
        tmp_path: Path, mosquitto: Daemon, influxd: Daemon, influx_db: str, database: str) -> None:
    port = free_port()
    cfg = _config(tmp_path, mosquitto, influxd, influx_db, database, coap=True, coap_port=port)
    devices = nb_fleet(2)
    provision(cfg.registry_database(), devices)
    f = NbiotSimulator(devices, Scenario(), seed=2).frame(devices[0], 0, T0)

    async def post(payload: bytes) -> aiocoap.Message:
        ctx = await aiocoap.Context.create_client_context(transports=["udp6"])
        try:
            req = aiocoap.Message(code=aiocoap.POST, uri=f"coap://127.0.0.1:{port}/up", payload=payload)
            return await ctx.request(req).response
        finally:
            await ctx.shutdown()

    with running(cfg):
        resp = asyncio.run(post(f.frame))
        junk = asyncio.run(post(b"\x68garbage"))
    assert resp.code == aiocoap.CHANGED
    assert parse_frame(resp.payload).seq == f.seq
    assert junk.code == aiocoap.BAD_REQUEST and b"frame_length" in junk.payload
    _assert_stored(influxd, influx_db, [f])


def test_ctwing_and_onenet_pushes_are_stored_and_bad_signatures_refused(
        tmp_path: Path, mosquitto: Daemon, influxd: Daemon, influx_db: str, database: str) -> None:
    cfg = _config(tmp_path, mosquitto, influxd, influx_db, database, push=True, ctwing_token="ct-secret-1",
                  onenet_token="on-secret-2", max_body_bytes=4096)
    devices = nb_fleet(4)
    provision(cfg.registry_database(), devices)
    sim = NbiotSimulator(devices, Scenario(), seed=3)
    f0, f1 = sim.frame(devices[0], 0, T0), sim.frame(devices[1], 0, T0 + 1)
    with running(cfg) as svc:
        base = f"http://127.0.0.1:{svc.collector('nbiot').push.port}/push"
        with httpx.Client(timeout=10) as http:
            started = time.monotonic()
            r = http.post(f"{base}/ctwing/ct-secret-1", content=ctwing_push(devices[0].key, f0.frame, 0))
            answered_s = time.monotonic() - started
            assert r.status_code == 200, r.text
            r = http.post(f"{base}/ctwing/ct-secret-1",
                          content=ctwing_push_decoded(devices[2].key, {"distance": 2500, "battery_voltage": 3.3},
                                                      (T0 + 2) * 1000))
            assert r.status_code == 200, r.text
            assert http.post(f"{base}/ctwing/wrong", content=ctwing_push(devices[0].key, f0.frame, 0)
                             ).status_code == 401

            body = onenet_push("on-secret-2", devices[1].key, f1.frame, (T0 + 1) * 1000)
            assert http.post(f"{base}/onenet", content=body).status_code == 200
            forged = onenet_push("not-the-token", devices[3].key, f1.frame, (T0 + 3) * 1000)
            assert http.post(f"{base}/onenet", content=forged).status_code == 401
            r = http.get(f"{base}/onenet", params={"msg": "xyz123", "nonce": "n0nce", "signature": orjson.loads(
                onenet_push("on-secret-2", "0", b"", 0, nonce="n0nce"))["signature"]})
            assert r.status_code == 401  # signature over another msg
            from collectors.nbiot.platforms import onenet_signature
            r = http.get(f"{base}/onenet", params={"msg": "xyz123", "nonce": "n0nce",
                                                   "signature": onenet_signature("on-secret-2", "n0nce", "xyz123")})
            assert (r.status_code, r.text) == (200, "xyz123")
            assert http.post(f"{base}/ctwing/ct-secret-1", content=b"x" * 5000).status_code == 413
            r = http.post(f"{base}/ctwing/ct-secret-1", content=b'{"messageType": "dataReport", "IMEI": "1"}')
            assert r.status_code == 400 and "bad_imei" in r.text
        metrics = httpx.get(f"http://127.0.0.1:{svc.metrics_server.port}/metrics").text
    assert 'urbansense_push_refused_total{platform="onenet",reason="bad_signature"} 2.0' in metrics
    assert 'urbansense_push_refused_total{platform="ctwing",reason="bad_token"} 1.0' in metrics
    assert answered_s < 5
    _assert_stored(influxd, influx_db, [f0, f1])
    points = stored(influxd, influx_db, "water_level")
    assert points[(devices[2].id, (T0 + 2) * 10**9)]["depth_mm"] == 500.0
    assert (devices[3].id, (T0 + 3) * 10**9) not in points
    with DeadLetterStore(cfg.dead_letter_database()) as dl:
        assert dl.count_by_reason() == {"bad_imei": 1}


def test_10000_junk_datagrams_among_good_ones_leave_every_good_reading_stored(
        tmp_path: Path, mosquitto: Daemon, influxd: Daemon, influx_db: str) -> None:
    cfg = _config(tmp_path, mosquitto, influxd, influx_db, udp=True)
    devices = nb_fleet(100)
    provision(cfg.registry_database(), devices)
    sim = NbiotSimulator(devices, Scenario(), seed=9)
    good = [f for r in range(4) for f in sim.round(float(r), T0 + r * 60)]
    rng = random.Random(1)
    template = good[0].frame
    junk: list[bytes] = []
    for i in range(10_000):
        pick = i % 4
        if pick == 0:
            junk.append(os.urandom(rng.randrange(1, 60)))                    # noise, wrong length
        elif pick == 1:
            bad = bytearray(template)
            bad[rng.randrange(2, len(bad) - 3)] ^= 0xFF
            junk.append(bytes(bad))                                          # bad checksum
        elif pick == 2:
            junk.append(build_frame(imei(900_000 + i), 1, i, template[19:-3]))  # unknown IMEI
        else:
            junk.append(template[: rng.randrange(1, len(template))])         # truncated
    stream = [(True, f.frame) for f in good] + [(False, j) for j in junk]
    rng.shuffle(stream)
    with running(cfg) as svc:
        player = UdpPlayer("127.0.0.1", svc.collector("nbiot").udp.port)
        udp = svc.collector("nbiot").udp
        for n, (_, data) in enumerate(stream):
            player.send(data)
            if n % 200 == 0:  # a paced flood: loopback UDP drops what the socket buffer cannot hold, and on a
                time.sleep(0.002)  # loaded machine the receiving thread may not run for a while: let it catch up
                deadline = time.monotonic() + 5
                while udp.stats.received < n + 1 - 400 and time.monotonic() < deadline:
                    time.sleep(0.005)
        time.sleep(1.0)
        wait_until(lambda: svc.pipeline.stats.received >= udp.stats.received - udp.stats.dropped, 60,
                   "every datagram through the pipeline")
        wait_until(lambda: svc.pipeline.stats.readings >= len(good), 30, "the good readings")
        rejected = dict(svc.pipeline.stats.rejected)
        received = udp.stats.received
        player.close()
    assert received == len(stream), f"{len(stream) - received} datagrams lost on loopback"
    _assert_stored(influxd, influx_db, good)
    assert count(influxd, influx_db, "water_level") + count(influxd, influx_db, "noise") == len(good)
    assert sum(rejected.values()) == 10_000
    assert rejected["unknown_device"] == 2_500
    assert {"frame_length", "bad_checksum"} <= set(rejected)
    with DeadLetterStore(cfg.dead_letter_database()) as dl:
        assert sum(dl.count_by_reason().values()) == 10_000


pytestmark = pytest.mark.timeout(180)


def test_simulate_plays_nbiot_devices_over_udp_and_ctwing(
        tmp_path: Path, mosquitto: Daemon, influxd: Daemon, influx_db: str, database: str) -> None:
    from sim.nbiot import run_nbiot

    cfg = _config(tmp_path, mosquitto, influxd, influx_db, database, udp=True, udp_port=free_port(), push=True,
                  push_port=free_port(), ctwing_token="tok-1")
    devices = nb_fleet(10)
    provision(cfg.registry_database(), devices)
    with running(cfg) as svc:
        code, message = run_nbiot(cfg, devices, Scenario(), transport="nbiot-udp", rate=100, duration_s=0.3)
        assert code == 0 and "from 10 devices" in message
        code, message = run_nbiot(cfg, devices, Scenario(), transport="ctwing", rate=100, duration_s=0.3, seed=2)
        assert code == 0, message
        wait_until(lambda: svc.collector("nbiot").udp.stats.received >= 25, 20, "the UDP reports")
        wait_until(lambda: svc.pipeline.stats.received >= svc.collector("nbiot").udp.stats.received, 20, "stored")
        assert svc.collector("nbiot").push.stats.accepted["ctwing"] >= 1
        assert svc.pipeline.stats.rejected == {}
    assert count(influxd, influx_db, "water_level") + count(influxd, influx_db, "noise") >= 10
