"""The shipped udev rules parse as udev rules (udevadm verify is not on Debian 12) and grant every USB ID
of the family table: the IDs discovery claims are the IDs the rules open to the plugdev group."""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

from station.devices.families import all_usb_ids
from station.doctor import RULES_NAME

RULES = Path(__file__).resolve().parents[2] / "udev" / RULES_NAME
TOKEN = re.compile(r'^(?P<key>[A-Z_]+)(\{(?P<attr>[A-Za-z0-9_]+)\})?(?P<op>==|!=|\+=|-=|:=|=)"(?P<value>[^"]*)"$')
KEYS = {"ACTION", "SUBSYSTEM", "SUBSYSTEMS", "KERNEL", "ATTRS", "ATTR", "ENV", "TAG", "MODE", "GROUP", "GOTO", "LABEL"}
MATCH_KEYS = {"ACTION", "SUBSYSTEM", "SUBSYSTEMS", "KERNEL", "ATTRS", "ATTR"}


def _rules() -> list[list[re.Match[str]]]:
    parsed = []
    for number, line in enumerate(RULES.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        tokens = []
        for raw in (t.strip() for t in line.split(",")):
            match = TOKEN.match(raw)
            assert match, f"{RULES.name}:{number}: bad token {raw!r}"
            assert match["key"] in KEYS, f"{RULES.name}:{number}: unknown key {match['key']}"
            if match["key"] in MATCH_KEYS and match["key"] != "ENV":
                assert match["op"] in ("==", "!="), f"{RULES.name}:{number}: {raw!r} assigns to a match key"
            tokens.append(match)
        parsed.append(tokens)
    return parsed


def test_rules_parse_and_gotos_have_labels() -> None:
    rules = _rules()
    gotos = {t["value"] for r in rules for t in r if t["key"] == "GOTO"}
    labels = {t["value"] for r in rules for t in r if t["key"] == "LABEL"}
    assert gotos and gotos <= labels


def test_every_flashing_vendor_gets_group_access_and_modemmanager_ignore() -> None:
    covered = set()
    for rule in _rules():
        keys = {t["key"]: t for t in rule}
        vendor = next((t["value"] for t in rule if t["key"] == "ATTRS" and t["attr"] == "idVendor"), None)
        if vendor is None:
            continue
        covered.add(int(vendor, 16))
        assert keys["MODE"]["value"] == "0660" and keys["GROUP"]["value"] == "plugdev"
        assert any(t["key"] == "ENV" and t["attr"] == "ID_MM_DEVICE_IGNORE" for t in rule)
    assert covered == {usb_id.vid for _, usb_id in all_usb_ids()}


def _matches(pattern: str, value: str) -> bool:
    """udev's glob match: ``*``, ``?``, ``[...]``, and ``|`` between alternatives."""
    return any(fnmatch.fnmatchcase(value, alternative) for alternative in pattern.split("|"))


def _grants(rule: list[re.Match[str]], vid: int, pid: int) -> bool:
    """Whether ``rule`` matches this vendor/product pair and opens it to the plugdev group."""
    keys = {t["key"] for t in rule}
    if not {"MODE", "GROUP"} <= keys:
        return False
    matched_vendor = False
    for token in rule:
        if token["key"] != "ATTRS" or token["attr"] not in ("idVendor", "idProduct"):
            continue
        value = f"{vid:04x}" if token["attr"] == "idVendor" else f"{pid:04x}"
        hit = _matches(token["value"], value)
        if hit != (token["op"] == "=="):
            return False
        matched_vendor |= token["attr"] == "idVendor"
    return matched_vendor


def test_every_usb_id_of_the_family_table_is_granted_by_the_rules() -> None:
    rules = _rules()
    missing = [
        f"{usb_id.vid:04x}:{usb_id.pid:04x} ({family.key.value}, {usb_id.name})"
        for family, usb_id in all_usb_ids()
        if not any(_grants(rule, usb_id.vid, usb_id.pid) for rule in rules)
    ]
    assert not missing, f"in the family table but not granted by udev/{RULES_NAME}: " + ", ".join(missing)


def test_the_grant_check_can_fail() -> None:
    rules = _rules()
    assert not any(_grants(rule, 0x1A86, 0x55E0) for rule in rules)  # a WCH product the table does not have
    assert not any(_grants(rule, 0x0403, 0x6020) for rule in rules)
    assert any(_grants(rule, 0x1A86, 0x55D3) for rule in rules)  # CH343
