"""What would the service do with these messages? The logic of `urbansense trace FILE` (cli/trace.py).

Each input line is a JSON object: `topic`, `payload` (the message body as a JSON object, or
base64 of the raw bytes), `received` (RFC 3339 broker receive time, required: without it an old
message would be judged against today) and optional `source` (`lorawan` for LoRaWAN network
servers, the default; `nbiot-udp`, `ctwing`, `onenet`). A file may also be one JSON document (an
object or an array of objects, pretty-printed as a console shows it); a UTF-8 byte-order mark is
taken off.
The messages go, in order, through the very `Pipeline` the service runs (same envelope parsers,
registry, time policy, duplicate window, decoders), built by `service.app.make_pipeline`.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import IO, Any

import orjson

from collectors.nbiot.frame import parse_frame, to_uplink
from collectors.nbiot.platforms import onenet_parts, parse_ctwing, parse_onenet_msg
from core.reading import Reading
from core.rejected import Rejected
from core.rfc3339 import format_rfc3339_ns, parse_rfc3339_ns
from core.uplink import Incoming, Uplink
from provisioning.view import RegistryView
from service.app import make_pipeline, open_influx
from service.config import Config
from service.metrics import Metrics
from service.pipeline import ChunkResult, Pipeline
from storage.deadletter import DeadLetterStore
from storage.writer import BatchWriter


class InputError(ValueError):
    """An input line that is not a message (bad JSON, missing topic, bad base64 or time)."""


def parse_line(line: bytes, now_ns: int | None) -> Incoming:
    """One JSON Lines record as the `Incoming` a collector would have handed over.

    `now_ns` stands in for a missing `received`; None makes a missing `received` an `InputError`.
    """
    try:
        doc = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise InputError(f"not JSON: {exc}") from None
    return parse_record(doc, now_ns)


def parse_record(doc: object, now_ns: int | None) -> Incoming:
    """One decoded record (see `parse_line`)."""
    if not isinstance(doc, dict):
        raise InputError("a line must be a JSON object with topic, payload, received")
    topic = doc.get("topic")
    if not isinstance(topic, str):
        raise InputError("topic (a string) is missing")
    payload = doc.get("payload")
    if isinstance(payload, dict | list):
        body = orjson.dumps(payload)
    elif isinstance(payload, str):
        try:
            body = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InputError(f"payload is a string but not base64 ({exc}); give a JSON object or base64") from None
    else:
        raise InputError("payload (a JSON object or a base64 string) is missing")
    received = doc.get("received")
    if received is None:
        if now_ns is None:
            raise InputError("received (the broker's RFC 3339 receive time, e.g. the console's event time) "
                             "is missing")
        received_ns = now_ns
    else:
        try:
            received_ns = parse_rfc3339_ns(str(received))
        except ValueError as exc:
            raise InputError(f"received: {exc}") from None
    source = doc.get("source", "lorawan")
    if not isinstance(source, str):
        raise InputError("source must be a string")
    parse = COLLECTOR_PARSED.get(source)
    if parse is None:
        return Incoming(source, topic, body, received_ns)  # the pipeline parses it (LoRaWAN)
    try:
        return Incoming(source, topic, body, received_ns, uplink=parse(body, received_ns))
    except Rejected as exc:
        return Incoming(source, topic, body, received_ns, rejected=exc)


def _udp(body: bytes, received_ns: int) -> Uplink:
    return to_uplink(parse_frame(body), "nbiot-udp", received_ns)


def _one(uplinks: list[Uplink], what: str) -> Uplink:
    if len(uplinks) != 1:
        raise Rejected("bad_envelope", f"{what} holds {len(uplinks)} data messages; trace one per line")
    return uplinks[0]


COLLECTOR_PARSED: dict[str, Callable[[bytes, int], Uplink]] = {
    "nbiot-udp": _udp,
    "nbiot-coap": _udp,
    "ctwing": lambda body, t: _one(parse_ctwing(body, t), "the CTWing push"),
    "onenet": lambda body, t: _one(parse_onenet_msg(onenet_parts(body)[0], t), "the OneNET push"),
}
"""Sources whose collectors parse the message themselves (as they do in the service; no signature check here)."""


def reading_json(r: Reading) -> dict[str, Any]:
    return {"device_id": r.device_id, "measurement": r.kind, "time": format_rfc3339_ns(r.time_ns),
            "time_ns": r.time_ns, "time_source": r.health.get("time_source"), "fields": r.fields,
            "history": r.history}


def outcome_json(n: int, msg: Incoming, result: ChunkResult) -> dict[str, Any]:
    out: dict[str, Any] = {"line": n, "topic": msg.topic}
    if result.dead:
        d = result.dead[0]
        out["dead_letter"] = {"reason": d.reason, "detail": d.detail}
    elif result.skipped:
        reason, detail = result.skipped[0]
        out["skipped"] = {"reason": reason, "detail": detail}
    else:
        out["readings"] = [reading_json(r) for r in result.readings]
    return out


def records(data: bytes) -> list[tuple[int, object]]:
    """(line number, record) of a file: JSON Lines, or one JSON document (an object or an array of
    objects) as a console shows it. A record that is not JSON stays bytes, for `parse_line` to refuse."""
    data = data.removeprefix(b"\xef\xbb\xbf")
    lines = data.splitlines()
    if len([ln for ln in lines if ln.strip()]) > 1:
        try:
            whole = orjson.loads(data)
        except orjson.JSONDecodeError:
            whole = None
        if isinstance(whole, dict):
            return [(1, whole)]
        if isinstance(whole, list):
            return [(i, doc) for i, doc in enumerate(whole, 1)]
    return [(n, raw) for n, raw in enumerate(lines, 1) if raw.strip()]


async def trace(cfg: Config, lines: IO[bytes], out: IO[str], *, write: bool = False) -> int:
    """Run every line through the service's pipeline; 0, or 1 when some lines were not messages."""
    view = RegistryView(cfg.registry_database(), migrate_schema=cfg.database.migrate_on_start)
    metrics = Metrics()
    influx = writer = deadletters = None
    if write:
        influx = await open_influx(cfg)
        writer = BatchWriter(influx, batch_size=cfg.influxdb.batch_size, flush_interval_s=cfg.influxdb.flush_interval_s)
        deadletters = DeadLetterStore(cfg.dead_letter_database(), migrate_schema=cfg.database.migrate_on_start)
    pipeline: Pipeline = make_pipeline(cfg, view=view, writer=writer, deadletters=deadletters,  # type: ignore[arg-type]
                                       metrics=metrics)
    code = 0
    try:
        for n, record in records(lines.read()):
            try:
                msg = parse_line(record, None) if isinstance(record, bytes) else parse_record(record, None)
            except InputError as exc:
                out.write(orjson.dumps({"line": n, "input_error": str(exc)}).decode() + "\n")
                code = 1
                continue
            result = pipeline.process_chunk([msg])
            out.write(orjson.dumps(outcome_json(n, msg, result), option=orjson.OPT_NON_STR_KEYS).decode() + "\n")
            if write:
                await pipeline.hand_off(1, result)
    finally:
        if writer is not None:
            await writer.close(timeout=30)
        if influx is not None:
            await influx.aclose()
        if deadletters is not None:
            deadletters.close()
        view.close()
    return code
