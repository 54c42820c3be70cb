"""`device import|export`: bulk provisioning from a CSV, all-or-nothing by default, and the same CSV back out."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cli.device_common import ByOpt, RegistryOpt, bbox, console, device_app, err_console, fail, open_registry
from provisioning.csvio import HEADER, CsvFormatError, read_rows, write_csv
from provisioning.importer import plan_import
from provisioning.registry import RegistryError

_HEADER_HELP = ",".join(HEADER)


_IMPORT_HELP = "\n\n".join((
    "Provision devices from a CSV file: every row is checked before anything is written.",
    "The first line is the header; [bold]id,key,model[/bold] are required, the other columns optional, "
    f"in any order: [bold]{_HEADER_HELP}[/bold]",
    "UTF-8 with or without a byte-order mark (Excel: Save As → \"CSV UTF-8\"); Chinese addresses and district "
    "names are fine. key: a DevEUI (16 hex digits) or IMEI (15 digits); model: from `urbansense models`; "
    "latitude/longitude: WGS-84 degrees; zone_class (noise): 0, 1, 2, 3, 4a or 4b; mount_height_mm "
    "(water level), bin_depth_mm (bin fill), dead_zone_mm: millimetres; expected_interval_s: seconds "
    "(default 300); status: active, maintenance or retired.",
    "By default a file with any bad row writes nothing and lists every bad row with its line number; "
    "--skip-invalid writes the good rows. A row whose device exists updates it; an identical row changes "
    "nothing, so importing the same file twice is a no-op.",
    "Example: [bold]urbansense device import chaoyang-water.csv --by zhang.wei[/bold]",
))


@device_app.command("import", help=_IMPORT_HELP)
def import_(ctx: typer.Context,
            file: Annotated[Path, typer.Argument(help="the CSV file", exists=True, dir_okay=False)],
            skip_invalid: Annotated[bool, typer.Option("--skip-invalid", help="write the good rows, "
                                                       "report the bad ones")] = False,
            dry_run: Annotated[bool, typer.Option("--dry-run", help="check only, write nothing")] = False,
            by: ByOpt = None, registry: RegistryOpt = None) -> None:
    try:
        rows = read_rows(file)
    except CsvFormatError as exc:
        raise fail(str(exc)) from None
    box = bbox(ctx)
    with open_registry(ctx, registry) as reg:
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=err_console, transient=True, disable=not err_console.is_terminal) as progress:
            task = progress.add_task("checking rows", total=len(rows))
            plan = plan_import(rows, reg.key_owners(), bbox=box, progress=lambda n: progress.advance(task, n))
        for bad in plan.bad:
            err_console.print(f"[red]invalid:[/red] {bad}")
        if plan.bad and not skip_invalid:
            raise fail(f"{len(plan.bad)} of {len(rows)} rows are invalid; nothing was written "
                       "(fix them, or use --skip-invalid to write the other rows)", 1)
        if dry_run:
            console.print(f"dry run: {len(plan.good)} rows are valid, {len(plan.bad)} invalid; nothing written")
            return
        try:
            result = reg.import_devices(plan.good, by=by)
        except RegistryError as exc:
            raise fail(f"{exc}; nothing was written", 1) from None
    skipped = f", {len(plan.bad)} invalid rows skipped" if plan.bad else ""
    console.print(f"{file.name}: {len(result.added)} added, {len(result.updated)} updated, "
                  f"{len(result.unchanged)} unchanged{skipped}")


@device_app.command("export")
def export(ctx: typer.Context,
           output: Annotated[Path | None, typer.Option("--output", "-o", help="file to write (default: stdout)")]
           = None,
           kind: Annotated[str | None, typer.Option(help="only this kind")] = None,
           district: Annotated[str | None, typer.Option(help="only this district")] = None,
           excel: Annotated[bool, typer.Option("--excel", help="start with a UTF-8 byte-order mark so Excel "
                                               "shows Chinese text correctly")] = False,
           registry: RegistryOpt = None) -> None:
    """Write devices as CSV in the `device import` columns: export, edit, import again.

    Example: [bold]urbansense device export --district 朝阳 -o chaoyang.csv --excel[/bold]
    """
    where = {k: v for k, v in (("kind", kind), ("district", district)) if v}
    with open_registry(ctx, registry) as reg:
        devices = reg.all(**where)
    if output is None:
        write_csv(devices, sys.stdout)
        return
    with output.open("w", encoding="utf-8-sig" if excel else "utf-8", newline="") as out:
        n = write_csv(devices, out)
    err_console.print(f"wrote {n} devices to {output}")
