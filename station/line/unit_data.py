"""The ``[unit_data]`` profile section: each ESP board gets its own NVS partition on the line.

The rows are the board's serial number (from a counter or a list, reserved in the registry before
anything is written), the product, the station, the time, and fixed keys from the profile; the
bytes come from Espressif's generator (firmware_tools.esp.nvs) and go to the ``nvs`` partition of
the bundle's own partition table.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from firmware_tools.bundle import VerifiedBundle
from firmware_tools.bundle.manifest import ImageKind
from firmware_tools.bundle.partition_table import parse_partition_table
from firmware_tools.errors import FirmwareError
from firmware_tools.esp.flash_layout import SUBTYPE_DATA_NVS, TYPE_DATA, nvs_partition
from firmware_tools.esp.nvs import NvsEntry, build_nvs_partition, entries, entry
from station.devices.base import FlashImage
from station.errors import InputError
from station.store.unit_serials import SerialSource

# The rows every unit gets, in this order, before the profile's fixed keys.
BUILT_IN_KEYS = ("serial", "product", "product_ver", "station", "made_at")
_KEYS = {
    "counter_start",
    "serial_list",
    "serial_prefix",
    "serial_digits",
    "pool",
    "namespace",
    "partition",
    "fixed",
}
MAX_LIST_BYTES = 4 * 1024 * 1024
NVS_IMAGE_NAME = "unit-data.nvs"


@dataclass(frozen=True)
class UnitDataPlan:
    """What every board of the run gets written into its NVS partition, and where."""

    source: SerialSource
    namespace: str
    partition: str
    offset: int
    size: int
    product_id: int
    product_version: int
    fixed: tuple[tuple[str, str | int], ...] = ()

    def rows(self, *, serial: str, station: str, now: float) -> tuple[NvsEntry, ...]:
        made_at = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        built_in: dict[str, str | int] = {
            "serial": serial,
            "product": self.product_id,
            "product_ver": self.product_version,
            "station": station,
            "made_at": made_at,
        }
        return entries({**built_in, **dict(self.fixed)})

    def image(self, rows: tuple[NvsEntry, ...]) -> FlashImage:
        data = build_nvs_partition(self.namespace, rows, self.size)
        return FlashImage(name=NVS_IMAGE_NAME, data=data, address=self.offset, kind="data")

    def record(self, rows: tuple[NvsEntry, ...], image: FlashImage) -> str:
        """The JSON kept with the attempt: enough to make the same bytes again with the generator."""
        return json.dumps(
            {
                "partition": self.partition,
                "offset": self.offset,
                "size": self.size,
                "namespace": self.namespace,
                "rows": [r.to_json() for r in rows],
                "sha256": image.sha256,
            },
            separators=(",", ":"),
        )

    def describe(self) -> str:
        s = self.source
        where = f"counter from {s.format(s.start)}" if s.start is not None else f"list of {len(s.serials or ())}"
        return (
            f"unit data: serial ({where}, pool {s.pool!r}), {', '.join(BUILT_IN_KEYS[1:])}"
            + "".join(f", {k}" for k, _ in self.fixed)
            + f" -> NVS namespace {self.namespace!r} in partition {self.partition!r} at {self.offset:#x}"
        )


def _fail(where: str, message: str) -> InputError:
    return InputError(f"{where}: {message}", hint="fix the profile and run `station check --profile` again")


def _read_list(path: Path, where: str) -> tuple[str, ...]:
    from firmware_tools.fileio import read_regular_file

    try:
        raw = read_regular_file(path, MAX_LIST_BYTES, what="serial list")
    except FirmwareError as exc:
        raise _fail(where, f"serial_list: {exc.one_line()}") from None
    if len(raw) > MAX_LIST_BYTES:
        raise _fail(where, f"serial_list {path} is larger than {MAX_LIST_BYTES} bytes")
    try:
        lines = [line.strip() for line in raw.decode("utf-8").splitlines()]
    except UnicodeDecodeError:
        raise _fail(where, f"serial_list {path} is not UTF-8 text") from None
    serials = tuple(line for line in lines if line and not line.startswith("#"))
    seen: set[str] = set()
    for serial in serials:
        if serial in seen:
            raise _fail(where, f"serial_list {path} lists {serial!r} twice")
        seen.add(serial)
        try:
            entry("serial", serial)
        except FirmwareError as exc:
            raise _fail(where, f"serial_list {path}: {exc.message}") from None
    if not serials:
        raise _fail(where, f"serial_list {path} holds no serial numbers")
    return serials


def _table_partition(bundle: VerifiedBundle, label: str | None, where: str) -> tuple[str, int, int]:
    tables = [i for i in bundle.images if i.kind is ImageKind.ESP_PARTITION_TABLE]
    if not tables:
        raise _fail(where, "the bundle carries no partition table, so no nvs partition is known; release it with one")
    table = parse_partition_table(tables[0].data, name=tables[0].name)
    if label is not None:
        part = next((p for p in table.partitions if p.label == label), None)
        if part is None or (part.type, part.subtype) != (TYPE_DATA, SUBTYPE_DATA_NVS):
            raise _fail(where, f"partition {label!r} is not an nvs data partition of the bundle's table")
    else:
        part = nvs_partition(table)
        if part is None:
            raise _fail(where, "the bundle's partition table has no nvs partition")
    return part.label, part.offset, part.size


def unit_data_plan(
    raw: Mapping[str, Any], *, where: str, base_dir: Path, bundle: VerifiedBundle, station_id: str
) -> UnitDataPlan:
    """The section, checked; every problem is an InputError naming the key."""
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise _fail(where, f"unknown key(s): {', '.join(unknown)} (known: {', '.join(sorted(_KEYS))})")
    if bundle.manifest.target.chip is None:
        raise _fail(where, "per-unit NVS data is for ESP boards; this bundle is for a Particle platform")
    if ("counter_start" in raw) == ("serial_list" in raw):
        raise _fail(where, "give exactly one of counter_start (a number) or serial_list (a file, one per line)")

    def text(key: str, default: str) -> str:
        value = raw.get(key, default)
        if not isinstance(value, str):
            raise _fail(where, f"{key} must be a string, not {value!r}")
        return value

    prefix = text("serial_prefix", "")
    digits = raw.get("serial_digits", 6)
    if isinstance(digits, bool) or not isinstance(digits, int) or not 1 <= digits <= 12:
        raise _fail(where, f"serial_digits must be a number from 1 to 12, not {digits!r}")
    if "counter_start" in raw:
        start = raw["counter_start"]
        if isinstance(start, bool) or not isinstance(start, int) or start < 0:
            raise _fail(where, f"counter_start must be a number >= 0, not {start!r}")
        source = SerialSource(text("pool", f"counter:{prefix}"), start=start, prefix=prefix, digits=digits)
    else:
        path = base_dir / text("serial_list", "")
        source = SerialSource(text("pool", f"list:{path.name}"), serials=_read_list(path, where))
    namespace = text("namespace", "factory")
    fixed_raw = raw.get("fixed", {})
    if not isinstance(fixed_raw, dict):
        raise _fail(where, "fixed must be a table of key = string or number")
    fixed: list[tuple[str, str | int]] = []
    for key, value in fixed_raw.items():
        if key in BUILT_IN_KEYS:
            raise _fail(where, f"fixed key {key!r} is one the station writes itself ({', '.join(BUILT_IN_KEYS)})")
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise _fail(where, f"fixed.{key} must be a string or a whole number, not {value!r}")
        fixed.append((str(key), value))
    label, offset, size = _table_partition(bundle, raw.get("partition"), where)
    plan = UnitDataPlan(
        source,
        namespace,
        label,
        offset,
        size,
        bundle.manifest.product.id,
        bundle.manifest.product_version,
        tuple(fixed),
    )
    # Build one unit's partition now, so a row the generator refuses fails `station check`, not a board.
    sample = source.format(source.start) if source.start is not None else (source.serials or ("",))[0]
    try:
        plan.image(plan.rows(serial=sample, station=station_id, now=0.0))
    except FirmwareError as exc:
        raise _fail(where, exc.message) from None
    return plan
