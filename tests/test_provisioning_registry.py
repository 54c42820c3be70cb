"""The device registry and the minimal `urbansense device` commands."""

from __future__ import annotations

import getpass
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.app import app
from core.device import Device
from core.keys import DeviceKeyError, normalise_deveui, normalise_imei, normalise_key
from provisioning.registry import Registry, RegistryError
from provisioning.view import RegistryView

runner = CliRunner()


def test_deveui_forms_normalise() -> None:
    assert normalise_deveui("70-B3-D5-7E-D0-00-12-34") == "70b3d57ed0001234"
    assert normalise_deveui("70B3D57ED0001234") == "70b3d57ed0001234"
    with pytest.raises(DeviceKeyError, match="16 hex digits"):
        normalise_deveui("70b3d57ed00012")


def test_imei_luhn() -> None:
    assert normalise_imei("490154203237518") == "490154203237518"
    with pytest.raises(DeviceKeyError, match="check digit"):
        normalise_imei("490154203237519")
    assert normalise_key("10.0.0.5:502/3") == "10.0.0.5:502/3"


def test_registry_refuses_duplicates_naming_the_holder(database: str) -> None:
    with Registry(database) as reg:
        reg.add(Device("A", "0011223344556677", "m", "noise"))
        with pytest.raises(RegistryError, match="already registered to device 'A'"):
            reg.add(Device("B", "0011223344556677", "m", "noise"))
        reg.update("A", district="朝阳", by="tech1")
        hist = reg.history("A")
        assert [h["action"] for h in hist] == ["add", "update"]
        # the actor is the OS user; --by is only a note beside it
        assert hist[1]["by"] == getpass.getuser() and hist[1]["note"] == "tech1"
        assert hist[1]["changes"] == {"district": ["", "朝阳"]}


def test_view_sees_changes_made_by_another_connection(database: str) -> None:
    path = database
    view = RegistryView(path)
    assert view.by_key == {}
    with Registry(path) as reg:
        reg.add(Device("A", "0011223344556677", "m", "noise"))
    assert view.refresh() is True
    assert "0011223344556677" in view.by_key
    assert view.refresh() is False
    view.close()


def test_cli_add_list_show(database: str) -> None:
    reg = database
    r = runner.invoke(app, ["device", "add", "WL-1", "--deveui", "24-E1-24-71-3C-21-00-01",
                            "--model", "milesight-em500-udl", "--lat", "39.9", "--lon", "116.4",
                            "--district", "朝阳", "--mount-height-mm", "2000", "--registry", reg])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["device", "show", "WL-1", "--json", "--registry", reg])
    row = json.loads(r.output)
    assert row["key"] == "24e124713c210001" and row["kind"] == "water_level"
    assert row["install"] == {"mount_height_mm": 2000.0}
    r = runner.invoke(app, ["device", "list", "--json", "--registry", reg])
    assert [json.loads(x)["id"] for x in r.output.splitlines()] == ["WL-1"]


@pytest.mark.parametrize(("args", "message"), [
    (["--deveui", "xyz", "--model", "milesight-em500-udl", "--mount-height-mm", "2000"], "key"),
    (["--deveui", "24e124713c210002", "--model", "no-such-model"], "model"),
    (["--deveui", "24e124713c210002", "--model", "milesight-em500-udl"], "mount_height_mm"),
    (["--deveui", "24e124713c210002", "--model", "milesight-em500-udl", "--mount-height-mm", "2000",
      "--lat", "95"], "latitude"),
])
def test_cli_add_refuses_bad_input_naming_the_field(tmp_path: Path, args: list[str], message: str) -> None:
    r = runner.invoke(app, ["device", "add", "X", *args, "--registry", str(tmp_path / "r.sqlite")])
    assert r.exit_code == 2
    assert message in r.output


def test_import_devices_is_one_transaction_with_an_audit_row_per_change(database: str) -> None:
    with Registry(database) as reg:
        reg.add(Device("A", "0011223344556677", "m", "noise"))
        batch = [Device("A", "0011223344556677", "m", "noise"), Device("B", "00112233445566aa", "m", "noise"),
                 Device("C", "00112233445566bb", "m", "noise", district="海淀")]
        result = reg.import_devices(batch, by="bot")
        assert (result.added, result.updated, result.unchanged) == (["B", "C"], [], ["A"])
        result = reg.import_devices([Device("C", "00112233445566bb", "m", "noise", district="朝阳")], by="bot")
        assert result.updated == ["C"]
        assert reg.history("C")[-1]["changes"] == {"district": ["海淀", "朝阳"]}
        with pytest.raises(RegistryError, match="already registered to device 'A'"):
            reg.import_devices([Device("D", "00112233445566cc", "m", "noise"),
                                Device("E", "0011223344556677", "m", "noise")])
        assert reg.find("D") is None
        assert [len(reg.history(x)) for x in "ABCD"] == [1, 1, 2, 0]
