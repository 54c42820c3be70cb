"""`urbansense grafana push` against a small real HTTP server playing Grafana's datasource, folder and dashboard API."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from typer.testing import CliRunner

from cli.app import app
from grafana.dashboards import build_dashboards
from grafana.push import push_all
from service.config import parse_config


class FakeGrafana:
    """Grafana's documented behaviour: 404 for unknown uids, version check on save, version bumped on save."""

    def __init__(self) -> None:
        self.datasources: dict[str, dict[str, Any]] = {}
        self.folders: dict[str, dict[str, Any]] = {}
        self.dashboards: dict[str, dict[str, Any]] = {}
        self.writes: list[tuple[str, str, dict[str, Any]]] = []
        self.auth: set[str] = set()
        self._next_id = 1

    def handle(self, method: str, path: str, body: dict[str, Any] | None) -> tuple[int, Any]:
        parts = path.strip("/").split("/")
        if method != "GET":
            self.writes.append((method, path, body or {}))
        if parts[:3] == ["api", "datasources", "uid"] and method == "GET":
            ds = self.datasources.get(parts[3])
            return (200, self._ds_view(ds)) if ds else (404, {"message": "Data source not found"})
        if parts == ["api", "datasources"] and method == "POST":
            assert body and {"name", "type", "access", "url"} <= set(body), body
            ds = {**body, "id": self._id()}
            self.datasources[body["uid"]] = ds
            return 200, {"id": ds["id"], "message": "Datasource added", "name": ds["name"]}
        if parts[:3] == ["api", "datasources", "uid"] and method == "PUT":
            self.datasources[parts[3]] = {**body, "id": self.datasources[parts[3]]["id"]}  # type: ignore[dict-item]
            return 200, {"message": "Datasource updated"}
        if parts[:2] == ["api", "folders"] and method == "GET":
            f = self.folders.get(parts[2])
            return (200, f) if f else (404, {"message": "folder not found"})
        if parts == ["api", "folders"] and method == "POST":
            f = {"uid": body["uid"], "title": body["title"], "id": self._id(), "version": 1}  # type: ignore[index]
            self.folders[f["uid"]] = f
            return 200, f
        if parts[:3] == ["api", "dashboards", "uid"] and method == "GET":
            d = self.dashboards.get(parts[3])
            return (200, d) if d else (404, {"message": "Dashboard not found"})
        if parts == ["api", "dashboards", "db"] and method == "POST":
            return self._save(body or {})
        return 404, {"message": f"no route {method} {path}"}

    def _id(self) -> int:
        self._next_id += 1
        return self._next_id

    @staticmethod
    def _ds_view(ds: dict[str, Any]) -> dict[str, Any]:
        view = {k: v for k, v in ds.items() if k != "secureJsonData"}  # Grafana never returns secrets
        view["secureJsonFields"] = {k: True for k in ds.get("secureJsonData", {})}
        view.setdefault("user", "")
        return view

    def _save(self, body: dict[str, Any]) -> tuple[int, Any]:
        dash = body["dashboard"]
        assert set(body) <= {"dashboard", "folderUid", "overwrite", "message"}, body
        assert body["folderUid"] in self.folders, "dashboard saved into a folder that does not exist"
        uid = dash["uid"]
        current = self.dashboards.get(uid)
        if current is None:
            assert dash.get("id") is None, "a new dashboard must have id null"
            saved = {**dash, "id": self._id(), "version": 1}
        else:
            old = current["dashboard"]
            if not body.get("overwrite") and (dash.get("id") != old["id"] or dash.get("version") != old["version"]):
                return 412, {"status": "version-mismatch", "message": "The dashboard has been changed by someone else"}
            saved = {**dash, "id": old["id"], "version": old["version"] + 1}
        self.dashboards[uid] = {"dashboard": saved, "meta": {"folderUid": body["folderUid"]}}
        return 200, {"id": saved["id"], "uid": uid, "status": "success", "version": saved["version"]}


@pytest.fixture
def grafana() -> Iterator[tuple[FakeGrafana, str]]:
    fake = FakeGrafana()

    class Handler(BaseHTTPRequestHandler):
        def _go(self) -> None:
            n = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(n)) if n else None
            fake.auth.add(self.headers.get("Authorization", ""))
            status, out = fake.handle(self.command, self.path.split("?")[0], body)
            data = json.dumps(out).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = _go

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield fake, f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def _cfg(url: str, **grafana: Any):
    return parse_config({"grafana": {"url": url, **grafana}, "influxdb": {"username": "reader", "password": "pw"}},
                        environ={"URBANSENSE_GRAFANA_TOKEN": "glsa_test"})


def test_first_push_creates_everything_with_the_documented_bodies(grafana):
    fake, url = grafana
    report = push_all(_cfg(url))
    assert report.changed == len(report.actions) == 2 + len(build_dashboards())
    assert fake.auth == {"Bearer glsa_test"}
    ds = fake.datasources["urbansense-influxdb"]
    assert ds["type"] == "influxdb" and ds["jsonData"]["version"] == "InfluxQL" and ds["user"] == "reader"
    assert ds["secureJsonData"] == {"password": "pw"}
    saved = fake.dashboards["urbansense-overview"]
    assert saved["dashboard"]["version"] == 1 and saved["meta"]["folderUid"] == "urbansense"
    assert saved["dashboard"]["panels"] == build_dashboards("zh")["urbansense-overview"]["panels"]


def test_second_push_of_unchanged_dashboards_changes_nothing(grafana):
    fake, url = grafana
    push_all(_cfg(url))
    writes = len(fake.writes)
    report = push_all(_cfg(url))
    assert report.changed == 0
    assert len(fake.writes) == writes, fake.writes[writes:]


def test_a_changed_dashboard_keeps_its_uid_and_gets_the_next_version(grafana):
    fake, url = grafana
    push_all(_cfg(url))
    report = push_all(_cfg(url, language="en"))
    assert ("dashboard", "urbansense-noise", "updated") in report.actions
    saved = fake.dashboards["urbansense-noise"]["dashboard"]
    assert (saved["uid"], saved["version"], saved["title"]) == ("urbansense-noise", 2, "Noise")
    assert ("datasource", "urbansense-influxdb", "unchanged") in report.actions


def test_push_command_reports_what_changed(grafana, tmp_path):
    _, url = grafana
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[grafana]\nurl = "{url}"\n', encoding="utf-8")
    runner = CliRunner()
    first = runner.invoke(app, ["--config", str(cfg), "grafana", "push"], env={"URBANSENSE_GRAFANA_TOKEN": "t"})
    assert first.exit_code == 0, first.output
    assert "dashboard urbansense-overview: created" in first.output
    again = runner.invoke(app, ["--config", str(cfg), "grafana", "push"], env={"URBANSENSE_GRAFANA_TOKEN": "t"})
    assert again.exit_code == 0 and "0 changed" in again.output


def test_push_to_an_unreachable_grafana_fails_with_a_clear_message(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[grafana]\nurl = "http://127.0.0.1:9"\ntimeout_s = 2.0\n', encoding="utf-8")
    r = CliRunner().invoke(app, ["--config", str(cfg), "grafana", "push"])
    assert r.exit_code == 1
    assert "grafana push to http://127.0.0.1:9 failed" in r.output
