"""The one table of board families: every family module is in it, every consumer reads it, and each
family's claims / open / accepts behave as discovery, the line and `station flash` rely on."""

from __future__ import annotations

import ast
import random
import re
from pathlib import Path

import pytest

import station
from station.demo.simulated_bench import SimulatedBench, parse_simulate_spec
from station.devices import esp, particle_dfu, particle_serial
from station.devices.base import DeviceIdentity, Family, Mode
from station.devices.families import FAMILIES, all_usb_ids, families_taking, family_of, known_usb_id
from station.devices.family import Bus, FirmwareKind, SeenPort, Target
from station.line.plan import Target as LineTarget

STATION = Path(station.__file__).parent
ARGON = DeviceIdentity("0123456789abcdef01234567", "argon", 12)
ESP32 = DeviceIdentity("240ac4000001", "ESP32", mac="24:0a:c4:00:00:01")


def test_every_family_module_is_in_the_table_once() -> None:
    exporting = sorted(
        path.stem
        for path in (STATION / "devices").glob("*.py")
        if any(
            isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "FAMILY" for t in node.targets)
            for node in ast.parse(path.read_text()).body
        )
    )
    assert exporting == ["esp", "particle_dfu", "particle_serial"]
    assert [f.key for f in FAMILIES] == [Family.PARTICLE_DFU, Family.PARTICLE_SERIAL, Family.ESP]
    assert {f.key for f in FAMILIES} == set(Family)  # every key has its family
    for family in FAMILIES:
        pairs = [(u.vid, u.pid) for u in family.usb_ids]
        assert len(pairs) == len(set(pairs)), f"{family.key}: an ID listed twice"
        assert all(0 <= v <= 0xFFFF and 0 <= p <= 0xFFFF for v, p in pairs)


def test_no_usb_id_is_copied_outside_the_family_modules() -> None:
    # The table is the only copy: no other production module spells a bridge's vendor ID.
    vendor = re.compile(r"0x(10c4|1a86|0403|303a)\b", re.IGNORECASE)
    allowed = {STATION / "devices" / "esp.py"}
    offenders = [
        str(path.relative_to(STATION.parent))
        for path in STATION.rglob("*.py")
        if path not in allowed and "sim" not in path.relative_to(STATION).parts and vendor.search(path.read_text())
    ]
    assert offenders == []


def test_the_table_knows_the_boards_by_vendor_and_product() -> None:
    assert known_usb_id(0x1A86, 0x55D3) is not None  # CH343
    assert known_usb_id(0x0403, 0x6011) is not None  # FT4232H
    assert known_usb_id(0x2B04, 0xD016) is not None  # A-SoM in DFU mode
    assert known_usb_id(0x0403, 0x6ABC) is None and known_usb_id(0x10C4, 0x8A2A) is None
    ids = {(f.key, u.vid, u.pid): u for f, u in all_usb_ids()}
    assert ids[(Family.ESP, 0x0403, 0x6011)].serial_interfaces == 4
    assert ids[(Family.ESP, 0x10C4, 0xEA71)].serial_interfaces == 4  # CP2108
    assert ids[(Family.ESP, 0x10C4, 0xEA70)].serial_interfaces == 2  # CP2105
    assert ids[(Family.ESP, 0x0403, 0x6010)].not_probed == frozenset({0})  # ESP-Prog JTAG
    assert ids[(Family.PARTICLE_SERIAL, 0x2B04, 0xC00C)].mode is Mode.LISTENING
    assert (Family.PARTICLE_SERIAL, 0x1D50, 0x607D) not in ids  # the Core is never flashed over serial


def test_claims_give_slots_as_the_ports_are() -> None:
    def serial(vid: int, pid: int, location: str | None, device: str = "/dev/ttyUSB0") -> SeenPort:
        return SeenPort(Bus.SERIAL, location=location, vid=vid, pid=pid, device=device)

    quad = [esp.claim(serial(0x0403, 0x6011, f"1-1.4:1.{n}")) for n in range(4)]
    assert [d.port_path for d in quad if d is not None] == [f"1-1.4:1.{n}" for n in range(4)]
    assert esp.claim(serial(0x0403, 0x6010, "1-2:1.0")) is None  # ESP-Prog channel A: JTAG
    channel_b = esp.claim(serial(0x0403, 0x6010, "1-2:1.1"))
    assert channel_b is not None and channel_b.port_path == "1-2:1.1"
    single = esp.claim(serial(0x10C4, 0xEA60, "1-3:1.0"))
    assert single is not None and (single.port_path, single.location) == ("1-3", "1-3:1.0")
    assert esp.claim(serial(0x10C4, 0xEA60, None)) is not None  # no USB location: the node is the slot
    assert particle_serial.claim(serial(0x2B04, 0xC00C, "1-4:1.0")) is not None
    assert particle_serial.claim(serial(0x2B04, 0xD00C, "1-4:1.0")) is None  # DFU mode has no tty
    usb = SeenPort(Bus.USB, location="1-5", vid=0x2B04, pid=0xD020)
    dfu = particle_dfu.claim(usb)
    assert dfu is not None and (dfu.family, dfu.mode, dfu.port_path) == (Family.PARTICLE_DFU, Mode.DFU, "1-5")
    assert esp.claim(usb) is None and particle_serial.claim(usb) is None  # each family its own bus


def test_accepts_is_the_line_target_check() -> None:
    argon = Target(platform_id=12, platform_name="argon")
    assert LineTarget is Target
    assert argon.mismatch(Family.PARTICLE_DFU, ARGON) is None
    assert family_of(Family.PARTICLE_SERIAL).accepts(argon, ARGON) is None
    photon = Target(platform_id=6, platform_name="photon", source="photon-app.bin")
    assert "photon-app.bin is for photon" in (family_of(Family.PARTICLE_DFU).accepts(photon, ARGON) or "")
    assert "cannot take a Particle module" in (family_of(Family.ESP).accepts(argon, ESP32) or "")
    assert "cannot take an ESP image" in (family_of(Family.PARTICLE_DFU).accepts(Target(chip="esp32"), ARGON) or "")
    assert family_of(Family.ESP).accepts(Target(chip="esp32"), ESP32) is None
    assert family_of(Family.ESP).accepts(Target(esp=True), ESP32) is None  # a partition table: any chip
    assert "esp32s3" in (Target(chip="esp32s3").mismatch(Family.ESP, ESP32) or "")
    assert families_taking(FirmwareKind.PARTICLE) == {Family.PARTICLE_DFU, Family.PARTICLE_SERIAL}
    assert families_taking(FirmwareKind.ESP) == {Family.ESP}


@pytest.mark.parametrize("kind", ["argon-dfu", "photon-normal", "argon-serial", "esp32"])
def test_an_opened_device_keeps_its_description(kind: str) -> None:
    with SimulatedBench(timing=False, rng=random.Random(5)) as bench:
        (slot,) = bench.attach_all(parse_simulate_spec(kind))
        (candidate,) = bench.scan()
        device = candidate.open()
        try:
            described = device.describe()
        finally:
            device.close()
    assert described.port_path == candidate.description.port_path == slot
    assert described.family is candidate.description.family
    if kind == "photon-normal":  # switched into DFU mode on open: the same slot, now in DFU mode
        assert (described.mode, described.pid) == (Mode.DFU, 0xD006)
    else:
        assert described.mode is candidate.description.mode


_DEVICE_CONSTANTS = (
    Path(__file__).resolve().parents[2] / ".cache" / "npm" / "node_modules" / "@particle" / "device-constants"
)
_GENERATION_BY_MCU = {"stm32f1xx": "gen1", "stm32f2xx": "gen2", "nrf52840": "gen3", "rtl872x": "rtl872x"}


@pytest.mark.skipif(
    not (_DEVICE_CONSTANTS / "src" / "constants.json").is_file(),
    reason="@particle/device-constants is not installed (make npm-peers installs it)",
)
def test_particle_usb_ids_are_the_vendors_device_constants() -> None:
    # The table particle-usb (and so particle-cli) finds devices with, read from the npm package itself.
    import json

    from station.protocols.particle_usb import CORE, PLATFORMS

    vendor = json.loads((_DEVICE_CONSTANTS / "src" / "constants.json").read_text())
    flashable = {
        v["id"]: v for v in vendor.values() if v.get("dfu") and int(v["dfu"].get("productId", "0"), 16) and v["id"]
    }
    ours = {p.platform_id: p for p in PLATFORMS if p.platform_id}
    assert set(ours) == set(flashable), "platforms with DFU IDs in device-constants but not here, or the reverse"
    for platform_id, p in ours.items():
        theirs = flashable[platform_id]
        assert p.name == theirs["name"]
        assert (p.vid, p.normal_pid) == (int(theirs["usb"]["vendorId"], 16), int(theirs["usb"]["productId"], 16))
        assert (p.vid, p.dfu_pid) == (int(theirs["dfu"]["vendorId"], 16), int(theirs["dfu"]["productId"], 16))
        assert p.generation == _GENERATION_BY_MCU[theirs["baseMcu"]], p.name
    core = vendor["core"]  # the Spark Core, under its own vendor ID
    assert (CORE.vid, CORE.normal_pid, CORE.dfu_pid) == (
        int(core["usb"]["vendorId"], 16),
        int(core["usb"]["productId"], 16),
        int(core["dfu"]["productId"], 16),
    )


def test_espressifs_usb_serial_jtag_is_the_one_esptool_knows() -> None:
    from esptool.loader import ESPLoader

    usb_id = known_usb_id(ESPLoader.ESPRESSIF_VID, ESPLoader.USB_JTAG_SERIAL_PID)
    assert usb_id is not None and family_of(Family.ESP).usb_id(usb_id.vid, usb_id.pid) is usb_id
