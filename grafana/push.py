"""Create or update the datasource, folder and dashboards in a running Grafana through its HTTP API.

Idempotent: an object whose content already matches is left alone; a changed dashboard is saved
under the same uid with the version Grafana holds (Grafana bumps it), so a concurrent edit in the
UI is refused (412) instead of overwritten.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from grafana_client import GrafanaApi
from grafana_client.client import GrafanaClientError

from core.secrets import reveal
from grafana.config import GrafanaSettings
from grafana.dashboards import build_dashboards
from grafana.datasource import datasource_body
from grafana.texts import Language

FOLDER_UID = "urbansense"
_VOLATILE = ("id", "version")
_DS_COMPARED = ("name", "type", "access", "url", "user", "isDefault", "jsonData")


@dataclass
class PushReport:
    """What push did, per object: `created`, `updated` or `unchanged`."""

    actions: list[tuple[str, str, str]] = field(default_factory=list)

    def add(self, what: str, ident: str, action: str) -> None:
        self.actions.append((what, ident, action))

    @property
    def changed(self) -> int:
        return sum(1 for *_, a in self.actions if a != "unchanged")

    def lines(self) -> list[str]:
        return [f"{what} {ident}: {action}" for what, ident, action in self.actions]


def _missing(exc: GrafanaClientError) -> bool:
    return exc.status_code == 404


def _norm(value: Any) -> Any:
    """Grafana answers "" / false / {} for what was never set; treat those as absent."""
    return value if value not in ("", None, {}, False) else None


def _strip(dash: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in dash.items() if k not in _VOLATILE}


def push_datasource(api: GrafanaApi, cfg: GrafanaSettings, report: PushReport) -> None:
    body = datasource_body(cfg.influxdb)
    try:
        current = api.datasource.get_datasource_by_uid(body["uid"])
    except GrafanaClientError as exc:
        if not _missing(exc):
            raise
        api.datasource.create_datasource(body)
        report.add("datasource", body["uid"], "created")
        return
    same = all(_norm(current.get(k)) == _norm(body.get(k)) for k in _DS_COMPARED)
    secrets_set = set((current.get("secureJsonFields") or {}).keys())
    if same and set(body.get("secureJsonData", {})) <= secrets_set:
        report.add("datasource", body["uid"], "unchanged")
        return
    api.datasource.update_datasource_by_uid(body["uid"], body)
    report.add("datasource", body["uid"], "updated")


def push_folder(api: GrafanaApi, title: str, report: PushReport) -> None:
    try:
        current = api.folder.get_folder(FOLDER_UID)
    except GrafanaClientError as exc:
        if not _missing(exc):
            raise
        api.folder.create_folder(title, uid=FOLDER_UID)
        report.add("folder", FOLDER_UID, "created")
        return
    if current.get("title") == title:
        report.add("folder", FOLDER_UID, "unchanged")
        return
    api.folder.update_folder(FOLDER_UID, title=title, version=current.get("version"))
    report.add("folder", FOLDER_UID, "updated")


def push_dashboard(api: GrafanaApi, dash: dict[str, Any], report: PushReport) -> None:
    uid = str(dash["uid"])
    try:
        current = api.dashboard.get_dashboard(uid)
    except GrafanaClientError as exc:
        if not _missing(exc):
            raise
        current = None
    body: dict[str, Any] = {"folderUid": FOLDER_UID, "overwrite": False,
                            "message": "urbansense grafana push"}
    if current is None:
        body["dashboard"] = {**_strip(dash), "id": None}
        api.dashboard.update_dashboard(body)
        report.add("dashboard", uid, "created")
        return
    existing = current.get("dashboard", {})
    folder_ok = current.get("meta", {}).get("folderUid", FOLDER_UID) == FOLDER_UID
    if _strip(existing) == _strip(dash) and folder_ok:
        report.add("dashboard", uid, "unchanged")
        return
    body["dashboard"] = {**_strip(dash), "id": existing.get("id"), "version": existing.get("version")}
    api.dashboard.update_dashboard(body)
    report.add("dashboard", uid, "updated")


def push_all(cfg: GrafanaSettings, *, language: Language | None = None, api: GrafanaApi | None = None) -> PushReport:
    """Push the datasource, the folder and every dashboard; returns what changed."""
    gc = cfg.grafana
    api = api or GrafanaApi.from_url(reveal(gc.url), credential=reveal(gc.token) or None, timeout=gc.timeout_s)
    report = PushReport()
    push_datasource(api, cfg, report)
    push_folder(api, gc.folder, report)
    for dash in build_dashboards(language or gc.language).values():
        push_dashboard(api, dash, report)
    return report
