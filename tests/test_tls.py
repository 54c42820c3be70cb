"""TLS, verified: the service ingests through Mosquitto's TLS listener with a CA made by the test; a broker
certificate from another CA is refused with a clear error; the MQTT notifier publishes over TLS."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
import threading
import time
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest
from conftest import captured_log, influx_query
from paho.mqtt.enums import CallbackAPIVersion
from servicekit import make_config, running, wait_until
from test_faults_ingest import DEVICES, provision

from alerts.config import AlertsConfig
from alerts.model import Delivery
from alerts.notifiers import build_notifiers
from collectors.mqtt import MqttConsumer
from collectors.nbiot.push import PushReceiver
from core.tls import TlsError, client_context, server_context
from core.uplink import Sink
from service.config import ConfigError, parse_config
from service.desk.auth import hash_password
from sim.daemons import BrokerTls, Daemon, start_mosquitto
from sim.simulator import FleetSimulator, Publisher, Scenario


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(d: Path, name: str) -> tuple[Path, Path]:
    d.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2", "-subj", f"/CN={name}",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             cwd=d)
    return d / f"{name}.pem", d / f"{name}.key"


def issue(d: Path, ca: tuple[Path, Path], name: str, *, server: bool) -> tuple[Path, Path]:
    ext = d / f"{name}.ext"
    ext.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n" if server
                   else "extendedKeyUsage=clientAuth\n")
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=d)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", str(ca[0]), "-CAkey", str(ca[1]), "-CAcreateserial",
             "-out", f"{name}.pem", "-days", "2", "-extfile", str(ext), cwd=d)
    return d / f"{name}.pem", d / f"{name}.key"


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    d = tmp_path / "pki"
    ca = make_ca(d, "city-ca")
    other = make_ca(d, "other-ca")
    server, server_key = issue(d, ca, "broker", server=True)
    rogue, rogue_key = issue(d, other, "rogue", server=True)
    client, client_key = issue(d, ca, "urbansense", server=False)
    return {"ca": ca[0], "server": server, "server_key": server_key, "rogue": rogue, "rogue_key": rogue_key,
            "client": client, "client_key": client_key}


@pytest.fixture
def tls_broker(tmp_path: Path, pki: dict[str, Path]):  # type: ignore[no-untyped-def]
    d = start_mosquitto(tmp_path / "tls-broker", tls=BrokerTls(pki["ca"], pki["server"], pki["server_key"]))
    yield d
    d.stop()


def _client_ctx(pki: dict[str, Path]) -> ssl.SSLContext:
    return client_context(ca_file=pki["ca"], cert_file=pki["client"], key_file=pki["client_key"])


def test_service_ingests_through_the_tls_listener_with_the_test_ca(
        tmp_path: Path, pki: dict[str, Path], tls_broker: Daemon, influxd: Daemon, influx_db: str,
        database: str) -> None:
    cfg = make_config(tmp_path, tls_broker, influxd, influx_db, database=database,
                      mqtt={"tls": True, "ca_file": str(pki["ca"]), "cert_file": str(pki["client"]),
                            "key_file": str(pki["client_key"])})
    provision(cfg.registry_database())
    sim = FleetSimulator(DEVICES, Scenario("calm"), seed=3)
    t0 = time.time_ns() - 600 * 1_000_000_000
    ups = [u for r in range(3) for u in sim.round(float(r), t0 + r * 1_000_000_000)]
    with running(cfg) as svc:  # waits until the collector is connected and subscribed over TLS
        pub = Publisher("127.0.0.1", tls_broker.port, tls=_client_ctx(pki))  # the simulator, over TLS too
        for u in ups:
            pub.publish(u.topic, u.event)
        assert pub.flush(30)
        pub.close()
        wait_until(lambda: svc.pipeline.stats.readings >= len(ups), 30, "readings over TLS")
    series = influx_query(influxd, influx_db, f'SELECT count("laeq_db") FROM "noise" WHERE time >= {t0}')
    assert series and series[0]["values"][0][1] == len(ups)


def test_a_broker_certificate_from_another_ca_is_refused_with_a_clear_error(
        tmp_path: Path, pki: dict[str, Path]) -> None:
    rogue = start_mosquitto(tmp_path / "rogue", tls=BrokerTls(pki["ca"], pki["rogue"], pki["rogue_key"]))
    try:
        with captured_log("WARNING") as lines:
            consumer = MqttConsumer(host="127.0.0.1", port=rogue.port, client_id="tls-refused", topics=["x/#"],
                                    on_message=lambda m: None, tls=_client_ctx(pki), reconnect_max_s=1.0)
            consumer.start()
            assert not consumer.wait_connected(3), "a certificate from another CA must not be accepted"
            consumer.stop()
            with pytest.raises(ConnectionError, match=r"certificate .* was refused: unable to get local issuer"):
                Publisher("127.0.0.1", rogue.port, tls=_client_ctx(pki))
    finally:
        rogue.stop()
    errors = [e for e in lines if e.startswith("ERROR") and "TLS" in e]
    assert errors and "certificate was refused: unable to get local issuer certificate" in errors[0], lines
    assert "mqtt.ca_file" in errors[0]


def test_a_client_without_a_certificate_is_refused_and_bad_files_are_config_errors(
        tmp_path: Path, pki: dict[str, Path], tls_broker: Daemon) -> None:
    with pytest.raises((ConnectionError, OSError)):
        Publisher("127.0.0.1", tls_broker.port, tls=client_context(ca_file=pki["ca"]))
    ctx = client_context(ca_file=pki["ca"])
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2 and ctx.check_hostname
    with pytest.raises(TlsError, match=r"mqtt\.ca_file"):
        client_context(ca_file=tmp_path / "missing.pem", setting="mqtt")
    with pytest.raises(ConfigError, match=r"mqtt\.cert_file"):
        parse_config({"mqtt": {"tls": True, "cert_file": str(pki["ca"]), "key_file": str(tmp_path / "none.key")}},
                     base_dir=tmp_path, environ={})


def test_mqtt_notifier_publishes_over_tls(pki: dict[str, Path], tls_broker: Daemon) -> None:
    got: list[bytes] = []
    subscribed = threading.Event()
    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="tls-sub")
    sub.tls_set_context(_client_ctx(pki))
    sub.on_connect = lambda c, *a: c.subscribe("urbansense/alerts/#", qos=1)
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.on_message = lambda c, u, m: got.append(m.payload)
    sub.connect("127.0.0.1", tls_broker.port)
    sub.loop_start()
    try:
        assert subscribed.wait(10)
        config = AlertsConfig.model_validate({"receivers": {"bus": {
            "type": "mqtt", "port": tls_broker.port, "tls": True, "ca_file": str(pki["ca"]),
            "cert_file": str(pki["client"]), "key_file": str(pki["client_key"])}}})
        notifier = build_notifiers(config)["bus"]

        async def send() -> None:
            body = {"route": "emergency", "device_id": "WL-1", "status": "firing"}
            await notifier.send(Delivery(id=1, fingerprint="f", seq=1, receiver="bus", body=body, attempts=0))
            await notifier.aclose()

        asyncio.run(send())
        wait_until(lambda: bool(got), 10, "the alert over TLS")
    finally:
        sub.loop_stop()
        sub.disconnect()


def test_the_push_receiver_serves_https_with_a_configured_certificate(pki: dict[str, Path]) -> None:
    async def go() -> tuple[int, str]:
        push = PushReceiver("127.0.0.1", 0, ctwing_token="", onenet_token="", max_body_bytes=4096,
                            tls=server_context(pki["server"], pki["server_key"]))
        await push.start(Sink(put=lambda item: True, put_async=_accept))
        try:
            async with httpx.AsyncClient(verify=client_context(ca_file=pki["ca"])) as http:
                r = await http.get(f"https://127.0.0.1:{push.port}/push/onenet")
            async with httpx.AsyncClient() as http:
                with pytest.raises(httpx.HTTPError):
                    await http.get(f"http://127.0.0.1:{push.port}/push/onenet")
            return r.status_code, r.text
        finally:
            await push.stop()

    assert asyncio.run(go()) == (404, "OneNET push is not configured\n")


async def _accept(item: object) -> bool:
    return True


def test_the_desk_console_serves_https_with_a_configured_certificate_and_a_secure_session_cookie(
        tmp_path: Path, pki: dict[str, Path], mosquitto: Daemon, influxd: Daemon, influx_db: str,
        database: str) -> None:
    cfg = make_config(tmp_path, mosquitto, influxd, influx_db, database=database,
                      alerts={"db_path": str(tmp_path / "alerts.sqlite")},
                      desk={"enabled": True, "port": 0, "users": {"wang": hash_password("rain-desk-2026!")},
                            "cert_file": str(pki["server"]), "key_file": str(pki["server_key"])})
    with running(cfg) as svc:
        assert svc.desk is not None and svc.desk.url.startswith("https://127.0.0.1:")
        with httpx.Client(base_url=svc.desk.url, verify=client_context(ca_file=pki["ca"]),
                          follow_redirects=False) as http:
            assert http.get("/login").status_code == 200
            ok = http.post("/login", data={"user": "wang", "password": "rain-desk-2026!"})
            assert ok.status_code == 303 and "secure" in ok.headers["set-cookie"].lower()
        with pytest.raises(httpx.HTTPError):  # plain HTTP on the TLS port, and another CA, are refused
            httpx.get(svc.desk.url.replace("https", "http") + "login", timeout=5)
        with pytest.raises(httpx.ConnectError):
            httpx.get(svc.desk.url + "login", verify=True, timeout=5)
