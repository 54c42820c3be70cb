"""Replays refused: a signed OneNET push replayed 20 times is stored once and refused 19 times (counted),
even without its own time; stale pushes and CTWing pushes from outside the allow-list are refused."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import orjson
from nbiotkit import count, nb_fleet, provision, stored
from servicekit import make_config, running, wait_until

from collectors.nbiot.frame import build_frame, parse_frame
from collectors.nbiot.platforms import onenet_signature
from collectors.nbiot.replay import ReplayGuard
from provisioning.registry import Registry
from sim.daemons import Daemon
from sim.nbiot import NbiotSimulator, UdpPlayer, ctwing_push, onenet_push
from sim.simulator import Scenario
from storage.deadletter import DeadLetterStore

T0 = 1_760_000_000


def _signed(token: str, msg: str, nonce: str) -> bytes:
    return orjson.dumps({"msg": msg, "nonce": nonce, "signature": onenet_signature(token, nonce, msg)})


def test_a_onenet_push_without_its_own_time_replayed_20_times_is_one_point_and_19_refusals(
        tmp_path: Path, mosquitto: Daemon, influxd: Daemon, influx_db: str, database: str) -> None:
    cfg = make_config(tmp_path, mosquitto, influxd, influx_db, database=database, lorawan={"chirpstack": False},
                      nbiot={"push": True, "push_port": 0, "onenet_token": "on-secret", "ctwing_token": "ct-secret",
                             "ctwing_sources": ["10.20.0.0/16"], "max_push_age_s": 600.0})
    devices = nb_fleet(2)
    provision(cfg.registry_database(), devices)
    f = parse_frame(NbiotSimulator(devices, Scenario(), seed=4).frame(devices[0], 0, T0).frame)
    frame = build_frame(f.imei, f.msg_type, f.seq, f.payload)  # no device time: the point gets the arrival time
    msg = orjson.dumps({"imei": devices[0].key, "type": 1, "ds_id": "3300_0_5750", "value": frame.hex(),
                        "dev_id": 504920000}).decode()
    body = _signed("on-secret", msg, "r3pl4y01")
    kind = devices[0].kind
    with running(cfg) as svc:
        base = f"http://127.0.0.1:{svc.collector('nbiot').push.port}/push"
        with httpx.Client(timeout=10) as http:
            codes = [http.post(f"{base}/onenet", content=body).status_code for _ in range(20)]
            # the same message under a new nonce is a new push (the platform's own retry is not refused);
            # it carries the same frame (IMEI, sequence, payload), so the pipeline stores it once (a duplicate)
            assert http.post(f"{base}/onenet", content=_signed("on-secret", msg, "fr3sh002")).status_code == 200
            # a signed push whose own time is a year old: stale
            old = onenet_push("on-secret", devices[1].key, frame, T0 * 1000, nonce="0ld0ld01")
            assert http.post(f"{base}/onenet", content=old).status_code == 403
            # CTWing from 127.0.0.1, outside the allow-list
            r = http.post(f"{base}/ctwing/ct-secret", content=ctwing_push(devices[1].key, frame, T0 * 1000))
            assert r.status_code == 403 and "may not push" in r.text
        metrics = httpx.get(f"http://127.0.0.1:{svc.metrics_server.port}/metrics").text
    assert codes == [200] + [409] * 19
    assert 'urbansense_push_refused_total{platform="onenet",reason="replayed"} 19.0' in metrics
    assert 'urbansense_push_refused_total{platform="onenet",reason="stale"} 1.0' in metrics
    assert 'urbansense_push_refused_total{platform="ctwing",reason="source_not_allowed"} 1.0' in metrics
    assert count(influxd, influx_db, kind) == 1  # the first push; the fresh-nonce retry is the same frame
    assert 'urbansense_uplinks_skipped_total{reason="duplicate"} 1.0' in metrics


def test_the_nonce_memory_is_bounded_and_forgets_after_the_window() -> None:
    now = [1000.0]
    guard = ReplayGuard(60, max_nonces=3, clock=lambda: now[0])
    assert guard.claim("a") and not guard.claim("a")
    guard.release("a")
    assert guard.claim("a")  # a push that was not stored may come again
    assert guard.claim("b") and guard.claim("c") and guard.claim("d")  # "a" evicted: the bound holds
    assert len(guard._seen) <= 3
    now[0] += 61
    assert guard.claim("d")
    assert guard.stale([int(now[0] * 1000) - 30_000]) is None and guard.stale([0]) is not None


def test_a_device_with_a_mac_key_takes_only_frames_signed_with_it(
        tmp_path: Path, mosquitto: Daemon, influxd: Daemon, influx_db: str, database: str) -> None:
    cfg = make_config(tmp_path, mosquitto, influxd, influx_db, database=database, lorawan={"chirpstack": False},
                      nbiot={"udp": True, "udp_port": 0})
    devices = nb_fleet(2)
    signed_dev, plain_dev = devices
    provision(cfg.registry_database(), devices)
    with Registry(cfg.registry_database()) as reg:
        key = bytes.fromhex(reg.set_mac_key(signed_dev.id))
        assert "mac_key" in reg.history(signed_dev.id)[-1]["changes"] and key.hex() not in str(reg.history(
            signed_dev.id))
    sim = NbiotSimulator(devices, Scenario(), seed=6)
    NOW = int(time.time()) - 300  # a device time the time policy trusts (recent)

    def frame(dev, t: int, mac_key: bytes | None) -> bytes:  # type: ignore[no-untyped-def]
        f = parse_frame(sim.frame(dev, 0, t).frame)
        return build_frame(f.imei, f.msg_type, f.seq, f.payload, device_time_s=t, mac_key=mac_key)

    with running(cfg) as svc:
        player = UdpPlayer("127.0.0.1", svc.collector("nbiot").udp.port)
        player.send(frame(signed_dev, NOW, None))              # knowing the IMEI is not enough
        player.send(frame(signed_dev, NOW + 1, b"k" * 16))     # nor a tag made with another key
        player.send(frame(signed_dev, NOW + 2, key))           # the device itself
        player.send(frame(plain_dev, NOW + 3, None))           # a device without a key: as before
        wait_until(lambda: svc.pipeline.stats.readings >= 2 and svc.metrics.rejected.labels("bad_mac")._value.get()
                   >= 2, 30, "2 readings and 2 refusals")
        player.close()
    points = stored(influxd, influx_db, signed_dev.kind) | stored(influxd, influx_db, plain_dev.kind)
    seconds = {(dev_id, t // 10**9) for dev_id, t in points}  # a whole-second device time gets µs from the seq
    assert (signed_dev.id, NOW + 2) in seconds and (plain_dev.id, NOW + 3) in seconds
    assert (signed_dev.id, NOW) not in seconds and (signed_dev.id, NOW + 1) not in seconds
    with DeadLetterStore(cfg.dead_letter_database()) as dl:
        assert dl.count_by_reason() == {"bad_mac": 2}
