"""Operator- and device-provided text printed on a terminal (qa3 F7): control and format characters are
shown as escapes, never sent raw (ESC clears and recolours the screen, U+202E reverses what follows,
NUL and line breaks forge output), and `[…]` is shown as typed, never read as rich markup."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from test_alerts_cli import CONFIG, DEVICE
from typer.testing import CliRunner

from alerts.manager import AlertLifecycle
from alerts.model import fingerprint
from alerts.notifiers import build_notifiers
from alerts.routing import Router
from alerts.store import AlertStore
from cli.alerts import register
from cli.app import app
from core.controls import bad_character, printable
from core.transition import AlertState, AlertTransition, Severity
from storage.deadletter import DeadLetter, DeadLetterStore

WIDE = CliRunner(env={"COLUMNS": "300"})  # rich tables wide enough to show whole cells
HOSTILE = "ok \x00\x1b[2J\x1b[31mRED \u202egnp.exe\n[bold red]forged[/bold red]"
RAW = ("\x00", "\x1b", "\u202e")


def test_printable_escapes_controls_and_keeps_ordinary_text() -> None:
    assert printable(HOSTILE) == "ok \\x00\\x1b[2J\\x1b[31mRED \\u202egnp.exe\\n[bold red]forged[/bold red]"
    assert printable("朝阳区\u3000建国路 8 号（东门）") == "朝阳区\u3000建国路 8 号（东门）"  # untouched
    assert printable("a\u200bb\u2028c\x85d\U000e0001") == "a\\u200bb\\u2028c\\x85d\\U000e0001"
    assert printable(42) == "42"
    assert bad_character("第一行\n第二行", allow="\n") is None
    assert bad_character("a\u202eb", allow="\n") == "U+202E RIGHT-TO-LEFT OVERRIDE"
    assert bad_character("a\x1bb") == "U+001B control character"


def test_alerts_list_and_show_print_a_hostile_comment_escaped(tmp_path: Path) -> None:
    db = tmp_path / "alerts.sqlite"
    store = AlertStore(db)
    m = AlertLifecycle(store, Router(CONFIG.routes, CONFIG.default_receivers), build_notifiers(CONFIG),
                       {"bin-001": DEVICE}.get)
    m.handle(AlertTransition("bin_full", "bin-001", AlertState.PENDING, AlertState.FIRING, Severity.WARNING,
                             time.time_ns(), 92.0, 80.0, "case"))
    store.ack(fingerprint("bin_full", "bin-001"), "wang", HOSTILE, time.time_ns())  # stored, as any path may
    store.close()
    cli = typer.Typer()

    @cli.callback()
    def main() -> None:
        """urbansense"""

    register(cli, db_path=lambda ctx: db)
    for args in (["show", "1"], ["list"]):
        result = WIDE.invoke(cli, ["alerts", *args])
        assert result.exit_code == 0, result.output
        assert not any(c in result.output for c in RAW), repr(result.output)
    shown = WIDE.invoke(cli, ["alerts", "show", "1"]).output
    refused = WIDE.invoke(cli, ["alerts", "ack", "1", "--comment", "done\x1b[2J"])
    assert refused.exit_code == 1 and "--comment holds U+001B" in refused.output
    assert "ack_comment: ok \\x00\\x1b[2J\\x1b[31mRED \\u202egnp.exe\\n[bold red]forged[/bold red]" in shown


def test_deadletter_show_and_list_print_a_device_s_bytes_escaped(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text('[pipeline]\ndead_letter_path = "deadletter.sqlite"\n')
    with DeadLetterStore(tmp_path / "deadletter.sqlite") as store:
        store.add(DeadLetter(time.time_ns(), "lorawan", "application/1/device/x/event/up",
                             b'{"data": "\x1b]0;owned\x07\x1b[2J"}', "bad_json", "detail \x1b[31mred"))
    for args in (["show", "1"], ["list"]):
        r = WIDE.invoke(app, ["--config", str(tmp_path / "config.toml"), "deadletter", *args])
        assert r.exit_code == 0, r.output
        assert "\x1b" not in r.output and "\x07" not in r.output, repr(r.output)
    shown = WIDE.invoke(app, ["--config", str(tmp_path / "config.toml"), "deadletter", "show", "1"]).output
    assert '  {"data": "\\x1b]0;owned\\x07\\x1b[2J"}' in shown


def test_device_tables_show_markup_in_an_address_as_typed(tmp_path: Path) -> None:
    reg = ["--registry", str(tmp_path / "r.sqlite")]
    address = "[link=http://evil.example]建国路 8 号[/link] [blink]"
    r = WIDE.invoke(app, ["device", "add", "WL-1", "--deveui", "24e1247100ee0003", "--model",
                                 "milesight-em500-udl", "--mount-height-mm", "2000", "--district", "[red]朝阳区",
                                 "--address", address, *reg])
    assert r.exit_code == 0, r.output
    listed = WIDE.invoke(app, ["device", "list", *reg]).output
    assert "[red]朝阳区" in listed
    shown = WIDE.invoke(app, ["device", "show", "WL-1", "--no-live", *reg]).output
    assert address in shown
