"""Device group and device name rules, the batch group a line's devices go into, and the serial-number
mapping that names devices: everything checked here, before a request could be refused for it.

Group names follow the console: lowercase a-z, 0-9, ``-`` and ``_``, at most 64 characters.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from types import MappingProxyType

from station.errors import InputError, Reason

MAX_GROUP_NAME = 64
GROUP_NAME = re.compile(r"[a-z0-9_-]{1,64}")
# The batch group of a run: its day and the station, e.g. "20261126_line-a".
DEFAULT_GROUP_TEMPLATE = "{date}_{station}"
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_KNOWN_PLACEHOLDERS = ("date", "station")
_NOT_ALLOWED = re.compile(r"[^a-z0-9_-]+")

# Device names: letters, digits, - and _ (what the console accepts without rewriting them).
MAX_DEVICE_NAME = 64
DEVICE_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_DEVICE_ID = re.compile(r"[0-9a-f]{24}")
MAX_NAMES_FILE = 16 * 1024 * 1024


class GroupNameError(InputError):
    """A group or device name the console would refuse."""

    reason = Reason.BAD_INPUT


def normalise_group_name(text: str, *, where: str = "group") -> str:
    """The group name the console would store for ``text``: trimmed and lowercased, then checked.

    Anything else (spaces, dots, accents, an empty or over-long name) is a ``GroupNameError`` that
    names the offending characters, because silently rewriting them would put devices into a group
    nobody asked for.
    """
    if not isinstance(text, str):
        raise GroupNameError(f"{where}: a group name must be text, got {text!r}")
    name = text.strip().lower()
    if not name:
        raise GroupNameError(f"{where}: the group name is empty", hint=_RULES)
    bad = sorted(set("".join(_NOT_ALLOWED.findall(name))))
    if bad:
        shown = " ".join(repr(c) for c in bad)
        raise GroupNameError(
            f"{where}: group name {_show(text)} has characters the console refuses: {shown}", hint=_RULES
        )
    if len(name) > MAX_GROUP_NAME:
        raise GroupNameError(
            f"{where}: group name {_show(text)} is {len(name)} characters long, at most {MAX_GROUP_NAME} allowed",
            hint=_RULES,
        )
    return name


_RULES = "group names are lowercase letters, digits, - and _, at most 64 characters"


def _show(text: str) -> str:
    return repr(text if len(text) <= 80 else text[:77] + "...")


def station_slug(station_id: str) -> str:
    """A station ID as it may appear inside a group name: lowercased, other characters runs as ``-``."""
    slug = _NOT_ALLOWED.sub("-", station_id.strip().lower()).strip("-")
    return slug or "station"


def check_group_template(template: str, *, where: str = "[cloud] group") -> str:
    """A group template as the profile gives it: placeholders known, literal text allowed; a
    template without placeholders is a plain group name and comes back normalised."""
    if not isinstance(template, str):
        raise GroupNameError(f"{where}: must be a group name or false, got {template!r}")
    if not _PLACEHOLDER.search(template):
        return normalise_group_name(template, where=where)
    batch_group(template, station_id="s", day=date(2000, 1, 1), where=where)
    return template.strip()


def batch_group(template: str, *, station_id: str, day: date, where: str = "[cloud] group") -> str:
    """The group of a run: ``template`` with ``{date}`` (YYYYMMDD) and ``{station}`` filled in, checked.

    The station ID is made safe for a group name (``Line A.1`` -> ``line-a-1``); the template's own
    text is not rewritten: a character the console refuses there is an error naming it.
    """
    unknown = sorted({m for m in _PLACEHOLDER.findall(template) if m not in _KNOWN_PLACEHOLDERS})
    if unknown:
        raise GroupNameError(
            f"{where}: unknown placeholder(s) {', '.join('{' + u + '}' for u in unknown)} in {_show(template)}",
            hint="use {date} (YYYYMMDD) and {station} (the station ID)",
        )
    # Check the literal parts first so the error points at what the user wrote.
    literal = _PLACEHOLDER.sub("", template)
    if literal.strip():
        normalise_group_name(literal, where=where)
    name = template.replace("{date}", day.strftime("%Y%m%d")).replace("{station}", station_slug(station_id))
    if len(name.strip()) > MAX_GROUP_NAME:
        raise GroupNameError(
            f"{where}: group {name.strip()!r} is {len(name.strip())} characters long, at most {MAX_GROUP_NAME} allowed",
            hint="use a shorter station_id, or set [cloud] group to a shorter name",
        )
    return normalise_group_name(name, where=where)


def check_device_name(name: str, *, where: str = "device name") -> str:
    if not isinstance(name, str) or not DEVICE_NAME.fullmatch(name):
        raise GroupNameError(
            f"{where}: {_show(str(name))} is not a usable device name",
            hint=f"device names are letters, digits, - and _, 1 to {MAX_DEVICE_NAME} characters",
        )
    return name


@dataclass(frozen=True)
class DeviceNames:
    """Device ID -> the name the sync gives it (a serial number, usually), read from a mapping file."""

    source: str
    names: Mapping[str, str]

    def name_for(self, device_id: str) -> str | None:
        return self.names.get(device_id.strip().lower())

    def __len__(self) -> int:
        return len(self.names)


def parse_device_names(text: str, *, source: str = "<names>") -> DeviceNames:
    """Lines ``DEVICE_ID,NAME`` (or separated by a tab or spaces); ``#`` comments and blank lines
    ignored; a first line ``device_id,...`` is a header. Errors name the file and line."""
    names: dict[str, str] = {}
    first = True
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        fields = [f.strip() for f in re.split(r"[,\t;]|\s+", line) if f.strip()]
        if len(fields) != 2:
            raise GroupNameError(f"{source}:{number}: expected DEVICE_ID,NAME, got {_show(raw.strip())}")
        device_id, name = fields[0].lower(), fields[1]
        header = first and device_id.replace("_", "").replace(" ", "") in ("deviceid", "id", "device")
        first = False
        if header:
            continue
        if not _DEVICE_ID.fullmatch(device_id):
            raise GroupNameError(f"{source}:{number}: {_show(fields[0])} is not a 24-hex-digit device ID")
        check_device_name(name, where=f"{source}:{number}")
        if names.get(device_id, name) != name:
            raise GroupNameError(
                f"{source}:{number}: device {device_id} is named twice ({names[device_id]!r} and {name!r})"
            )
        names[device_id] = name
    return DeviceNames(source, MappingProxyType(names))


def load_device_names(path: Path) -> DeviceNames:
    """Read the mapping file the profile's ``[cloud] device_names`` names (bounded, UTF-8)."""
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_NAMES_FILE + 1)
    except FileNotFoundError:
        raise GroupNameError(f"{path}: device name mapping not found", hint="check [cloud] device_names") from None
    except OSError as exc:
        raise GroupNameError(f"{path}: cannot read the device name mapping: {exc.strerror}") from None
    if len(raw) > MAX_NAMES_FILE:
        raise GroupNameError(f"{path}: device name mapping is larger than {MAX_NAMES_FILE} bytes")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise GroupNameError(f"{path}: device name mapping is not UTF-8 text") from None
    return parse_device_names(text, source=str(path))
