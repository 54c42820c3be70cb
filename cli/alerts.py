"""`urbansense alerts …`: list, show, acknowledge and silence alerts, straight from the alerts database.

Works beside the running service (SQLite WAL): an ack or a silence written here is read by the
service at its next check.
"""

from __future__ import annotations

import getpass
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import orjson
import typer
from rich.console import Console
from rich.table import Table

from alerts.config import AlertsConfig
from alerts.describe import describe
from alerts.errors import AlertsError
from alerts.manager import AlertLifecycle
from alerts.matchers import parse_matcher
from alerts.model import AlertRecord
from alerts.silencing import SilencePolicy, check_silence, known_labels
from alerts.store import AlertStore, OutboxRow, Silence
from cli.tables import TextTable, plain
from core.controls import bad_character
from core.database import holds_nothing, is_postgres_url
from core.timing import parse_duration
from rules.loader import check_rules

DB_ENV = "URBANSENSE_ALERTS_DB"
DEFAULT_TZ = "Asia/Shanghai"
DEFAULT_DB = Path("var/alerts.sqlite")
STATES = ("pending", "firing", "acknowledged", "resolved", "inactive")


def parse_duration_s(text: str) -> float:
    """`90m`, `2h`, `1h30m`, `1d` → seconds; anything else is an `AlertsError`."""
    try:
        return parse_duration(text.strip().lower())
    except ValueError:
        raise AlertsError(f"duration {text!r}: expected e.g. 30m, 2h, 1h30m or 1d") from None


_CITY: dict[str, Any] = {"tz": DEFAULT_TZ, "resolve": None}
"""The zone times are shown and read in: the config's `alerts.timezone`, looked up on first use."""


def _zone_name() -> str:
    resolve = _CITY["resolve"]
    if resolve is not None:
        _CITY["resolve"] = None
        _CITY["tz"] = resolve()
    return _CITY["tz"]


def _zone() -> ZoneInfo:
    return ZoneInfo(_zone_name())


def parse_time_ns(text: str) -> int:
    """ISO 8601 (`2026-07-21T14:00`, with or without offset; the city's time zone when none) or `now` → ns."""
    if text.strip().lower() == "now":
        return time.time_ns()
    try:
        dt = datetime.fromisoformat(text.strip())
    except ValueError:
        raise AlertsError(f"time {text!r}: expected ISO 8601 such as 2026-07-21T14:00 or now") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=_zone())
    return int(dt.timestamp() * 1e9)


def _when(ns: int | None) -> str:
    """RFC 3339 in the city's zone, with its offset (`2026-07-21T14:00:00+08:00`); '' for None."""
    return "" if ns is None else datetime.fromtimestamp(ns / 1e9, _zone()).isoformat(timespec="seconds")


def _short(ns: int | None) -> str:
    """`07-21 14:00` in the city's zone, for table cells under a header that names the zone."""
    return "" if ns is None else datetime.fromtimestamp(ns / 1e9, _zone()).strftime("%m-%d %H:%M")


def _num(v: float | None) -> str:
    return "" if v is None else f"{v:g}"


def notification_state(a: AlertRecord, deliveries: dict[str, list[str]]) -> str:
    """What became of the current episode's notifications, truthfully: delivered only when a receiver
    accepted one; an alert no route sends anywhere says so."""
    if a.state == "pending":
        return "pending: nothing is sent before it fires"
    if a.suppressed_by and not a.notified:
        return f"held back: {a.suppressed_by}"
    if not a.receivers and not any(deliveries.values()):
        return "no receiver routed: nobody was told" if a.notified else "not sent"
    parts = []
    if deliveries["delivered"]:
        parts.append(f"delivered to {', '.join(deliveries['delivered'])}")
    if deliveries["queued"]:
        parts.append(f"waiting for {', '.join(deliveries['queued'])}")
    if deliveries["failed"]:
        parts.append(f"given up for {', '.join(deliveries['failed'])}")
    return "; ".join(parts) or "not sent"


def alert_dict(a: AlertRecord, deliveries: dict[str, list[str]] | None = None,
               tz: str | None = None) -> dict[str, Any]:
    """The alert as `--json` gives it: its description in `tz` (default the city's zone), times in the city's zone."""
    deliveries = deliveries or {"delivered": [], "queued": [], "failed": []}
    tz = tz or _zone_name()
    d = describe(a.measured, value=a.value, threshold=a.threshold, eta_s=a.eta_s, time_ns=a.updated_ns,
                 labels=a.labels, kind=a.labels.get("kind", ""), tz=tz)
    return {
        "id": a.id, "fingerprint": a.fingerprint, "rule_id": a.rule_id, "device_id": a.device_id,
        "state": a.display_state, "severity": a.severity, "route": a.route,
        "quantity": d.name, "measured": d.value_text, "threshold_text": d.threshold_text,
        "facts": d.sentence(), "value": a.value, "unit": d.raw_unit,
        # measured, facts and eta_s are the values of the last transition, not the gauge now (the desk shows that)
        "measured_at": _when(a.updated_ns),
        "threshold": a.threshold, "eta_s": a.eta_s, "summary": a.summary, "labels": a.labels,
        "started": _when(a.started_ns), "updated": _when(a.updated_ns), "resolved": _when(a.resolved_ns),
        "acknowledged_by": a.acked_by, "acknowledged_at": _when(a.acked_ns), "ack_comment": a.ack_comment,
        "receivers": a.receivers, "notified": bool(deliveries["delivered"]),
        "notification": notification_state(a, deliveries), "held_back_by": a.suppressed_by,
        "case_id": a.case_id, "case_key": a.case_key, "episode": a.episode,
    }


def _silence_dict(s: Silence, now: int) -> dict[str, Any]:
    return {"id": s.id, "matchers": [str(m) for m in s.matchers], "starts": _when(s.starts_ns),
            "ends": _when(s.ends_ns), "active": s.active(now), "comment": s.comment, "created_by": s.created_by}


def _outbox_dict(o: OutboxRow) -> dict[str, Any]:
    return {"id": o.id, "fingerprint": o.fingerprint, "seq": o.seq, "receiver": o.receiver, "event": o.event,
            "status": o.status, "attempts": o.attempts, "created": _when(o.created_ns),
            "next_attempt": _when(o.next_attempt_ns) if o.status in ("queued", "retrying") else "",
            "delivered": _when(o.delivered_ns), "failed": _when(o.failed_ns), "last_error": o.last_error}


def _table(*columns: str, title: str | None = None) -> Table:
    """Cells wrap instead of being cut, so ids and fingerprints stay whole on narrow terminals."""
    t = TextTable(title=title)
    for c in columns:
        t.add_column(c, overflow="fold")
    return t


def _print_json(data: Any) -> None:
    """One JSON object (a single result)."""
    typer.echo(orjson.dumps(data).decode())


def _print_json_lines(rows: list[dict[str, Any]]) -> None:
    """JSON Lines: one object per line (a listing)."""
    for row in rows:
        typer.echo(orjson.dumps(row).decode())


def _default_silence_policy() -> SilencePolicy:
    """The preset rules' labels and the default longest silence (no config to read)."""
    labels = {k for r in check_rules([], include_presets=True).rules for k, _ in r.labels}
    return SilencePolicy(known_labels(labels), AlertsConfig().max_silence_s)


def register(app: typer.Typer, *, db_path: Callable[[typer.Context], str | Path] | None = None,
             manager: Callable[[typer.Context, AlertStore], AlertLifecycle] | None = None,
             timezone: Callable[[typer.Context], str] | None = None,
             silence_policy: Callable[[typer.Context], SilencePolicy] | None = None) -> None:
    """Add the `alerts` command group to `app`. `db_path` gives the configured database when no
    `--db` or $URBANSENSE_ALERTS_DB is given (default var/alerts.sqlite); `manager` builds the configured
    alert manager, so that an ack also enqueues the case platform's update (the service delivers it);
    `timezone` the city's zone (default Asia/Shanghai), in which times are shown and read and clock times
    in descriptions are given; `silence_policy` the labels alerts can carry and the longest silence (default:
    the preset rules' labels and `[alerts] max_silence_s`'s default)."""
    sub = typer.Typer(help="Alerts: list, show, acknowledge, silence. Times in the city's zone (\\[alerts] "
                           "timezone).\n\nExample: [bold]urbansense alerts list --state firing[/bold]",
                      no_args_is_help=True, rich_markup_mode="rich")
    state: dict[str, Any] = {"db": None, "ctx": None}
    console = Console()

    @sub.callback()
    def _options(
        ctx: typer.Context,
        db: Annotated[str | None, typer.Option(
            envvar=DB_ENV, help="the alert store: a SQLite file, or a postgresql:// URL (best in the environment "
                                "variable, where `ps` does not show its password); default: the config's")] = None,
    ) -> None:
        state["db"] = db
        state["ctx"] = ctx
        _CITY["tz"] = DEFAULT_TZ
        _CITY["resolve"] = (lambda: timezone(ctx)) if timezone is not None else None

    def open_store() -> AlertStore:
        path = state["db"] or (db_path(state["ctx"]) if db_path else DEFAULT_DB)
        if not is_postgres_url(path) and not Path(path).exists():
            raise AlertsError(f"no alerts database at {path} (give --db or set {DB_ENV})")
        return AlertStore(path, migrate_schema=holds_nothing(path, "alerts"))  # the CLI never migrates (qa2 F3)

    def run(fn: Callable[[AlertStore], None]) -> None:
        try:
            store = open_store()
            try:
                fn(store)
            finally:
                store.close()
        except AlertsError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None

    @sub.command("list")
    def list_(
        state_: Annotated[list[str] | None, typer.Option("--state", "-s", help=f"one of {', '.join(STATES)}")] = None,
        limit: Annotated[int, typer.Option(help="at most this many")] = 200,
        as_json: Annotated[bool, typer.Option("--json", help="JSON instead of a table")] = False,
    ) -> None:
        """Alerts, most recently changed first. `--json`: JSON Lines, one alert per line.

        Example: [bold]urbansense alerts list --state firing --state acknowledged[/bold]
        """
        bad = [s for s in state_ or [] if s not in STATES]
        if bad:
            typer.echo(f"error: unknown state {', '.join(bad)} (use {', '.join(STATES)})", err=True)
            raise typer.Exit(2)

        def body(store: AlertStore) -> None:
            alerts = store.list_alerts(state_, limit)
            if as_json:
                _print_json_lines([alert_dict(a, store.deliveries(a.fingerprint, a.started_ns), _zone_name())
                                   for a in alerts])
                return
            t = _table("ID", "STATE", "SEV", "RULE", "DEVICE", "MEASURED / LIMIT (AS OF)", f"SINCE ({_zone_name()})",
                       "NOTE")
            for a in alerts:
                note = f"ack {a.acked_by}" if a.acked_by and a.state == "firing" else (a.suppressed_by or "")
                d = describe(a.measured, value=a.value, threshold=a.threshold, eta_s=a.eta_s,
                             time_ns=a.updated_ns, labels=a.labels, kind=a.labels.get("kind", ""), tz=_zone_name())
                t.add_row(str(a.id), a.display_state, a.severity, a.rule_id, a.device_id,
                          f"{d.name} {d.value_text} / {d.threshold_text} (as of {_short(a.updated_ns)})",
                          _short(a.started_ns), note)
            console.print(t)
        run(body)

    @sub.command()
    def show(
        ref: Annotated[str, typer.Argument(help="alert id or fingerprint")],
        as_json: Annotated[bool, typer.Option("--json", help="JSON instead of text")] = False,
    ) -> None:
        """One alert with its history, its notifications and its cases. `--json`: one object.

        Example: [bold]urbansense alerts show 42[/bold]
        """
        def body(store: AlertStore) -> None:
            a = store.find(ref)
            history = [{"time": _when(h.time_ns), "from": h.from_state, "to": h.to_state, "severity": h.severity,
                        "value": h.value, "event": h.event, "seq": h.seq, "receivers": list(h.receivers),
                        "note": h.note} for h in store.history(a.fingerprint)]
            outbox = [_outbox_dict(o) for o in store.outbox(a.fingerprint)]
            cases = store.cases(a.fingerprint)
            info = alert_dict(a, store.deliveries(a.fingerprint, a.started_ns), _zone_name())
            if as_json:
                _print_json({"alert": info, "history": history, "notifications": outbox, "cases": cases})
                return
            for k, v in info.items():
                if v not in (None, "", [], {}):
                    console.print(f"[bold]{k}[/bold]: {plain(v)}", highlight=False)
            t = _table("TIME", "FROM", "TO", "SEV", "VALUE", "EVENT", "SEQ", "RECEIVERS", "NOTE", title="history")
            for h in history:
                t.add_row(h["time"], h["from"], h["to"], h["severity"], _num(h["value"]), h["event"] or "",
                          str(h["seq"] or ""), ",".join(h["receivers"]), h["note"])
            console.print(t)
            o = _table("ID", "SEQ", "RECEIVER", "EVENT", "STATUS", "TRIES", "DELIVERED", "ERROR",
                       title="notifications")
            for row in outbox:
                o.add_row(str(row["id"]), str(row["seq"]), row["receiver"], row["event"], row["status"],
                          str(row["attempts"]), row["delivered"], (row["last_error"] or "")[:80])
            console.print(o)
        run(body)

    @sub.command()
    def ack(
        ref: Annotated[str, typer.Argument(help="alert id or fingerprint")],
        by: Annotated[str, typer.Option(help="a note (on whose behalf); the OS user is recorded as the actor")] = "",
        comment: Annotated[str, typer.Option(help="what is being done")] = "",
    ) -> None:
        """Acknowledge a firing alert: it is no longer repeated until it resolves or escalates.

        Example: [bold]urbansense alerts ack 42 --by li.na --comment "crew on the way"[/bold]
        """
        def body(store: AlertStore) -> None:
            user, note = getpass.getuser(), _with_note(comment, by)  # the OS user is the actor
            if manager is not None:  # with the configured receivers: the open case hears of it too
                a = manager(state["ctx"], store).ack(ref, user, note)
            else:
                a = store.ack(ref, user, note, time.time_ns())
            store.add_audit(time.time_ns(), user, "ack", f"{a.rule_id} {a.device_id} ({a.fingerprint})", note)
            typer.echo(f"acknowledged alert {a.id} ({a.rule_id} on {a.device_id}) as {a.acked_by}")
        run(body)

    @sub.command()
    def silence(
        match: Annotated[list[str], typer.Option("--match", "-m", help="label matcher k=v, k!=v, k=~re, k!~re")],
        comment: Annotated[str, typer.Option(help="why (required)")],
        start: Annotated[str, typer.Option(help="ISO time or now")] = "now",
        end: Annotated[str | None, typer.Option(help="ISO end time")] = None,
        for_: Annotated[str | None, typer.Option("--for", help="duration, e.g. 2h")] = None,
        by: Annotated[str, typer.Option(help="a note (on whose behalf); the OS user is recorded as the actor")] = "",
        any_label: Annotated[bool, typer.Option(
            "--any-label", help="accept a matcher on a label no rule or device has yet (one a rule file about to "
                                "be deployed adds); without it such a matcher is refused as a likely misspelling")
        ] = False,
    ) -> None:
        """Hold back notifications of matching alerts for a while (state is still tracked).

        Times without an offset are in the city's zone. A matcher on a label no rule or device has (a
        misspelt `devcie_id`) and a silence longer than \\[alerts] max_silence_s (default 7 days) are refused.
        Example: [bold]urbansense alerts silence -m district=朝阳 --for 2h --comment "festival"[/bold]
        """
        def body(store: AlertStore) -> None:
            if (end is None) == (for_ is None):
                raise AlertsError("give exactly one of --end and --for")
            matchers = [parse_matcher(m) for m in match]
            starts = parse_time_ns(start)
            ends = parse_time_ns(end) if end else starts + int(parse_duration_s(for_ or "") * 1e9)
            policy = silence_policy(state["ctx"]) if silence_policy is not None else _default_silence_policy()
            if any_label:
                policy = SilencePolicy(None, policy.max_s)
            check_silence(matchers, starts, ends, policy)
            sid = store.add_silence(matchers, starts, ends, _with_note(comment, by), getpass.getuser(),
                                    time.time_ns())
            typer.echo(f"silence {sid}: {' '.join(map(str, matchers))} until {_when(ends)}")
        run(body)

    @sub.command()
    def silences(
        all_: Annotated[bool, typer.Option("--all", help="also expired and future ones")] = False,
        as_json: Annotated[bool, typer.Option("--json", help="JSON instead of a table")] = False,
    ) -> None:
        """Silences (active ones unless --all). `--json`: JSON Lines, one silence per line.

        Example: [bold]urbansense alerts silences --all[/bold]
        """
        def body(store: AlertStore) -> None:
            now = time.time_ns()
            rows = [_silence_dict(s, now) for s in store.silences(None if all_ else now)]
            if as_json:
                _print_json_lines(rows)
                return
            t = _table("ID", "MATCHERS", "STARTS", "ENDS", "ACTIVE", "BY", "COMMENT")
            for s in rows:
                t.add_row(str(s["id"]), " ".join(s["matchers"]), s["starts"], s["ends"], "yes" if s["active"] else "",
                          s["created_by"], s["comment"])
            console.print(t)
        run(body)

    @sub.command("expire-silence")
    def expire_silence(silence_id: Annotated[int, typer.Argument(help="silence id")]) -> None:
        """End a silence now.

        Example: [bold]urbansense alerts expire-silence 3[/bold]
        """
        def body(store: AlertStore) -> None:
            store.expire_silence(silence_id, time.time_ns())
            typer.echo(f"silence {silence_id} expired")
        run(body)

    @sub.command()
    def outbox(
        status: Annotated[str | None, typer.Option(help="queued, delivered or failed")] = None,
        limit: Annotated[int, typer.Option(help="at most this many")] = 200,
        as_json: Annotated[bool, typer.Option("--json", help="JSON instead of a table")] = False,
    ) -> None:
        """Notifications waiting, delivered or refused, with the receiver's last error. `--json`: JSON Lines.

        Example: [bold]urbansense alerts outbox --status failed[/bold]
        """
        if status not in (None, "queued", "delivered", "failed"):
            typer.echo("error: --status is queued, delivered or failed", err=True)
            raise typer.Exit(2)

        def body(store: AlertStore) -> None:
            rows = [_outbox_dict(o) for o in store.outbox(status=status, limit=limit)]
            if as_json:
                _print_json_lines(rows)
                return
            t = _table("ID", "FINGERPRINT", "SEQ", "RECEIVER", "EVENT", "STATUS", "TRIES", "NEXT", "ERROR")
            for r in rows:
                t.add_row(str(r["id"]), r["fingerprint"], str(r["seq"]), r["receiver"], r["event"], r["status"],
                          str(r["attempts"]), r["next_attempt"], (r["last_error"] or "")[:80])
            console.print(t)
        run(body)

    app.add_typer(sub, name="alerts")


def _with_note(comment: str, by: str) -> str:
    """`--by` is never the actor (that is the OS user): it is kept as a note in the comment.
    AlertsError for a control or format character in either (as the desk console refuses them)."""
    for option, text in (("--comment", comment), ("--by", by)):
        bad = bad_character(text, allow="\n")
        if bad:
            raise AlertsError(f"{option} holds {bad}: type plain text")
    return f"{comment} [--by {by}]".strip() if by else comment
