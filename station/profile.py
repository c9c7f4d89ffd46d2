"""A line's TOML profile: which bundle, which keys, what the line does, slot labels, cloud section.

Paths in a profile are relative to the profile file. Unknown keys are errors, not silently
ignored: a misspelt ``require_signature`` must never turn signature checks off.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from station.errors import InputError


class LineMode(StrEnum):
    FLASH = "flash"  # programming during manufacturing
    IDENTIFY = "identify"  # record only; firmware arrives over the air at setup


class VerifyPolicy(StrEnum):
    ALWAYS = "always"  # read back / hash every image after writing
    NEVER = "never"
    # As ALWAYS, and a board whose images cannot be checked at all fails (an ESP in Secure Download
    # Mode computes no MD5; with ALWAYS it passes and its attempt records why it was not verified).
    REQUIRED = "required"


# ESP defaults: ESP-IDF's flashing baud (idf.py ESPBAUD; esptool's own CLI stays at the ROM's 115200
# unless told), and esptool's connect attempts (esptool/loader.py DEFAULT_CONNECT_ATTEMPTS).
DEFAULT_ESP_BAUD = 460800
DEFAULT_CONNECT_ATTEMPTS = 7


_KEYS = {
    "station_id",
    "bundle",
    "trusted_keys",
    "require_signature",
    "mode",
    "verify",
    "confirm_version",
    "job_timeout",
    "operator",
    "slots",
    "cloud",
    # Traceability (issue 16): downgrade floor, serial-number scan, unit labels, the audit signing key.
    "min_version",
    "scan",
    "label",
    "station_key",
    "unit_data",
    "esp_baud",
    "connect_attempts",
}


class ScanPolicy(StrEnum):
    OFF = "off"
    REQUIRED = "required"  # every board waits for its label's serial number before anything is written


@dataclass(frozen=True)
class Profile:
    path: Path
    station_id: str
    bundle: Path
    trusted_keys: tuple[Path, ...] = ()
    require_signature: bool = True
    mode: LineMode = LineMode.FLASH
    verify: VerifyPolicy = VerifyPolicy.ALWAYS
    confirm_version: bool = True
    job_timeout: float = 600.0
    operator: str | None = None
    slot_labels: Mapping[str, str] = field(default_factory=dict)
    cloud: Mapping[str, Any] | None = None
    min_version: int | None = None  # refuse bundles below this product version
    scan: ScanPolicy = ScanPolicy.OFF
    label_printer: Mapping[str, Any] | None = None  # the [label] section, read by station.labels
    station_key: Path | None = None  # the audit signing key; default: station.key next to the registry
    unit_data: Mapping[str, Any] | None = None  # [unit_data], checked against the bundle by station.line.unit_data
    esp_baud: int = DEFAULT_ESP_BAUD  # ESP boards: the baud the flasher stub is switched to
    connect_attempts: int = DEFAULT_CONNECT_ATTEMPTS  # ESP boards: reset + sync attempts per board

    def label(self, port_path: str) -> str:
        return self.slot_labels.get(port_path, port_path)


def _fail(path: Path, message: str) -> InputError:
    return InputError(f"{path}: {message}", hint="fix the profile and run `station check --profile` again")


def _expect(path: Path, raw: Mapping[str, Any], key: str, kind: type | tuple[type, ...], what: str) -> Any:
    value = raw[key]
    # bool is an int in Python; a number option given `true` is still a mistake.
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise _fail(path, f"{key} must be {what}, not {value!r}")
    return value


def _optional(
    path: Path, raw: Mapping[str, Any], key: str, kind: type | tuple[type, ...], what: str, default: Any
) -> Any:
    return _expect(path, raw, key, kind, what) if key in raw else default


def load_profile(path: str | Path) -> Profile:
    """Read and validate a profile; every problem is an InputError naming the file and the key."""
    p = Path(path)
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"cannot read profile {p}: {exc.strerror}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise _fail(p, f"not valid TOML: {exc}") from exc
    return profile_from_mapping(raw, p)


def profile_from_mapping(raw: Mapping[str, Any], path: Path) -> Profile:
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise _fail(path, f"unknown key(s): {', '.join(unknown)} (known: {', '.join(sorted(_KEYS))})")
    for key in ("station_id", "bundle"):
        if key not in raw:
            raise _fail(path, f"missing required key {key!r}")
    base = path.parent
    station_id = _expect(path, raw, "station_id", str, "a string")
    if not station_id.strip():
        raise _fail(path, "station_id must not be empty")
    bundle = base / _expect(path, raw, "bundle", str, "a path string")
    keys: tuple[Path, ...] = ()
    if "trusted_keys" in raw:
        listed = _expect(path, raw, "trusted_keys", list, "a list of paths")
        if not all(isinstance(k, str) for k in listed):
            raise _fail(path, "trusted_keys must be a list of path strings")
        keys = tuple(base / k for k in listed)
    require_signature = _optional(path, raw, "require_signature", bool, "true or false", True)
    if require_signature and not keys:
        raise _fail(path, "require_signature is on but trusted_keys lists no public key")
    try:
        mode = LineMode(raw.get("mode", LineMode.FLASH.value))
        verify = VerifyPolicy(raw.get("verify", VerifyPolicy.ALWAYS.value))
    except ValueError as exc:
        raise _fail(path, str(exc)) from exc
    confirm = _optional(path, raw, "confirm_version", bool, "true or false", True)
    timeout = float(_optional(path, raw, "job_timeout", (int, float), "a number of seconds", 600.0))
    if not 1 <= timeout <= 24 * 3600:
        raise _fail(path, f"job_timeout must be between 1 and 86400 seconds, not {timeout}")
    operator = _optional(path, raw, "operator", str, "a string", None)
    labels: dict[str, str] = {}
    if "slots" in raw:
        table = _expect(path, raw, "slots", dict, "a table of port path = label")
        for port, label in table.items():
            if not isinstance(label, str) or not label.strip():
                raise _fail(path, f"slot label for {port!r} must be a non-empty string")
            labels[str(port)] = label
    cloud = _optional(path, raw, "cloud", dict, "a table", None)
    min_version = _optional(path, raw, "min_version", int, "a product version number", None)
    if min_version is not None and not 0 <= min_version <= 0xFFFF:
        raise _fail(path, f"min_version must be 0-65535, not {min_version}")
    try:
        scan = ScanPolicy(_optional(path, raw, "scan", str, '"off" or "required"', ScanPolicy.OFF.value))
    except ValueError as exc:
        raise _fail(path, f"scan: {exc}") from exc
    label_section = _optional(path, raw, "label", dict, "a table", None)
    station_key = _optional(path, raw, "station_key", str, "a path string", None)
    unit_data = _optional(path, raw, "unit_data", dict, "a table", None)
    if unit_data is not None and mode is not LineMode.FLASH:
        raise _fail(path, '[unit_data] is written while flashing: it needs mode = "flash"')
    esp_baud = _optional(path, raw, "esp_baud", int, "a baud rate (a whole number)", DEFAULT_ESP_BAUD)
    if not 9600 <= esp_baud <= 5_000_000:
        raise _fail(path, f"esp_baud must be between 9600 and 5000000, not {esp_baud}")
    attempts = _optional(path, raw, "connect_attempts", int, "a whole number", DEFAULT_CONNECT_ATTEMPTS)
    if not 1 <= attempts <= 1000:
        raise _fail(path, f"connect_attempts must be between 1 and 1000, not {attempts}")
    return Profile(
        path=path,
        station_id=station_id,
        bundle=bundle,
        trusted_keys=keys,
        require_signature=require_signature,
        mode=mode,
        verify=verify,
        confirm_version=confirm,
        job_timeout=timeout,
        operator=operator,
        slot_labels=labels,
        cloud=cloud,
        min_version=min_version,
        scan=scan,
        label_printer=label_section,
        station_key=None if station_key is None else base / station_key,
        unit_data=unit_data,
        esp_baud=esp_baud,
        connect_attempts=attempts,
    )
