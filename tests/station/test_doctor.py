"""station doctor on a fake machine: a permission problem is named with its fix, not 'no device'."""

from __future__ import annotations

import json
import os
from pathlib import Path

from click.testing import CliRunner

from station.cli import main
from station.doctor import RULES_NAME, Machine, check_registry, check_rules, check_serial, check_usb_nodes

ROOT = Path(__file__).resolve().parents[2]


def _usb_device(sysfs: Path, name: str, vid: int, pid: int, bus: int, num: int) -> None:
    d = sysfs / name
    d.mkdir(parents=True)
    (d / "idVendor").write_text(f"{vid:04x}\n")
    (d / "idProduct").write_text(f"{pid:04x}\n")
    (d / "busnum").write_text(f"{bus}\n")
    (d / "devnum").write_text(f"{num}\n")


def test_usb_permission_failure_names_the_board_and_the_fix(tmp_path: Path) -> None:
    sysfs = tmp_path / "sys"
    _usb_device(sysfs, "1-1.4", 0x2B04, 0xD00C, 1, 7)  # an Argon in DFU mode
    _usb_device(sysfs, "1-1.5", 0x046D, 0xC52B, 1, 8)  # a mouse: not ours
    _usb_device(sysfs, "1-1.6", 0x10C4, 0xEA60, 1, 9)  # a CP2102 bridge
    writable = {str(tmp_path / "dev" / "001" / "009")}
    m = Machine(sysfs_usb=sysfs, dev_usb=tmp_path / "dev", access=lambda p, mode: p in writable)
    checks = check_usb_nodes(m)
    assert [c.ok for c in checks] == [False, True]
    assert "Particle Argon DFU Mode 2b04:d00c at 1-1.4" in checks[0].detail
    assert checks[0].fix is not None and RULES_NAME in checks[0].fix and "plugdev" in checks[0].fix


def test_serial_ports_and_rules(tmp_path: Path) -> None:
    m = Machine(
        udev_rules_dir=tmp_path / "rules.d",
        shipped_rules=ROOT / "udev" / RULES_NAME,
        access=lambda p, mode: p == "/dev/ttyACM0",
        serial_ports=lambda: [
            ("/dev/ttyACM0", 0x2B04, 0xC00C),
            ("/dev/ttyUSB0", 0x1A86, 0x55D3),  # a CH343 on an ESP32-C6 devkit
            ("/dev/ttyUSB1", 0x0403, 0x6ABC),  # FTDI, but no bridge of the table: not the bench's
            ("/dev/ttyS0", None, None),
        ],
    )
    serial = check_serial(m)
    assert [(c.ok, c.detail.split()[0]) for c in serial] == [(True, "/dev/ttyACM0"), (False, "/dev/ttyUSB0")]
    assert "WCH CH343" in serial[1].detail
    assert serial[1].fix is not None and "dialout" in serial[1].fix

    assert check_rules(m).ok is None  # no udev here
    (tmp_path / "rules.d").mkdir()
    assert check_rules(m).ok is False
    (tmp_path / "rules.d" / RULES_NAME).write_bytes((ROOT / "udev" / RULES_NAME).read_bytes())
    assert check_rules(m).ok is True
    (tmp_path / "rules.d" / RULES_NAME).write_text("# edited\n")
    assert check_rules(m).ok is False


def test_registry_writability(tmp_path: Path) -> None:
    m = Machine(access=os.access)
    assert check_registry(tmp_path / "deep" / "station.db", m).ok is True
    locked = Machine(access=lambda p, mode: False)
    result = check_registry(tmp_path / "station.db", locked)
    assert result.ok is False and result.fix is not None and "BENCHFLASH_DB" in result.fix


def test_doctor_command_json(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["doctor", "--json", "--db", str(tmp_path / "station.db")])
    assert result.exit_code in (0, 1)
    checks = json.loads(result.output)
    names = {c["name"] for c in checks}
    assert {"libusb", "udev rules", "registry"} <= names
    assert result.exit_code == (1 if any(c["ok"] is False for c in checks) else 0)


def test_usb_ids_json_is_the_family_table() -> None:
    from station.devices.families import FAMILIES

    result = CliRunner().invoke(main, ["doctor", "--usb-ids", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert all(set(row) == {"vid", "pid", "family", "mode", "name"} for row in rows)
    assert all(len(row["vid"]) == 4 and row["vid"] == row["vid"].lower() and len(row["pid"]) == 4 for row in rows)
    listed = {(int(r["vid"], 16), int(r["pid"], 16), r["family"]) for r in rows}
    assert listed == {(u.vid, u.pid, f.key.value) for f in FAMILIES for u in f.usb_ids}
    by_id = {(r["vid"], r["pid"], r["family"]): r for r in rows}
    assert by_id[("1a86", "55d3", "esp")]["mode"] == "bootloader"
    assert by_id[("2b04", "d020", "particle-dfu")]["mode"] == "dfu"
    assert by_id[("2b04", "c00c", "particle-serial")]["mode"] == "listening"
    assert ("0403", "6011", "esp") in by_id  # FT4232H

    text = CliRunner().invoke(main, ["doctor", "--usb-ids"])
    assert text.exit_code == 0 and "1a86:55d3  esp" in text.stdout
