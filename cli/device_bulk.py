"""`device import|export|template`: bulk provisioning from CSV or .xlsx, all-or-nothing by default, and back out."""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cli.device_common import (
    ByOpt,
    RegistryOpt,
    bbox,
    console,
    device_app,
    err_console,
    fail,
    fmt_value,
    in_district,
    open_registry,
)
from cli.tables import plain
from provisioning.columns import TEMPLATE_EXAMPLE, TEMPLATE_ZH
from provisioning.csvio import HEADER, CsvFormatError, write_csv
from provisioning.importer import Preview, plan_import, preview
from provisioning.registry import RegistryError
from provisioning.sheet import read_sheet, write_template_xlsx

_HEADER_HELP = ",".join(HEADER)


_IMPORT_HELP = "\n\n".join((
    "Provision devices from a CSV or Excel (.xlsx) file: every row is checked before anything is written.",
    "The first line is the header; [bold]id,key,model[/bold] are required, the other columns optional, "
    f"in any order: [bold]{_HEADER_HELP}[/bold]. Chinese headers work too (设备编号, DevEUI, IMEI, 型号, 纬度, "
    "经度, 地址, 区, 街道, 声环境功能区, 安装高度(mm), 上报间隔(s), 状态 ...; "
    "the full list is in provisioning/README.md); `urbansense device template` writes an empty sheet to fill in.",
    "CSV in UTF-8 (with or without a byte-order mark) or GBK/GB18030 (Excel on Chinese Windows, \"CSV (逗号分隔)\"): "
    "the encoding is detected and said. Excel's damage is repaired and listed (an IMEI in scientific notation "
    "with all its digits, lost leading zeros, full-width digits, stray spaces) or refused with the fix "
    "(an IMEI cut to 6 digits). key: a DevEUI (16 hex digits) or IMEI (15 digits); model: from `urbansense models`; "
    "latitude/longitude: WGS-84 degrees; zone_class (noise): 0, 1, 2, 3, 4a or 4b; mount_height_mm "
    "(water level), bin_depth_mm (bin fill), dead_zone_mm: millimetres; expected_interval_s: seconds "
    "(default 300); status: active, maintenance or retired.",
    "By default a file with any bad row writes nothing and lists every bad row with its line and column; "
    "--skip-invalid writes the good rows; --dry-run shows what would be added, changed (field by field) and "
    "left alone. A row whose device exists updates it; importing the same file twice is a no-op.",
    "Example: [bold]urbansense device import 朝阳积水.xlsx --dry-run[/bold], then "
    "[bold]urbansense device import 朝阳积水.xlsx --by zhang.wei[/bold]",
))


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=err_console, transient=True, disable=not err_console.is_terminal)


def _show(value: object) -> str:
    return "(empty)" if value in (None, "") else plain(fmt_value(value))


def _print_preview(pre: Preview) -> None:
    for d in pre.added:
        district = f", {d.district}" if d.district else ""
        console.print(plain(f"+ add {d.id}: {d.model} ({d.kind}), key {d.key}{district}"))
    for device_id, changes in pre.changed:
        console.print(f"~ change {device_id}:")
        for c in changes:
            console.print(f"    {c.field}: {_show(c.old)} → {_show(c.new)}")
    console.print(f"dry run: {len(pre.added)} to add, {len(pre.changed)} to change, {len(pre.unchanged)} unchanged; "
                  "nothing written")


@device_app.command("import", help=_IMPORT_HELP)
def import_(ctx: typer.Context,
            file: Annotated[Path, typer.Argument(help="the CSV or .xlsx file", exists=True, dir_okay=False)],
            skip_invalid: Annotated[bool, typer.Option("--skip-invalid", help="write the good rows, "
                                                       "report the bad ones")] = False,
            dry_run: Annotated[bool, typer.Option("--dry-run", help="show what would be added, changed and "
                                                  "left alone; write nothing")] = False,
            by: ByOpt = None, registry: RegistryOpt = None) -> None:
    box = bbox(ctx)
    with _progress() as progress:
        reading = progress.add_task(f"reading {file.name}", total=None)
        try:
            sheet = read_sheet(file, progress=lambda n: progress.advance(reading, n))
        except CsvFormatError as exc:
            raise fail(str(exc)) from None
    rows = sheet.rows
    err_console.print(f"{file.name}: read as {sheet.encoding}, {len(rows)} data rows")
    for repair in sheet.repairs:
        err_console.print(f"[yellow]repaired:[/yellow] {plain(str(repair))}")
    with open_registry(ctx, registry) as reg:
        registered = {d.id: d for d in reg.all()}
        with _progress() as progress:
            task = progress.add_task("checking rows", total=len(rows))
            plan = plan_import(rows, reg.key_owners(), bbox=box, labels=sheet.labels(),
                               progress=lambda n: progress.advance(task, n), existing=registered)
        for bad in plan.bad:
            err_console.print(f"[red]invalid:[/red] {plain(str(bad))}")
        if plan.bad and not skip_invalid:
            raise fail(f"{len(plan.bad)} of {len(rows)} rows are invalid; nothing was written "
                       "(fix them, or use --skip-invalid to write the other rows)", 1)
        if dry_run:
            _print_preview(preview(plan.good, registered))
            return
        try:
            result = reg.import_devices(plan.good, by=by)
        except RegistryError as exc:
            raise fail(f"{exc}; nothing was written", 1) from None
    skipped = f", {len(plan.bad)} invalid rows skipped" if plan.bad else ""
    repaired = f", {len(sheet.repairs)} cells repaired (listed above)" if sheet.repairs else ""
    console.print(f"{file.name}: {len(result.added)} added, {len(result.updated)} updated, "
                  f"{len(result.unchanged)} unchanged{skipped}{repaired}")


@device_app.command("template")
def template(output: Annotated[Path, typer.Argument(help="file to write: .csv or .xlsx", dir_okay=False)],
             lang: Annotated[str, typer.Option("--lang", help="header language: zh (设备编号, 型号, ...) or en "
                                               "(id, model, ...)")] = "zh",
             force: Annotated[bool, typer.Option("--force", help="overwrite an existing file")] = False) -> None:
    """Write an empty import sheet: the header and one example row (a waterlogging sensor) to copy.

    In the .xlsx the key column is formatted as Text, so Excel keeps every digit of an IMEI.
    Example: [bold]urbansense device template 设备台账.xlsx[/bold]
    """
    if lang not in ("zh", "en"):
        raise fail(f"--lang: {lang!r}; expected zh or en")
    if output.exists() and not force:
        raise fail(f"{output} exists; use --force to overwrite it")
    header = [TEMPLATE_ZH[c] if lang == "zh" else c for c in HEADER]
    example = [TEMPLATE_EXAMPLE[c] for c in HEADER]
    if output.suffix.lower() == ".xlsx":
        write_template_xlsx(output, header, example)
    elif output.suffix.lower() == ".csv":
        with output.open("w", encoding="utf-8-sig", newline="") as out:
            writer = csv.writer(out, lineterminator="\r\n")
            writer.writerow(header)
            writer.writerow(example)
    else:
        raise fail(f"{output}: expected a .csv or .xlsx file name")
    err_console.print(f"wrote {output}: {len(header)} columns and one example row; `urbansense device import "
                      f"{output} --dry-run` checks it")


@device_app.command("export")
def export(ctx: typer.Context,
           output: Annotated[Path | None, typer.Option("--output", "-o", help="file to write (default: stdout)")]
           = None,
           kind: Annotated[str | None, typer.Option(help="only this kind")] = None,
           district: Annotated[str | None, typer.Option(help="district containing this text (朝阳 finds 朝阳区)")]
           = None,
           excel: Annotated[bool, typer.Option("--excel", help="start with a UTF-8 byte-order mark so Excel "
                                               "shows Chinese text correctly")] = False,
           registry: RegistryOpt = None) -> None:
    """Write devices as CSV in the `device import` columns: export, edit, import again.

    Example: [bold]urbansense device export --district 朝阳 -o chaoyang.csv --excel[/bold]
    """
    with open_registry(ctx, registry) as reg:
        devices = in_district(reg, reg.all(**({"kind": kind} if kind else {})), district)
    if output is None:
        write_csv(devices, sys.stdout)
        return
    with output.open("w", encoding="utf-8-sig" if excel else "utf-8", newline="") as out:
        n = write_csv(devices, out)
    err_console.print(f"wrote {n} devices to {output}")
