"""`station doctor`: can this machine flash? libusb, device permissions, serial access, udev rules, registry.

Each check says what it found and, when it fails, the exact fix, so that a permission problem is
never reported as "no device found". Which USB devices are the bench's comes from the family table
(station.devices.families), the same IDs discovery claims and the udev rules grant. Roots are
injectable so tests build a fake sysfs and /dev.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from station.devices.families import known_usb_id

RULES_NAME = "60-benchflash.rules"
INSTALL_RULES = (
    f"sudo cp udev/{RULES_NAME} /etc/udev/rules.d/ && sudo udevadm control --reload && sudo udevadm trigger, "
    "add yourself to plugdev (sudo usermod -aG plugdev $USER), log in again and re-plug the boards"
)


@dataclass(frozen=True)
class DoctorCheck:
    name: str
    ok: bool | None  # None: not applicable here
    detail: str
    fix: str | None = None

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail, "fix": self.fix}


@dataclass(frozen=True)
class Machine:
    """Where the doctor looks; the defaults are the real machine."""

    sysfs_usb: Path = Path("/sys/bus/usb/devices")
    dev_usb: Path = Path("/dev/bus/usb")
    udev_rules_dir: Path = Path("/etc/udev/rules.d")
    shipped_rules: Path = Path(__file__).resolve().parents[1] / "udev" / RULES_NAME
    access: Callable[[str, int], bool] = os.access
    serial_ports: Callable[[], list[tuple[str, int | None, int | None]]] = field(default=lambda: _serial_ports())


def _serial_ports() -> list[tuple[str, int | None, int | None]]:
    from serial.tools import list_ports

    return [(p.device, p.vid, p.pid) for p in list_ports.comports()]


def check_libusb() -> DoctorCheck:
    try:
        import usb.backend.libusb1 as libusb1

        backend = libusb1.get_backend()
    except Exception as exc:  # a broken libusb install raises all sorts of errors
        backend, why = None, str(exc)
    else:
        why = "libusb-1.0 shared library not found"
    if backend is None:
        return DoctorCheck("libusb", False, why, "sudo apt-get install libusb-1.0-0 (Debian/Ubuntu)")
    return DoctorCheck("libusb", True, "libusb-1.0 found")


def check_usb_nodes(m: Machine) -> list[DoctorCheck]:
    if not m.sysfs_usb.is_dir():
        return [DoctorCheck("usb devices", None, f"{m.sysfs_usb} not present: no USB bus visible here")]
    checks: list[DoctorCheck] = []
    for dev in sorted(m.sysfs_usb.iterdir()):
        try:
            vid = int((dev / "idVendor").read_text().strip(), 16)
            pid = int((dev / "idProduct").read_text().strip(), 16)
            bus = int((dev / "busnum").read_text())
            num = int((dev / "devnum").read_text())
        except (OSError, ValueError):
            continue  # interfaces and hubs without these files
        known = known_usb_id(vid, pid)  # the family table: what discovery would claim
        if known is None:
            continue
        node = m.dev_usb / f"{bus:03d}" / f"{num:03d}"
        what = f"{known.name} {vid:04x}:{pid:04x} at {dev.name} ({node})"
        if m.access(str(node), os.R_OK | os.W_OK):
            checks.append(DoctorCheck("usb permission", True, f"{what}: read/write ok"))
        else:
            checks.append(DoctorCheck("usb permission", False, f"{what}: no read/write access", INSTALL_RULES))
    if not checks:
        checks.append(DoctorCheck("usb devices", None, "no Particle or ESP USB device attached"))
    return checks


def check_serial(m: Machine) -> list[DoctorCheck]:
    checks = []
    for device, vid, pid in m.serial_ports():
        known = known_usb_id(vid, pid)
        if known is None:
            continue
        if m.access(device, os.R_OK | os.W_OK):
            checks.append(DoctorCheck("serial access", True, f"{device} ({known.name}): read/write ok"))
        else:
            checks.append(
                DoctorCheck(
                    "serial access",
                    False,
                    f"{device} ({known.name}): no read/write access",
                    "sudo usermod -aG dialout $USER and log in again, or install the udev rules: " + INSTALL_RULES,
                )
            )
    return checks or [DoctorCheck("serial ports", None, "no Particle or ESP serial port attached")]


def check_rules(m: Machine) -> DoctorCheck:
    if not m.udev_rules_dir.is_dir():
        return DoctorCheck("udev rules", None, f"{m.udev_rules_dir} not present: udev is not in use here")
    installed = m.udev_rules_dir / RULES_NAME
    if not installed.is_file():
        return DoctorCheck("udev rules", False, f"{installed} is not installed", INSTALL_RULES)
    if m.shipped_rules.is_file() and installed.read_bytes() != m.shipped_rules.read_bytes():
        detail = f"{installed} differs from the shipped {m.shipped_rules}"
        return DoctorCheck("udev rules", False, detail, INSTALL_RULES)
    return DoctorCheck("udev rules", True, f"{installed} installed")


def check_registry(db: Path, m: Machine) -> DoctorCheck:
    fix = f"pass --db PATH or set BENCHFLASH_DB to a file in a folder you can write; now {db}"
    if db.exists():
        ok = m.access(str(db), os.R_OK | os.W_OK)
        return DoctorCheck("registry", ok, f"{db} {'is writable' if ok else 'is not writable'}", None if ok else fix)
    folder = db.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    ok = m.access(str(folder), os.W_OK | os.X_OK)
    detail = f"{db} does not exist yet; {folder} {'is writable' if ok else 'is not writable'}"
    return DoctorCheck("registry", ok, detail, None if ok else fix)


def run_checks(db: Path, machine: Machine | None = None) -> list[DoctorCheck]:
    m = machine or Machine()
    return [
        check_libusb(),
        *check_usb_nodes(m),
        *check_serial(m),
        check_rules(m),
        check_registry(db, m),
    ]
