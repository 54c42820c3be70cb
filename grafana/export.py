"""Write Grafana's provisioning tree: `datasources/urbansense.yaml`, `dashboards/urbansense.yaml` + JSON files.

Output is deterministic (sorted keys, fixed uids, no timestamps), so a re-export is byte-identical.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from grafana.config import GrafanaSettings
from grafana.dashboards import build_dashboards
from grafana.datasource import datasource_provisioning
from grafana.texts import Language

DEFAULT_DASHBOARDS_PATH = "/etc/grafana/provisioning/dashboards/urbansense"


def dashboard_json(dash: dict[str, Any]) -> str:
    return json.dumps(dash, ensure_ascii=False, indent=2, sort_keys=True) + "\n"


def provider(folder: str, path: str) -> dict[str, Any]:
    """The dashboard provider: Grafana loads every JSON file under `path` into `folder`."""
    return {"apiVersion": 1, "providers": [{
        "name": "urbansense", "orgId": 1, "folder": folder, "type": "file", "disableDeletion": False,
        "allowUiUpdates": False, "updateIntervalSeconds": 30,
        "options": {"path": path, "foldersFromFilesStructure": False}}]}


def _yaml(data: dict[str, Any]) -> str:
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False, default_flow_style=False)


@dataclass(frozen=True)
class Exported:
    files: list[Path]


def export_tree(cfg: GrafanaSettings, out: Path, *, language: Language | None = None,
                dashboards_path: str = DEFAULT_DASHBOARDS_PATH) -> Exported:
    """Write the tree under `out`; `dashboards_path` is where Grafana will see `out/dashboards/urbansense`."""
    lang: Language = language or cfg.grafana.language
    files: dict[Path, str] = {
        out / "datasources" / "urbansense.yaml": _yaml(datasource_provisioning(cfg.influxdb)),
        out / "dashboards" / "urbansense.yaml": _yaml(provider(cfg.grafana.folder, dashboards_path)),
    }
    for uid, dash in build_dashboards(lang).items():
        files[out / "dashboards" / "urbansense" / f"{uid}.json"] = dashboard_json(dash)
    for path, content in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
    return Exported(sorted(files))
