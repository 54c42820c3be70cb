"""`urbansense report`: the bureau's figures for a date range, printed and written as CSV/xlsx."""

from __future__ import annotations

import asyncio
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo

import typer
from rich.console import Console
from rich.table import Table

from cli.state import state
from cli.tables import TextTable, plain
from core.database import holds_nothing
from core.districts import matching_districts, no_match_note
from core.kinds import KIND_NAMES as KINDS
from core.secrets import reveal
from provisioning.registry import Registry
from report.export import write_csv, write_xlsx
from report.figures import Figures, clip_to_now
from report.gather import gather
from service.config import Config
from storage.influx import InfluxClient

console = Console()


def parse_when(text: str, tz: str) -> int:
    """`2026-11-29` (local midnight in `tz`) or an ISO date-time (local when it has no offset) → ns."""
    try:
        if len(text) == 10:
            dt = datetime.combine(date.fromisoformat(text), datetime.min.time())
        else:
            dt = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a date (2026-11-29) or date-time (2026-11-29T08:00)") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=ZoneInfo(tz))
    return int(dt.timestamp()) * 1_000_000_000 + dt.microsecond * 1000


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{v * 100:.2f} %"


def table(figures: list[Figures], title: str) -> Table:
    t = TextTable(title=title)
    for col in ("district 区", "kind 类型", "devices 设备", "online 在线率", "accuracy 准确率",
                "alerts opened/closed 告警", "cases opened/closed 案件", "median to close 中位处置时长"):
        t.add_column(col, overflow="fold")
    for f in figures:
        median = "—" if f.median_close_s is None else str(timedelta(seconds=round(f.median_close_s)))
        t.add_row(f.district or "-", f.kind, str(f.devices),
                  f"{_pct(f.online_rate)} ({f.reports}/{f.expected_reports:g})",
                  f"{_pct(f.accuracy_rate)} ({f.good_readings}/{f.readings})",
                  f"{f.alerts_opened}/{f.alerts_closed}", f"{f.cases_opened}/{f.cases_closed}", median)
    return t


async def run_report(cfg: Config, from_ns: int, to_ns: int, district: str | None, kind: str | None) -> list[Figures]:
    ic = cfg.influxdb
    with Registry(where := cfg.registry_database(), migrate_schema=holds_nothing(where, "devices")) as reg:
        devices = reg.all()
    district = _one_district(district, [d.district for d in devices])
    async with InfluxClient(reveal(ic.url), ic.database, username=ic.username or None,
                            password=reveal(ic.password) or None, token=reveal(ic.token) or None,
                            retention_policy=ic.retention_policy or None, timeout=ic.timeout_s,
                            verify=cfg.influx_verify()) as client:
        return await gather(client, devices, cfg.alerts_database(), from_ns, to_ns,
                            district=district, kind=kind)


def _one_district(query: str | None, known: list[str]) -> str | None:
    """The registry's district name `query` matches (`core.districts`: 朝阳 → 朝阳区); a note on stderr when it
    matches none (the query is kept: nothing will be counted), ValueError when it matches several."""
    if query is None:
        return None
    names = matching_districts(query, known)
    if len(names) > 1:
        raise ValueError(f"--district {query!r} matches {', '.join(names)}: give one of them")
    if not names:
        Console(stderr=True, soft_wrap=True).print(f"[yellow]note:[/] {plain(no_match_note(query, known))}",
                                                   highlight=False)
        return query
    return names[0]


def register(app: typer.Typer) -> None:
    @app.command("report")
    def report(ctx: typer.Context,
               from_: Annotated[str, typer.Option("--from", help="first day (2026-11-01) or date-time, local time")],
               to: Annotated[str, typer.Option("--to", help="end, exclusive: the day after the last one")],
               district: Annotated[str | None, typer.Option(
                   help="only this district: its name or part of it, e.g. 朝阳 for 朝阳区")] = None,
               kind: Annotated[str | None, typer.Option(help=f"only this kind: {', '.join(KINDS)}")] = None,
               csv: Annotated[Path | None, typer.Option(help="also write the figures to this CSV file")] = None,
               xlsx: Annotated[Path | None, typer.Option(help="also write the figures to this Excel file")] = None,
               ) -> None:
        """The bureau's figures per district and kind: devices, online rate, data accuracy, alerts, cases.

        Example: `urbansense report --from 2026-11-01 --to 2026-12-01 --district 朝阳区 --xlsx nov.xlsx`
        (November, local time). Online rate: share of each device's expected reports (one per
        expected interval) that arrived; data accuracy: share of readings judged good.
        """
        cfg = state(ctx).config
        tz = cfg.rules.timezone
        start, end = parse_when(from_, tz), parse_when(to, tz)
        if end <= start:
            raise typer.BadParameter("--to must be after --from", param_hint="--to")
        try:
            clipped = clip_to_now(start, end, time.time_ns())
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--from") from None
        if clipped < end:
            until = datetime.fromtimestamp(clipped / 1e9, ZoneInfo(tz))
            console.print(f"[yellow]note:[/] the period runs into the future: figures up to now "
                          f"({until:%Y-%m-%d %H:%M %Z}); reports not yet due are not counted as missing",
                          highlight=False)
            end = clipped
        if kind is not None and kind not in KINDS:
            raise typer.BadParameter(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}", param_hint="--kind")
        try:
            figures = asyncio.run(run_report(cfg, start, end, district, kind))
        except Exception as exc:  # a person is waiting: say what failed, not a traceback
            console.print(f"[red]error:[/] cannot compute the report: {plain(str(exc))}", highlight=False)
            raise typer.Exit(1) from None
        title = f"urbansense {from_} → {to}" + (f" {district}" if district else "") + (f" {kind}" if kind else "")
        console.print(table(figures, title))
        if csv is not None:
            write_csv(csv, figures)
            console.print(f"wrote {csv}")
        if xlsx is not None:
            write_xlsx(xlsx, figures, title)
            console.print(f"wrote {xlsx}")
