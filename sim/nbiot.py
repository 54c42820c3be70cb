"""Simulated NB-IoT devices: frames as the devices send them over UDP, and CTWing / OneNET pushes.

Generation is pure and deterministic for a seed (the fields come from `FleetSimulator`'s
scenario); `UdpPlayer` only moves datagrams and counts the acks that come back.
"""

from __future__ import annotations

import base64
import socket
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

import orjson

from collectors.nbiot.frame import build_frame
from collectors.nbiot.platforms import onenet_signature
from core.device import Device
from core.secrets import reveal
from core.uplink import Uplink
from decoders import decode_uplink, get_model
from service.config import Config
from sim.simulator import FleetSimulator, Scenario


@dataclass(slots=True)
class SimFrame:
    """One simulated NB-IoT report: the frame bytes and what InfluxDB must end up holding."""

    device: Device
    frame: bytes
    time_ns: int
    seq: int
    expected: dict[str, float | int | bool]


def is_nbiot(device: Device) -> bool:
    return (len(device.key) == 15 and device.key.isdigit() and device.status != "retired"
            and getattr(get_model(device.model).codec, "transport", "") == "nbiot")


class NbiotSimulator:
    """Frames for the NB-IoT devices (15-digit IMEI keys, NB-IoT models) following a scenario."""

    def __init__(self, devices: Iterable[Device], scenario: Scenario, *, seed: int = 1) -> None:
        self.devices = [d for d in devices if is_nbiot(d)]
        self._fields = FleetSimulator([], scenario, seed=seed)
        self.seq: dict[str, int] = {}

    def frame(self, device: Device, t_s: float, time_s: int) -> SimFrame:
        """A report at scenario time `t_s` stamped with device time `time_s` (Unix seconds)."""
        info = get_model(device.model)
        sent = self._fields.fields_for(device, t_s)
        payload, msg_type = info.codec.encode(sent)
        expected = decode_uplink(device, Uplink(device.key, payload, msg_type, time_s * 1_000_000_000,
                                                "simulator")).reading.fields
        seq = (self.seq.get(device.id, -1) + 1) & 0xFFFF
        self.seq[device.id] = seq
        frame = build_frame(device.key, msg_type, seq, payload, device_time_s=time_s,
                            ack_requested=bool(getattr(info.codec, "ack_requested", False)))
        return SimFrame(device, frame, time_s * 1_000_000_000, seq, dict(expected))

    def round(self, t_s: float, time_s: int) -> list[SimFrame]:
        return [self.frame(d, t_s, time_s) for d in self.devices]


def ctwing_push(imei: str, app_data: bytes, timestamp_ms: int, *, product_id: str = "15044001") -> bytes:
    """A CTWing/AEP `dataReport` subscription push as the platform POSTs it (transparent payload)."""
    return orjson.dumps({
        "upPacketSN": -1, "upDataSN": -1, "topic": "v1/up/ad", "timestamp": timestamp_ms,
        "tenantId": "2000000001", "serviceId": "", "protocol": "lwm2m", "productId": product_id,
        "messageType": "dataReport", "deviceType": "", "deviceId": uuid.uuid5(uuid.NAMESPACE_OID, imei).hex,
        "assocAssetId": "", "IMSI": "undefined", "IMEI": imei,
        "payload": {"APPdata": base64.b64encode(app_data).decode()},
    })


def ctwing_push_decoded(imei: str, properties: dict, timestamp_ms: int) -> bytes:
    """The same push for a product whose profile the platform already decoded."""
    doc = orjson.loads(ctwing_push(imei, b"", timestamp_ms))
    doc["payload"] = {"serviceId": "data_report", **properties}
    return orjson.dumps(doc)


def onenet_push(token: str, imei: str, value: bytes, at_ms: int, *, nonce: str = "abcdefgh") -> bytes:
    """A OneNET (NB-IoT platform) data push: `msg` with the opaque resource value in hex, signed."""
    msg = orjson.dumps({"at": at_ms, "imei": imei, "type": 1, "ds_id": "3300_0_5750",
                        "value": value.hex(), "dev_id": 504920000}).decode()
    return orjson.dumps({"msg": msg, "nonce": nonce, "signature": onenet_signature(token, nonce, msg)})


class UdpPlayer:
    """Sends frames from one UDP socket (as a fleet behind the operator's NAT would) and counts acks."""

    def __init__(self, host: str, port: int) -> None:
        self.addr = (host, port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sent = 0

    def send(self, data: bytes) -> None:
        self.sock.sendto(data, self.addr)
        self.sent += 1

    def acks(self, timeout: float) -> list[bytes]:
        """Datagrams received back within `timeout` of silence."""
        out = []
        self.sock.settimeout(timeout)
        while True:
            try:
                out.append(self.sock.recv(2048))
            except TimeoutError:
                return out

    def close(self) -> None:
        self.sock.close()


TRANSPORTS = ("nbiot-udp", "ctwing")


def run_nbiot(cfg: Config, devices: list[Device], scenario: Scenario, *, transport: str, rate: float,
              duration_s: float, seed: int = 1) -> tuple[int, str]:
    """`urbansense simulate --transport nbiot-udp|ctwing`: play the NB-IoT devices; (exit code, message)."""
    import time

    import httpx

    sim = NbiotSimulator(devices, scenario, seed=seed)
    if not sim.devices:
        return 1, ("[red]error:[/red] the registry has no NB-IoT devices (15-digit IMEI key, an NB-IoT model such "
                   "as generic-nb-wl) to simulate")
    nb = cfg.nbiot
    if transport == "ctwing" and not nb.ctwing_token:
        return 2, "[red]error:[/red] nbiot.ctwing_token is not set (config or URBANSENSE_CTWING_TOKEN)"
    player = UdpPlayer(nb.udp_host if nb.udp_host not in ("0.0.0.0", "::") else "127.0.0.1", nb.udp_port)
    http = httpx.Client(timeout=30)
    url = f"http://{nb.push_host}:{nb.push_port}/push/ctwing/{reveal(nb.ctwing_token)}"
    start, sent, failed = time.monotonic(), 0, 0
    try:
        while time.monotonic() - start < duration_s:
            for dev in sim.devices:
                elapsed = time.monotonic() - start
                if elapsed >= duration_s:
                    break
                f = sim.frame(dev, elapsed, int(time.time()))
                if transport == "nbiot-udp":
                    player.send(f.frame)
                else:
                    r = http.post(url, content=ctwing_push(dev.key, f.frame, f.time_ns // 1_000_000))
                    failed += r.status_code != 200
                sent += 1
                ahead = sent / rate - (time.monotonic() - start)
                if ahead > 0:
                    time.sleep(ahead)
    except KeyboardInterrupt:
        pass
    except httpx.HTTPError as exc:
        return 1, f"[red]error:[/red] CTWing push to {nb.push_host}:{nb.push_port} failed: {exc}"
    finally:
        player.close()
        http.close()
    refused = f", {failed} refused" if failed else ""
    return (1 if failed else 0), f"sent {sent} {transport} reports from {len(sim.devices)} devices{refused}"
