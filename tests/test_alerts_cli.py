"""`urbansense alerts list|show|ack|silence|silences|expire-silence|outbox` against a real alerts database."""

from __future__ import annotations

import getpass
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from alerts.config import AlertsConfig
from alerts.manager import AlertLifecycle
from alerts.model import fingerprint
from alerts.notifiers import build_notifiers
from alerts.routing import Router
from alerts.store import AlertStore
from cli.alerts import register
from core.device import Device
from core.transition import AlertState, AlertTransition, Severity

CONFIG = AlertsConfig.model_validate({
    "repeat_interval_s": 1,
    "receivers": {"cases": {"type": "case_platform", "url": "http://127.0.0.1:9"}},
    "default_receivers": ["cases"],
})
DEVICE = Device(id="bin-001", key="imei-1", model="x-bin", kind="bin_fill", district="海淀区")


def jsonl(text: str) -> list:
    """A `--json` listing: JSON Lines, one object per line."""
    return [json.loads(line) for line in text.splitlines()]


def transition(to: AlertState, device: str = "bin-001") -> AlertTransition:
    return AlertTransition("bin_full", device, AlertState.PENDING, to, Severity.WARNING, time.time_ns(), 92.0,
                           80.0, "case", labels=(("case_category", "bin_overflow"),), field_name="fill_pct",
                           aggregate="last")


@pytest.fixture
def db(database: str) -> str:
    """An alert store with one firing and one resolved alert, on SQLite and on PostgreSQL."""
    path = database
    store = AlertStore(path)
    m = AlertLifecycle(store, Router(CONFIG.routes, CONFIG.default_receivers), build_notifiers(CONFIG),
                     {"bin-001": DEVICE}.get, repeat_interval_s=CONFIG.repeat_interval_s)
    m.handle(transition(AlertState.FIRING))
    m.handle(transition(AlertState.FIRING, "bin-002"))
    m.handle(transition(AlertState.RESOLVED, "bin-002"))
    store.close()
    return path


@pytest.fixture
def cli(db: str):
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """urbansense"""

    register(app, db_path=lambda ctx: db)
    runner = CliRunner()

    def invoke(*args: str, code: int = 0) -> str:
        result = runner.invoke(app, ["alerts", *args])
        assert result.exit_code == code, result.output
        return result.output
    return invoke


def test_list_filters_by_state_and_speaks_json(cli):
    rows = jsonl(cli("list", "--json"))
    assert {(r["device_id"], r["state"]) for r in rows} == {("bin-001", "firing"), ("bin-002", "resolved")}
    firing = jsonl(cli("list", "--state", "firing", "--json"))
    assert [r["device_id"] for r in firing] == ["bin-001"]
    assert "bin-001" in cli("list")
    assert "unknown state" in cli("list", "--state", "burning", code=2)


def test_show_has_history_and_notifications(cli):
    fp = fingerprint("bin_full", "bin-001")
    data = json.loads(cli("show", fp, "--json"))
    assert data["alert"]["fingerprint"] == fp
    assert [h["to"] for h in data["history"]] == ["firing"]
    (note,) = data["notifications"]
    assert (note["receiver"], note["event"], note["status"]) == ("cases", "firing", "queued")
    text = cli("show", str(data["alert"]["id"]))
    assert "history" in text and "notifications" in text
    assert "no alert" in cli("show", "zzzz", code=1)


def test_ack_makes_it_acknowledged_and_refuses_resolved_ones(cli, db):
    fp = fingerprint("bin_full", "bin-001")
    assert "acknowledged alert" in cli("ack", fp[:6], "--by", "王工", "--comment", "truck on its way")
    (row,) = jsonl(cli("list", "--state", "acknowledged", "--json"))
    # the OS user is the actor; --by ("mayor" or anyone) is only a note beside the comment
    assert row["acknowledged_by"] == getpass.getuser() and row["ack_comment"] == "truck on its way [--by 王工]"
    out = cli("ack", fingerprint("bin_full", "bin-002"), "--by", "x", code=1)
    assert "is resolved" in out


def test_silence_lifecycle(cli):
    out = cli("silence", "--match", "district=海淀区", "-m", "rule_id=~bin_.*", "--for", "2h",
              "--comment", "street market day", "--by", "李")
    assert out.startswith("silence 1:")
    (s,) = jsonl(cli("silences", "--json"))
    assert s["matchers"] == ["district=海淀区", "rule_id=~bin_.*"] and s["active"]
    assert s["created_by"] == getpass.getuser()
    assert s["comment"] == "street market day [--by 李]"
    assert "expired" in cli("expire-silence", "1")
    assert jsonl(cli("silences", "--json")) == []
    assert len(jsonl(cli("silences", "--all", "--json"))) == 1
    assert "no silence with id 7" in cli("expire-silence", "7", code=1)


def test_silence_refuses_bad_input(cli):
    assert "exactly one of --end and --for" in cli("silence", "-m", "a=b", "--comment", "x", code=1)
    assert "expected name=value" in cli("silence", "-m", "nonsense", "--for", "1h", "--comment", "x", code=1)
    assert "duration" in cli("silence", "-m", "a=b", "--for", "forever", "--comment", "x", code=1)
    assert "must end after" in cli("silence", "-m", "a=b", "--start", "2026-07-21T12:00",
                                   "--end", "2026-07-21T11:00", "--comment", "x", code=1)
    assert "needs a comment" in cli("silence", "-m", "district=b", "--for", "1h", "--comment", " ", code=1)


def test_outbox_listing(cli):
    rows = jsonl(cli("outbox", "--status", "queued", "--json"))
    assert [r["event"] for r in rows] == ["firing", "firing", "resolved"]


def test_missing_database_is_a_clear_error(tmp_path):
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """urbansense"""

    register(app)
    result = CliRunner().invoke(app, ["alerts", "--db", str(tmp_path / "nope.sqlite"), "list"])
    assert result.exit_code == 1 and "no alerts database" in result.output


def test_notified_is_true_only_once_a_receiver_accepted(tmp_path: Path):
    """An alert routed nowhere says so; one waiting in the outbox is not `notified`; a delivered one is."""
    path = tmp_path / "alerts.sqlite"
    nobody = AlertsConfig.model_validate({"receivers": {"cases": {"type": "case_platform", "url": "http://x"}},
                                          "routes": [{"route": "elsewhere", "receivers": ["cases"]}]})
    store = AlertStore(path)
    m = AlertLifecycle(store, Router(nobody.routes, nobody.default_receivers), build_notifiers(nobody),
                     {"bin-001": DEVICE}.get)
    m.handle(transition(AlertState.FIRING))
    routed = AlertLifecycle(store, Router(CONFIG.routes, CONFIG.default_receivers), build_notifiers(CONFIG),
                          {"bin-001": DEVICE}.get)
    routed.handle(transition(AlertState.FIRING, "bin-002"))
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """urbansense"""

    register(app, db_path=lambda ctx: path)

    def show(device: str) -> dict:
        result = CliRunner().invoke(app, ["alerts", "show", fingerprint("bin_full", device), "--json"])
        assert result.exit_code == 0, result.output
        return json.loads(result.output)["alert"]

    a = show("bin-001")
    assert a["notified"] is False and a["notification"].startswith("no receiver routed")
    b = show("bin-002")
    assert b["notified"] is False and b["notification"] == "waiting for cases"
    assert b["quantity"] == "满溢度" and b["measured"] == "92.0 %"
    row = store.due(time.time_ns() + 10**9, 10)[0]
    store.mark_delivered(row, time.time_ns(), "CASE-1")
    b = show("bin-002")
    assert b["notified"] is True and b["notification"] == "delivered to cases"
    store.close()


def test_ack_through_the_real_command_prints_its_answer_and_no_log_line(tmp_path: Path) -> None:
    """qa2 F17: `alerts ack` printed loguru's default INFO line (`… | INFO | alerts.manager:ack:323 - …`)
    before its own answer; the operator's terminal gets the answer only."""
    store_path = tmp_path / "alerts.sqlite"
    store = AlertStore(store_path)
    AlertLifecycle(store, Router(CONFIG.routes, CONFIG.default_receivers), build_notifiers(CONFIG),
                   {"bin-001": DEVICE}.get).handle(transition(AlertState.FIRING))
    store.close()
    config = tmp_path / "config.toml"
    config.write_text(f'[alerts]\ndb_path = "{store_path}"\n')
    out = subprocess.run([str(Path(sys.executable).parent / "urbansense"), "--config", str(config), "alerts", "ack",
                          fingerprint("bin_full", "bin-001")[:8], "--comment", "值班 on its way"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "acknowledged alert" in out.stdout
    assert "INFO" not in out.stdout + out.stderr and "alerts.manager" not in out.stdout + out.stderr, out
