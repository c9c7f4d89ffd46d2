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
    assert "Particle 2b04:d00c at 1-1.4" in checks[0].detail
    assert checks[0].fix is not None and RULES_NAME in checks[0].fix and "plugdev" in checks[0].fix


def test_serial_ports_and_rules(tmp_path: Path) -> None:
    m = Machine(
        udev_rules_dir=tmp_path / "rules.d",
        shipped_rules=ROOT / "udev" / RULES_NAME,
        access=lambda p, mode: p == "/dev/ttyACM0",
        serial_ports=lambda: [("/dev/ttyACM0", 0x2B04), ("/dev/ttyUSB0", 0x1A86), ("/dev/ttyS0", None)],
    )
    serial = check_serial(m)
    assert [(c.ok, c.detail.split()[0]) for c in serial] == [(True, "/dev/ttyACM0"), (False, "/dev/ttyUSB0")]
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
