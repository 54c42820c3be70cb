"""`urbansense rules check` and `urbansense rules test`: validate rule files, replay a CSV through them."""

from __future__ import annotations

import csv
import itertools
import statistics
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from core.device import ZONE_CLASSES, Device
from core.reading import FieldValue, Reading
from core.timing import format_duration, parse_duration
from core.transition import AlertTransition
from rules.gate import RuleSet
from rules.loader import KINDS, RuleError, check_rules, describe, load_rules
from rules.schedule import load_zone

_NS = 1_000_000_000
DEFAULT_TZ = "Asia/Shanghai"


class CsvError(ValueError):
    """The replay CSV is wrong; the message names the line and column."""


def register(app: typer.Typer) -> None:
    """Add the `rules` sub-command group to the `urbansense` app."""
    rules_app = typer.Typer(help="Rule files: validate them, replay readings through them.", no_args_is_help=True)

    @rules_app.command("check")
    def check(
        files: Annotated[list[Path] | None, typer.Argument(help="the city's rule files (TOML)")] = None,
        no_presets: Annotated[bool, typer.Option("--no-presets", help="leave the shipped presets out")] = False,
        tz: Annotated[str, typer.Option("--tz", help="default time zone of schedules")] = DEFAULT_TZ,
    ) -> None:
        """Validate the presets and FILES; list the rules that would run, or every error (file, rule, key)."""
        console = Console()
        report = check_rules(files or [], include_presets=not no_presets, tz=tz)
        for warning in report.warnings:
            console.print(f"[yellow]warning:[/] {warning}", highlight=False)
        if report.errors:
            for err in report.errors:
                console.print(f"[red]error:[/] {err}", highlight=False)
            console.print(f"{len(report.errors)} error(s) in {len(report.files)} file(s)")
            raise typer.Exit(1)
        table = Table(title=f"{len(report.rules)} rules from {len(report.files)} file(s)")
        for col in ("id", "kind", "condition", "route", "source"):
            table.add_column(col, overflow="fold")
        for rule in report.rules:
            table.add_row(*describe(rule).values())
        console.print(table)

    @rules_app.command("test")
    def test(
        file: Annotated[Path, typer.Argument(help="the rule file to test (TOML)")],
        device: Annotated[str, typer.Option("--device", help="device id to give the readings")],
        from_csv: Annotated[Path, typer.Option("--from", help="CSV: a time column (RFC 3339 or epoch), "
                                                              "then one column per field")],
        rule_id: Annotated[str | None, typer.Option("--rule", help="only this rule of FILE")] = None,
        kind: Annotated[str | None, typer.Option("--kind", help="reading kind (default: the rules' kind)")] = None,
        zone_class: Annotated[str, typer.Option("--zone-class", help="noise zone class of the device")] = "",
        district: Annotated[str, typer.Option("--district")] = "",
        site: Annotated[str, typer.Option("--site", help="the device's site tag")] = "",
        interval: Annotated[str | None, typer.Option("--interval", help="expected report interval "
                                                                       "(default: median spacing)")] = None,
        until: Annotated[str, typer.Option("--until", help="let this much time pass after the last "
                                                           "reading (e.g. 30m)")] = "0s",
        tz: Annotated[str, typer.Option("--tz", help="time zone of schedules and of naive times")] = DEFAULT_TZ,
    ) -> None:
        """Replay the readings of CSV through the rules of FILE and print every transition."""
        console = Console()
        try:
            zone = load_zone(tz)
            rules = load_rules([file], include_presets=False, tz=tz)
            if rule_id is not None:
                rules = [r for r in rules if r.id == rule_id]
                if not rules:
                    raise typer.BadParameter(f"no enabled rule {rule_id!r} in {file}", param_hint="--rule")
            if zone_class and zone_class not in ZONE_CLASSES:
                raise typer.BadParameter(f"expected one of {', '.join(ZONE_CLASSES)}", param_hint="--zone-class")
            reading_kind = kind or _kind_of(rules)
            rows = read_csv(from_csv, zone)
            tail_s = parse_duration(until)
            interval_s = parse_duration(interval) if interval else _median_spacing(rows)
        except (RuleError, CsvError, ValueError) as exc:
            console.print(f"[red]error:[/] {exc}", highlight=False)
            raise typer.Exit(2) from None
        dev = Device(id=device, key=device, model="cli-test", kind=reading_kind, district=district,
                     zone_class=zone_class, site=site, expected_interval_s=max(1, round(interval_s)))
        transitions = replay(rules, dev, rows, tz=tz, tail_s=tail_s)
        console.print(transitions_table(transitions, zone, title=f"{file.name}: {len(rows)} readings of {device}, "
                                        f"{len(transitions)} transitions"))

    app.add_typer(rules_app, name="rules")


def replay(rules: list, device: Device, rows: list[tuple[int, dict[str, FieldValue]]], *, tz: str,
           tail_s: float = 0.0) -> list[AlertTransition]:
    """Feed `rows` (time_ns, fields) as readings of `device`, ticking the clock to each reading's time."""
    engine = RuleSet(rules, tz=tz)
    engine.set_devices([device])
    out: list[AlertTransition] = []
    tags = device.tags()
    for time_ns, fields in rows:
        out.extend(engine.tick(time_ns))
        out.extend(engine.process(Reading(device.id, device.kind, time_ns, fields, tags)))
    if rows:
        out.extend(engine.tick(rows[-1][0] + int(tail_s * _NS)))
    return out


def transitions_table(transitions: list[AlertTransition], zone, *, title: str) -> Table:
    table = Table(title=title)
    for col in ("time", "rule", "transition", "severity", "value", "threshold", "eta", "route", "summary"):
        table.add_column(col, overflow="fold")
    for t in transitions:
        when = datetime.fromtimestamp(t.time_ns / _NS, zone).isoformat(timespec="seconds")
        table.add_row(
            when, t.rule_id, f"{t.from_state.value} → {t.to_state.value}", t.severity.value,
            "" if t.value is None else f"{t.value:.4g}", "" if t.threshold is None else f"{t.threshold:g}",
            "" if t.eta_s is None else format_duration(round(t.eta_s)), t.route, t.summary,
        )
    return table


def read_csv(path: Path, zone) -> list[tuple[int, dict[str, FieldValue]]]:
    """Rows of (time_ns, fields) in time order; empty cells are absent fields."""
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if not header:
                raise CsvError(f"{path}: empty file; expected a header like 'time,depth_mm'")
            header = [h.strip() for h in header]
            if header[0].lower() not in ("time", "timestamp", "ts"):
                raise CsvError(f"{path}: the first column must be 'time', got {header[0]!r}")
            rows = []
            for line_no, row in enumerate(reader, 2):
                if not row or all(not c.strip() for c in row):
                    continue
                if len(row) > len(header):
                    raise CsvError(f"{path}:{line_no}: {len(row)} cells but {len(header)} columns")
                time_ns = parse_time(row[0], zone, where=f"{path}:{line_no}")
                fields = {}
                for name, cell in zip(header[1:], row[1:], strict=False):
                    cell = cell.strip()
                    if cell:
                        fields[name] = _cell(cell, f"{path}:{line_no}: column {name!r}")
                rows.append((time_ns, fields))
    except FileNotFoundError:
        raise CsvError(f"{path}: no such file") from None
    except UnicodeDecodeError as exc:
        raise CsvError(f"{path}: not UTF-8 text ({exc})") from None
    rows.sort(key=lambda r: r[0])
    return rows


def parse_time(text: str, zone, *, where: str = "") -> int:
    """RFC 3339 (a time without offset is local in `zone`) or epoch seconds / ms / µs / ns -> ns."""
    text = text.strip()
    prefix = f"{where}: " if where else ""
    try:
        number = float(text)
    except ValueError:
        number = None
    if number is not None:
        magnitude = abs(number)
        scale = 1e9 if magnitude < 1e11 else 1e6 if magnitude < 1e14 else 1e3 if magnitude < 1e17 else 1.0
        return round(number * scale)
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise CsvError(f"{prefix}time {text!r} is neither RFC 3339 nor an epoch number") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=zone)
    return int(dt.timestamp()) * _NS + dt.microsecond * 1000


def _cell(cell: str, where: str) -> FieldValue:
    low = cell.lower()
    if low in ("true", "false"):
        return low == "true"
    try:
        return float(cell)
    except ValueError:
        raise CsvError(f"{where}: {cell!r} is not a number or true/false") from None


def _kind_of(rules: list) -> str:
    kinds = {k for r in rules if r.select.kinds is not None for k in r.select.kinds}
    if len(kinds) == 1:
        return kinds.pop()
    raise ValueError(f"the rules name {'no' if not kinds else 'several'} kinds; give --kind ({', '.join(KINDS)})")


def _median_spacing(rows: list[tuple[int, dict]]) -> float:
    gaps = [(b[0] - a[0]) / _NS for a, b in itertools.pairwise(rows) if b[0] > a[0]]
    return statistics.median(gaps) if gaps else 300.0
