"""The `Uplink`: what every collector hands to the pipeline, whatever the transport."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True, frozen=True)
class Uplink:
    """One message from one device, normalised; knows nothing of device models.

    `device_key` is a LoRaWAN DevEUI (16 lowercase hex digits), an NB-IoT IMEI
    (15 digits) or a Modbus `host:port/unit`. `time_ns` is the uplink's own time
    (network server or gateway time, else receive time) in ns since the epoch:
    it becomes the point's time, so a redelivered uplink overwrites itself.
    """

    device_key: str
    payload: bytes
    port: int
    time_ns: int
    source: str
    received_ns: int = 0
    fcnt: int | None = None
    rssi_dbm: float | None = None
    snr_db: float | None = None
    gateway_ids: tuple[str, ...] = field(default=())
    dedup_id: str | None = None


class EnvelopeError(ValueError):
    """A transport message that cannot become an `Uplink` (bad JSON, bad base64, missing key).

    `reason` is a short stable label used for metrics and the dead-letter store.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
