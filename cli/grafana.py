"""`urbansense grafana export|push`: the dashboards as Grafana provisioning files, or pushed through its API."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from cli.state import state
from grafana.export import export_tree

grafana_app = typer.Typer(help="Grafana dashboards and datasource, as code.\n\n"
                               "Example: [bold]urbansense grafana export /etc/grafana/provisioning[/bold]",
                          no_args_is_help=True, rich_markup_mode="rich")

Lang = Annotated[str | None, typer.Option("--language", "-l", help="zh or en (default: the \\[grafana] language)")]


def _lang(value: str | None) -> Literal["zh", "en"] | None:
    if value is None:
        return None
    if value not in ("zh", "en"):
        raise typer.BadParameter(f"language must be zh or en, not {value!r}")
    return value  # type: ignore[return-value]


@grafana_app.command("export")
def export(ctx: typer.Context, out: Annotated[Path, typer.Argument(help="folder to write the tree into")],
           language: Lang = None,
           dashboards_path: Annotated[str, typer.Option(help="where Grafana sees OUT/dashboards/urbansense")] = (
               "/etc/grafana/provisioning/dashboards/urbansense")) -> None:
    """Write datasources/ and dashboards/ (provider file + JSON) for Grafana's provisioning folder.

    Example: [bold]urbansense grafana export /etc/grafana/provisioning --language en[/bold]
    """
    result = export_tree(state(ctx).config, out, language=_lang(language), dashboards_path=dashboards_path)
    for path in result.files:
        typer.echo(str(path))


@grafana_app.command("push")
def push(ctx: typer.Context, language: Lang = None) -> None:
    """Create or update the datasource, folder and dashboards in Grafana (\\[grafana] url, URBANSENSE_GRAFANA_TOKEN).

    Example: [bold]URBANSENSE_GRAFANA_TOKEN=glsa_... urbansense grafana push[/bold]
    """
    # grafana_client takes about a second to import; only this command needs it
    from grafana_client.client import GrafanaException

    from grafana.push import push_all

    cfg = state(ctx).config
    try:
        report = push_all(cfg, language=_lang(language))
    except (GrafanaException, OSError) as exc:
        typer.secho(f"grafana push to {cfg.grafana.url} failed: {exc}", fg="red", err=True)
        raise typer.Exit(1) from None
    for line in report.lines():
        typer.echo(line)
    typer.echo(f"{report.changed} changed, {len(report.actions) - report.changed} unchanged")


def register(app: typer.Typer) -> None:
    app.add_typer(grafana_app, name="grafana")
