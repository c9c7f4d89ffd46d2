"""The shipped udev rules parse as udev rules (udevadm verify is not on Debian 12) and cover our vendors."""

from __future__ import annotations

import re
from pathlib import Path

from station.doctor import FLASH_VENDORS, RULES_NAME

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
    assert covered == set(FLASH_VENDORS)
