"""`urbansense rules check` and `urbansense rules test`: validate rule files, replay a CSV through them."""

from __future__ import annotations

import csv
import dataclasses
import itertools
import json
import statistics
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from cli.device_common import config
from cli.tables import TextTable, plain
from core.database import describe_url, holds_nothing, is_postgres_url
from core.device import ZONE_CLASSES, Device
from core.reading import FieldValue, Reading
from core.timing import format_duration, parse_duration
from core.transition import AlertTransition
from provisioning.lookup import find_device
from provisioning.registry import Registry
from rules.crosscheck import Vocabulary
from rules.gate import RuleSet
from rules.loader import KINDS, RuleError, check_rules, describe, load_rules
from rules.model import ANY, Rule
from rules.schedule import load_zone
from service.rule_vocabulary import rule_vocabulary

_NS = 1_000_000_000
DEFAULT_TZ = "Asia/Shanghai"


class CsvError(ValueError):
    """The replay CSV is wrong; the message names the line and column."""


def register(app: typer.Typer) -> None:
    """Add the `rules` sub-command group to the `urbansense` app."""
    rules_app = typer.Typer(help="Rule files: validate them, replay readings through them.\n\n"
                                 "Example: [bold]urbansense rules check city-rules.toml[/bold]",
                            no_args_is_help=True, rich_markup_mode="rich")

    @rules_app.command("check")
    def check(
        ctx: typer.Context,
        files: Annotated[list[Path] | None, typer.Argument(help="the city's rule files (TOML)")] = None,
        no_presets: Annotated[bool, typer.Option("--no-presets", help="leave the shipped presets out")] = False,
        tz: Annotated[str, typer.Option("--tz", help="default time zone of schedules")] = DEFAULT_TZ,
        registry: Annotated[str | None, typer.Option("--registry", help="registry to check districts and "
                                                     "devices against: a SQLite file or postgresql:// URL "
                                                     "(default: the config's registry)")]
        = None,
        as_json: Annotated[bool, typer.Option("--json", help="one JSON object: rules, errors, warnings, notes")]
        = False,
    ) -> None:
        """Validate the presets and FILES; list the rules that would run, or every error (file, rule, key).

        Besides the form of each rule, the rules are checked against what exists: kinds, the fields
        those kinds report, routes (the presets' and \\[alerts] routes of the config), and the
        districts, devices and models of the registry. Every error of every file is listed in one run;
        the exit code is 1 when there is any.

        Example: [bold]urbansense rules check city-rules.toml[/bold]
        """
        console = Console()
        vocabulary = gather_vocabulary(ctx, registry)
        report = check_rules(files or [], include_presets=not no_presets, tz=tz, vocabulary=vocabulary)
        if as_json:
            typer.echo(json.dumps({
                "files": [str(f) for f in report.files], "rules": [dict(describe(r)) for r in report.rules],
                "errors": [{"file": e.file, "rule": e.rule_id, "key": e.key, "message": e.message}
                           for e in report.errors],
                "warnings": report.warnings, "notes": list(vocabulary.notes)}, ensure_ascii=False))
            raise typer.Exit(1 if report.errors else 0)
        for note in vocabulary.notes:
            console.print(f"note: {plain(note)}", highlight=False)
        for warning in report.warnings:
            console.print(f"[yellow]warning:[/] {plain(warning)}", highlight=False)
        if report.errors:
            for err in report.errors:
                console.print(f"[red]error:[/] {plain(err)}", highlight=False)
            console.print(f"{len(report.errors)} error(s) in {len(report.files)} file(s)")
            raise typer.Exit(1)
        table = TextTable(title=f"{len(report.rules)} rules from {len(report.files)} file(s)")
        for col in ("id", "kind", "condition", "route", "source"):
            table.add_column(col, overflow="fold")
        for rule in report.rules:
            table.add_row(*describe(rule).values())
        console.print(table)

    @rules_app.command("test")
    def test(
        ctx: typer.Context,
        file: Annotated[Path, typer.Argument(help="the rule file to test (TOML)")],
        device: Annotated[str, typer.Option("--device", help="device id or DevEUI/IMEI; its district, zone "
                                                             "class, site and kind come from the registry")],
        from_csv: Annotated[Path, typer.Option("--from", help="CSV (UTF-8, a byte-order mark is fine): a time "
                                                              "column (RFC 3339 or epoch), then one column per "
                                                              "field")],
        rule_id: Annotated[str | None, typer.Option("--rule", help="only this rule of FILE")] = None,
        kind: Annotated[str | None, typer.Option("--kind", help="reading kind (default: the registry's, "
                                                                "else the rules' kind)")] = None,
        zone_class: Annotated[str | None, typer.Option("--zone-class", help="noise zone class of the device "
                                                                            "(default: the registry's)")] = None,
        district: Annotated[str | None, typer.Option("--district", help="(default: the registry's)")] = None,
        site: Annotated[str | None, typer.Option("--site", help="the device's site tag (default: the "
                                                                "registry's)")] = None,
        interval: Annotated[str | None, typer.Option("--interval", help="expected report interval "
                                                                       "(default: median spacing)")] = None,
        until: Annotated[str, typer.Option("--until", help="let this much time pass after the last "
                                                           "reading (e.g. 30m)")] = "0s",
        tz: Annotated[str, typer.Option("--tz", help="time zone of schedules and of naive times")] = DEFAULT_TZ,
        registry: Annotated[str | None, typer.Option("--registry", help="registry to read the device from: a "
                                                     "SQLite file or postgresql:// URL (default: the config's "
                                                     "registry)")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="JSON Lines: one transition per line (notes go to "
                                                             "stderr)")] = False,
    ) -> None:
        """Replay the readings of CSV through the rules of FILE and print every transition.

        The device's district, zone class, site and kind are read from the registry unless given;
        when a rule cannot see the device (its selector excludes it, it has no threshold for the
        device's zone class) or the CSV lacks the rule's field, a note says so instead of silence.

        Example: [bold]urbansense rules test city-noise.toml --device ZS-CY-001 --from night.csv[/bold]
        """
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
            known, note = registered_device(ctx, registry, device)
            reading_kind = kind or (known.kind if known else None) or _kind_of(rules)
            header, rows = read_csv(from_csv, zone)
            tail_s = parse_duration(until)
            interval_s = parse_duration(interval) if interval else _median_spacing(rows)
        except (RuleError, CsvError, ValueError) as exc:
            console.print(f"[red]error:[/] {exc}", highlight=False)
            raise typer.Exit(2) from None
        base = known or Device(id=device, key=device, model="cli-test", kind=reading_kind)
        dev = dataclasses.replace(
            base, kind=reading_kind,
            district=base.district if district is None else district,
            zone_class=base.zone_class if zone_class is None else zone_class,
            site=base.site if site is None else site,
            expected_interval_s=max(1, round(interval_s)) if interval or known is None else base.expected_interval_s)
        notes_to = Console(stderr=True) if as_json else console
        for line in [note, *explain(rules, dev, header, from_csv.name)]:
            if line:
                notes_to.print(f"[yellow]note:[/] {line}", highlight=False)
        transitions = replay(rules, dev, rows, tz=tz, tail_s=tail_s)
        if as_json:
            for t in transitions:
                typer.echo(json.dumps(transition_dict(t, zone), ensure_ascii=False))
            return
        console.print(transitions_table(transitions, zone, title=f"{file.name}: {len(rows)} readings of {dev.id}, "
                                        f"{len(transitions)} transitions (times {tz})"))

    app.add_typer(rules_app, name="rules")


def _registry_path(ctx: typer.Context, registry: str | None) -> str | Path | None:
    """The registry to read: `--registry`, else the config's when a config is in use ([database] url or
    registry.path); None when there is none, or it is a SQLite file not made yet."""
    cfg = config(ctx, required=False)
    where = registry if registry is not None else None if cfg is None else cfg.registry_database()
    if where is None or (not is_postgres_url(where) and not Path(where).exists()):
        return None
    return where


def gather_vocabulary(ctx: typer.Context, registry: str | None) -> Vocabulary:
    """What exists, for `rules check` (`service.rule_vocabulary`), with the registry's districts and devices
    when there is a registry."""
    cfg = config(ctx, required=False)
    path = _registry_path(ctx, registry)
    if path is None:
        note = (f"no registry{f' at {registry}' if registry else ''}: districts and devices in `select` are not "
                "checked (give --registry)")
        return rule_vocabulary(cfg.alerts if cfg else None, None, [note])
    with Registry(path, migrate_schema=holds_nothing(path, "devices")) as reg:
        devices = reg.all()
    return rule_vocabulary(cfg.alerts if cfg else None, devices)


def registered_device(ctx: typer.Context, registry: str | None, text: str) -> tuple[Device | None, str]:
    """The registry's device for `--device` (id or DevEUI/IMEI), and a note saying where its tags came from."""
    path = _registry_path(ctx, registry)
    if path is None:
        return None, (f"no registry{f' at {registry}' if registry else ''}: {text} is tested with the "
                      "--district/--zone-class/--site given (or none)")
    with Registry(path, migrate_schema=holds_nothing(path, "devices")) as reg:
        try:
            device = find_device(reg, text, prefix=False)
        except LookupError:
            return None, (f"{text} is not in the registry ({describe_url(path)}): tested with the "
                          "--district/--zone-class/--site given (or none)")
    return device, (f"{device.id} from the registry: kind {device.kind}, district {device.district or '-'}, "
                    f"zone class {device.zone_class or '-'}, site {device.site or '-'}")


def explain(rules: list[Rule], device: Device, columns: list[str], csv_name: str) -> list[str]:
    """Why a rule will stay silent for this replay: the selector excludes the device, no threshold for its
    zone class, or the CSV has no column for the rule's field."""
    notes = []
    tags = dict(device.tags())
    for rule in rules:
        why = _excluded(rule, device, tags)
        if why:
            notes.append(f"rule {rule.id!r} does not apply to {device.id}: {why}")
            continue
        if rule.is_no_data:
            continue
        if rule.field not in columns:
            notes.append(f"rule {rule.id!r} watches {rule.field!r}, which {csv_name} has no column for "
                         f"(columns: {', '.join(columns) or 'none'})")
        zones = {z for lv in rule.levels for _, z in lv.threshold.values}
        if ANY not in zones and device.zone_class not in zones:
            notes.append(f"rule {rule.id!r} has thresholds only for zone classes {', '.join(sorted(zones))}; "
                         f"{device.id} has zone class {device.zone_class or 'none'} (--zone-class)")
    return notes


def _excluded(rule: Rule, device: Device, tags: dict[str, str]) -> str:
    sel = rule.select
    if sel.kinds is not None and device.kind not in sel.kinds:
        return f"it watches kind {', '.join(sorted(sel.kinds))}, the device is {device.kind}"
    wants = (("devices", sel.devices, device.id), ("district", sel.districts, device.district),
             ("zone_class", sel.zone_classes, device.zone_class), ("model", sel.models, device.model))
    for name, allowed, have in wants:
        if allowed is not None and have not in allowed:
            return (f"its select.{name} is {', '.join(sorted(allowed))}; the device has {have or 'none'}"
                    f"{' (give --' + name.replace('_', '-') + ')' if name in ('district', 'zone_class') else ''}")
    for key, allowed in sel.tags:
        value = tags.get(key, "")
        if not value or (allowed is not None and value not in allowed):
            return f"its select.tags.{key} wants {'any value' if allowed is None else ', '.join(sorted(allowed))}; " \
                   f"the device has {value or 'none'}"
    return ""


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


def transition_dict(t: AlertTransition, zone) -> dict[str, object]:
    """One transition for `rules test --json`; time in RFC 3339 with the zone's offset."""
    return {"time": datetime.fromtimestamp(t.time_ns / _NS, zone).isoformat(timespec="seconds"),
            "rule_id": t.rule_id, "device_id": t.device_id, "from": t.from_state.value, "to": t.to_state.value,
            "severity": t.severity.value, "value": t.value, "threshold": t.threshold, "eta_s": t.eta_s,
            "route": t.route, "summary": t.summary}


def transitions_table(transitions: list[AlertTransition], zone, *, title: str) -> Table:
    table = TextTable(title=title)
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


def read_csv(path: Path, zone) -> tuple[list[str], list[tuple[int, dict[str, FieldValue]]]]:
    """(the field columns, rows of (time_ns, fields) in time order); empty cells are absent fields.

    UTF-8 with or without a byte-order mark (Excel's "CSV UTF-8" writes one).
    """
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
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
    return header[1:], rows


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
