"""`urbansense deadletter list|show|replay`: inspect refused messages and send them through the pipeline again."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
import time
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo

import typer
from sqlalchemy.exc import SQLAlchemyError

from cli.state import database_exit_code, state
from collectors.lorawan.collector import SOURCE as LORAWAN_SOURCE
from core.controls import printable
from core.database import DatabaseError, describe_url, holds_nothing
from core.secrets import reveal
from core.timing import parse_duration
from sim.simulator import Publisher
from storage.deadletter import DeadLetter, DeadLetterStore

REPLAYABLE_SOURCES = (LORAWAN_SOURCE, "mqtt")
"""Dead letters that came over MQTT and can be published again (`mqtt` is what older versions called LoRaWAN)."""

deadletter_app = typer.Typer(
    help="Messages the service refused (bad envelope, unknown device, undecodable payload, refused by InfluxDB).\n\n"
         "Example: [bold]urbansense deadletter list --reason unknown_device[/bold]",
    no_args_is_help=True, rich_markup_mode="rich")

_ZONE = {"name": "Asia/Shanghai"}
"""The city's time zone (`alerts.timezone` of the config): times are shown and read in it."""


def _since_ns(value: str | None) -> int | None:
    """`30m`, `2h`, `7d` ago, or an ISO 8601 time (the city's time zone when it has no offset)."""
    if value is None:
        return None
    with contextlib.suppress(ValueError):
        return time.time_ns() - int(parse_duration(value) * 1e9)
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is neither a duration like 30m, 2h, 7d nor an ISO 8601 time",
                                 param_hint="--since") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=ZoneInfo(_ZONE["name"]))
    return int(when.timestamp() * 1e9)


def _store(ctx: typer.Context) -> DeadLetterStore:
    cfg = state(ctx).config
    _ZONE["name"] = cfg.alerts.timezone
    where = cfg.dead_letter_database()
    if isinstance(where, Path) and not where.exists():
        typer.secho(f"no dead-letter store at {where} (nothing refused yet, or another config)", fg="yellow", err=True)
        raise typer.Exit(1)
    try:
        return DeadLetterStore(where, migrate_schema=holds_nothing(where, "dead_letters"))
    except (SQLAlchemyError, DatabaseError) as exc:
        detail = getattr(exc, "orig", None) or exc  # the driver's words, never the URL's password
        typer.secho(f"error: cannot open the dead letters in {describe_url(where)}: {detail}", fg="red", err=True)
        raise typer.Exit(database_exit_code(exc)) from None


def _time(ns: int | None) -> str:
    if ns is None:
        return "-"
    return dt.datetime.fromtimestamp(ns / 1e9, ZoneInfo(_ZONE["name"])).isoformat(timespec="milliseconds")


_PATH_TOKEN = re.compile(r"(/push/ctwing/)(?!\{token\})[^/?\s]+")


def _shown_topic(topic: str) -> str:
    """The topic with a CTWing path token masked (rows stored before tokens were kept out of topics)."""
    return _PATH_TOKEN.sub(r"\1{token}", topic)


def _as_dict(d: DeadLetter, payload: bool = False) -> dict:
    out = {"id": d.id, "time": _time(d.time_ns), "source": d.source, "topic": _shown_topic(d.topic),
           "reason": d.reason,
           "detail": d.detail, "device_key": d.device_key, "bytes": len(d.payload),
           "replayed": _time(d.replayed_ns) if d.replayed_ns else None}
    if payload:
        out["payload_hex"] = d.payload.hex()
        out["payload_text"] = d.payload.decode("utf-8", "replace")
    return out


@deadletter_app.command("list")
def list_(ctx: typer.Context,
          reason: Annotated[str | None, typer.Option(help="only this reason, e.g. unknown_device")] = None,
          since: Annotated[str | None, typer.Option(help="only newer than this: 30m, 2h, 7d or an ISO time")] = None,
          limit: Annotated[int, typer.Option(min=1, help="at most this many, newest first")] = 50,
          pending: Annotated[bool, typer.Option("--pending", help="only those not replayed yet")] = False,
          as_json: Annotated[bool, typer.Option("--json", help="one JSON object per line")] = False) -> None:
    """List dead letters, newest first, with a count per reason.

    Example: [bold]urbansense deadletter list --reason decode_error --since 2h[/bold]
    """
    with _store(ctx) as store:
        letters = store.list(limit=limit, reason=reason, since_ns=_since_ns(since),
                             replayed=False if pending else None)
        counts = store.count_by_reason()
    if as_json:
        for d in letters:
            typer.echo(json.dumps(_as_dict(d), ensure_ascii=False))
        return
    for d in letters:
        mark = " (replayed)" if d.replayed_ns else ""
        typer.echo(printable(f"{d.id:>7}  {_time(d.time_ns)}  {d.reason:<16} {d.source:<9} {_shown_topic(d.topic)}  "
                             f"{d.detail[:100]}{mark}"))
    typer.echo(f"{len(letters)} shown; in store: " + (", ".join(f"{k} {v}" for k, v in counts.items()) or "none"))


@deadletter_app.command()
def show(ctx: typer.Context, id: Annotated[int, typer.Argument(help="dead letter id (from `list`)")],
         as_json: Annotated[bool, typer.Option("--json", help="as one JSON object")] = False) -> None:
    """Show one dead letter in full: why it was refused and its raw bytes as hex and as text.

    Example: [bold]urbansense deadletter show 42[/bold]
    """
    with _store(ctx) as store:
        d = store.get(id)
    if d is None:
        typer.secho(f"no dead letter with id {id}", fg="red", err=True)
        raise typer.Exit(1)
    info = _as_dict(d, payload=True)
    if as_json:
        typer.echo(json.dumps(info, ensure_ascii=False))
        return
    for key in ("id", "time", "source", "topic", "reason", "detail", "device_key", "bytes", "replayed"):
        typer.echo(printable(f"{key + ':':<12}{info[key]}"))
    typer.echo("payload (hex):")
    hx = d.payload.hex()
    for i in range(0, len(hx), 64):
        typer.echo("  " + " ".join(hx[j:j + 2] for j in range(i, min(i + 64, len(hx)), 2)))
    typer.echo("payload (text):")
    typer.echo("  " + printable(info["payload_text"]))


@deadletter_app.command()
def replay(ctx: typer.Context,
           id: Annotated[list[int] | None, typer.Option("--id", help="this dead letter (repeatable)")] = None,
           reason: Annotated[str | None, typer.Option(help="every pending dead letter with this reason")] = None,
           all_: Annotated[bool, typer.Option("--all", help="every pending dead letter")] = False,
           limit: Annotated[int, typer.Option(min=1, help="at most this many")] = 100_000) -> None:
    """Publish refused MQTT messages to the broker again (same topic, QoS 1), then mark them replayed.

    Fix the cause first (register the device, fix the codec); the running service then takes them like new uplinks.

    Dead letters that did not come over MQTT (e.g. points InfluxDB refused) are listed and left alone.

    Example: [bold]urbansense device add ... && urbansense deadletter replay --reason unknown_device[/bold]
    """
    if not (id or reason or all_):
        raise typer.BadParameter("say which: --id N (repeatable), --reason R or --all")
    cfg = state(ctx).config
    with _store(ctx) as store:
        if id:
            chosen = [d for i in id if (d := store.get(i)) is not None]
            missing = sorted(set(id) - {d.id for d in chosen})
            if missing:
                typer.secho(f"no dead letter with id {', '.join(map(str, missing))}", fg="red", err=True)
                raise typer.Exit(1)
        else:
            chosen = store.list(limit=limit, reason=reason, replayed=False)
            chosen.reverse()  # oldest first, as they first arrived
        mqtt = [d for d in chosen if d.source in REPLAYABLE_SOURCES and d.topic]
        others = [d for d in chosen if d not in mqtt]
        for d in others:
            typer.echo(f"skipped {d.id}: source {d.source!r} is not MQTT ({d.reason})")
        if not mqtt:
            typer.echo("nothing to replay")
            return
        m = cfg.mqtt
        try:
            pub = Publisher(m.host, m.port, username=m.username or None, password=reveal(m.password) or None,
                            client_id=f"{m.client_id}-replay", tls=cfg.mqtt_tls())
        except (ConnectionError, OSError) as exc:
            typer.secho(f"cannot reach the broker at {m.host}:{m.port}: {exc}", fg="red", err=True)
            raise typer.Exit(1) from None
        for d in mqtt:
            pub.publish(d.topic, d.payload)
        if not pub.flush(60):
            typer.secho("the broker did not acknowledge every message in 60 s; none marked replayed",
                        fg="red", err=True)
            raise typer.Exit(1)
        pub.close()
        store.mark_replayed([d.id for d in mqtt if d.id is not None])
    typer.echo(f"replayed {len(mqtt)} message(s) to {m.host}:{m.port}" +
               (f"; skipped {len(others)} not from MQTT" if others else ""))


def register(app: typer.Typer) -> None:
    app.add_typer(deadletter_app, name="deadletter")
