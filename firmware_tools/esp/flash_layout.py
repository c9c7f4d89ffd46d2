"""Where each piece of an ESP flash belongs, judged the way the chip boots: the one set of layout rules
that ``fwtool validate``/``release``/``verify`` and ``station check``/``flash`` apply.

The ROM loads the second-stage bootloader from the chip's fixed offset (esptool's per-target
``BOOTLOADER_FLASH_OFFSET``); that bootloader reads the partition table at 0x8000 (ESP-IDF's
``CONFIG_PARTITION_TABLE_OFFSET``) and boots an app from an app partition. The table rules are those
of ESP-IDF's ``gen_esp32part.py`` (``PartitionDefinition.verify`` and ``PartitionTable.verify``).
Every broken rule is one named failed Check saying the address, the partition and what to do.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from firmware_tools.checks import Check
from firmware_tools.esp.chips import FLASH_SIZES, chip_by_name

if TYPE_CHECKING:
    from firmware_tools.bundle.partition_table import Partition, PartitionTable
    from firmware_tools.esp.image import EspImage

# esptool/targets/*.py BOOTLOADER_FLASH_OFFSET, resolved through each class's parents (S2 inherits
# ESP32's 0x1000; C2 inherits C3's 0x0; C61 and H2 inherit C6's 0x0; H21 inherits H2's).
BOOTLOADER_FLASH_OFFSET: dict[str, int] = {
    "esp32": 0x1000,
    "esp32s2": 0x1000,
    "esp32s3": 0x0,
    "esp32c2": 0x0,
    "esp32c3": 0x0,
    "esp32c6": 0x0,
    "esp32c61": 0x0,
    "esp32h2": 0x0,
    "esp32h21": 0x0,
    "esp32e22": 0x0,
    "esp32c5": 0x2000,
    "esp32p4": 0x2000,
    "esp32h4": 0x2000,
    "esp32s31": 0x2000,
}
DEFAULT_TABLE_OFFSET = 0x8000  # CONFIG_PARTITION_TABLE_OFFSET's default
DEFAULT_APP_OFFSET = 0x10000  # where ESP-IDF's default tables put the factory app
TABLE_SECTOR = 0x1000  # gen_esp32part PARTITION_TABLE_SIZE: the table owns one sector
SECTOR = 0x1000  # flash erase sector
APP_ALIGN = 0x10000  # the MMU maps apps in 64 KiB pages (gen_esp32part ALIGNMENT[APP_TYPE])
MAX_FLASH_BYTES = 128 * 1024 * 1024  # the largest size a header can declare
NVS_RW_MIN_SIZE = 0x3000  # gen_esp32part NVS_RW_MIN_PARTITION_SIZE
OTADATA_SIZE = 0x2000

TYPE_APP, TYPE_DATA, TYPE_BOOTLOADER, TYPE_PARTITION_TABLE = 0x00, 0x01, 0x02, 0x03
SUBTYPE_FACTORY = 0x00
SUBTYPE_OTA_FIRST, SUBTYPE_OTA_LAST = 0x10, 0x1F  # ota_0 .. ota_15
SUBTYPE_DATA_OTA, SUBTYPE_DATA_NVS = 0x00, 0x02
FLAG_READONLY = 0x02  # gen_esp32part FLAGS: encrypted bit 0, readonly bit 1
# A descriptor-less image that loads nothing from flash is either an old ESP-IDF bootloader or a
# load-ram program: every ESP-IDF bootloader has at least its DRAM data, its loader IRAM and its
# IRAM text as separate segments, a load-ram program (esptool's ram_helloworld) fewer.
_LEGACY_BOOTLOADER_MIN_SEGMENTS = 3


class Kind(enum.Enum):
    BOOTLOADER = "bootloader"
    APP = "app"
    PARTITION_TABLE = "partition-table"
    DATA = "data"


@dataclass(frozen=True)
class Piece:
    """One thing to be written to flash, with what its own bytes say it is."""

    name: str
    address: int
    size: int
    kind: Kind
    chip: str | None = None  # esptool's key, from the image header; None for tables and data
    flash_size: int | None = None  # bytes the image header declares

    @property
    def end(self) -> int:
        return self.address + self.size


def bootloader_offset(chip: str) -> int:
    """Where the ROM of ``chip`` (any usual spelling) loads the second-stage bootloader from."""
    found = chip_by_name(chip)
    return BOOTLOADER_FLASH_OFFSET.get(found.key if found else chip, 0)


def flash_size_bytes(text: str) -> int:
    """ "4MB" -> 4 MiB, for the sizes a header can declare."""
    if text not in FLASH_SIZES.values():
        raise ValueError(f"unknown flash size {text!r}")
    return int(text.removesuffix("MB")) * 1024 * 1024


def image_kind(image: EspImage) -> Kind:
    """App or bootloader, from the image's content alone (never from the address it is given)."""
    if image.app is not None:
        return Kind.APP
    if image.bootloader is not None:
        return Kind.BOOTLOADER
    if any(s.flash_mapped for s in image.segments):
        return Kind.APP  # the ROM cannot map flash: only an app has flash-mapped segments
    real = [s for s in image.segments if s.length]
    return Kind.BOOTLOADER if len(real) >= _LEGACY_BOOTLOADER_MIN_SEGMENTS else Kind.APP


def piece_of_image(image: EspImage, *, name: str, address: int) -> Piece:
    return Piece(name, address, image.size, image_kind(image), image.chip_key, flash_size_bytes(image.flash_size))


def piece_of(data: bytes, *, name: str, address: int) -> Piece:
    """The piece ``data`` is, by content: a partition table or an ESP image (FormatError otherwise)."""
    from firmware_tools.bundle.partition_table import looks_like_partition_table
    from firmware_tools.esp.image import parse_esp_image

    if looks_like_partition_table(data):
        return Piece(name, address, len(data), Kind.PARTITION_TABLE)
    return piece_of_image(parse_esp_image(data, name=name), name=name, address=address)


def is_app_partition(p: Partition) -> bool:
    return p.type == TYPE_APP and (p.subtype == SUBTYPE_FACTORY or SUBTYPE_OTA_FIRST <= p.subtype <= SUBTYPE_OTA_LAST)


def nvs_partition(table: PartitionTable) -> Partition | None:
    """The NVS partition per-unit data goes into: the one labelled "nvs", else the first of subtype nvs."""
    candidates = [p for p in table.partitions if p.type == TYPE_DATA and p.subtype == SUBTYPE_DATA_NVS]
    return next((p for p in candidates if p.label == "nvs"), candidates[0] if candidates else None)


def _where(p: Partition) -> str:
    return f"partition {p.label!r} at {p.offset:#x}"


def _listed(parts: Sequence[Partition]) -> str:
    return ", ".join(f"{p.label} at {p.offset:#x} ({p.size // 1024} KiB)" for p in parts) or "none"


# ---- the partition table on its own -----------------------------------------------------------------


def table_checks(
    table: PartitionTable, *, table_offset: int = DEFAULT_TABLE_OFFSET, flash_size: int | None = None
) -> tuple[Check, ...]:
    """gen_esp32part's rules for a binary table, each broken one a named failed check."""
    limit = flash_size if flash_size is not None else MAX_FLASH_BYTES
    limit_text = f"the {limit // (1024 * 1024)} MB flash" + ("" if flash_size is not None else " a header can declare")
    out: list[Check] = []
    md5 = table.md5_ok
    out.append(
        Check(
            "table-md5",
            md5,
            {
                None: "no MD5 entry (older ESP-IDF)",
                True: "MD5 entry matches the entries before it",
                False: "MD5 entry does not match the entries before it: the table was altered; regenerate it "
                "with gen_esp32part.py",
            }[md5],
        )
    )
    fails: list[Check] = []
    for p in table.partitions:
        align = APP_ALIGN if p.type == TYPE_APP else SECTOR
        if p.offset % align:
            fails.append(
                Check(
                    "table-alignment",
                    False,
                    f"{_where(p)}: offset is not a multiple of {align:#x} "
                    f"({'app partitions are mapped in 64 KiB pages' if p.type == TYPE_APP else 'a 4 KiB sector'}); "
                    f"move it to {(p.offset + align - 1) // align * align:#x}",
                )
            )
        if p.size % SECTOR:
            fails.append(
                Check(
                    "table-alignment",
                    False,
                    f"{_where(p)}: size {p.size:#x} is not a multiple of the 4 KiB flash sector; "
                    f"make it {(p.size + SECTOR - 1) // SECTOR * SECTOR:#x}",
                )
            )
        if p.size == 0:
            fails.append(Check("table-range", False, f"{_where(p)}: size is 0; give it a size"))
        first_free = table_offset + TABLE_SECTOR
        primary_meta = p.type in (TYPE_BOOTLOADER, TYPE_PARTITION_TABLE) and p.subtype == 0
        if p.offset < first_free and not primary_meta:
            fails.append(
                Check(
                    "table-range",
                    False,
                    f"{_where(p)}: starts below {first_free:#x}, inside the bootloader or the partition table "
                    f"at {table_offset:#x}; move it to {first_free:#x} or above",
                )
            )
        if p.offset + p.size > limit:
            fails.append(
                Check(
                    "table-range",
                    False,
                    f"{_where(p)}: ends at {p.offset + p.size:#x}, beyond {limit_text} ({limit:#x}); "
                    "shrink it or move it down",
                )
            )
        nvs = p.type == TYPE_DATA and p.subtype == SUBTYPE_DATA_NVS
        if nvs and p.size < NVS_RW_MIN_SIZE and not p.flags & FLAG_READONLY:
            fails.append(
                Check(
                    "table-nvs-size",
                    False,
                    f"{_where(p)}: a read/write NVS partition needs at least {NVS_RW_MIN_SIZE:#x} bytes, "
                    f"it has {p.size:#x}; enlarge it or flag it readonly",
                )
            )
    otadata = [p for p in table.partitions if p.type == TYPE_DATA and p.subtype == SUBTYPE_DATA_OTA]
    if len(otadata) > 1:
        fails.append(Check("table-otadata", False, f"{len(otadata)} otadata partitions ({_listed(otadata)}); keep one"))
    elif otadata and otadata[0].size != OTADATA_SIZE:
        fails.append(Check("table-otadata", False, f"{_where(otadata[0])}: otadata must be {OTADATA_SIZE:#x} bytes"))
    names = [p.label for p in table.partitions]
    for dup in sorted({n for n in names if names.count(n) > 1}):
        reason = f"{names.count(dup)} partitions are named {dup!r}; rename all but one"
        fails.append(Check("table-names", False, reason))
    # Each partition against the one reaching furthest before it, so every overlapped one is named.
    reach: Partition | None = None
    for b in sorted(table.partitions, key=lambda p: (p.offset, p.size)):
        a = reach
        if reach is None or b.offset + b.size > reach.offset + reach.size:
            reach = b
        if a is not None and b.offset < a.offset + a.size:
            fails.append(
                Check(
                    "table-overlap",
                    False,
                    f"{_where(b)} overlaps {_where(a)} (which ends at {a.offset + a.size:#x}); "
                    f"move {b.label!r} to {a.offset + a.size:#x} or shrink {a.label!r}",
                )
            )
    out.extend(fails)
    failed = {c.name for c in fails}
    for name, text in (
        ("table-alignment", "every offset and size aligned (apps 64 KiB, others 4 KiB)"),
        ("table-range", f"every partition above {table_offset + TABLE_SECTOR:#x} and inside {limit_text}"),
        ("table-names", "partition names are unique"),
        ("table-overlap", f"{len(table.partitions)} partitions, none overlap"),
    ):
        if name not in failed:
            out.append(Check(name, True, text))
    return tuple(out)


# ---- a whole flash layout ---------------------------------------------------------------------------


def layout_checks(
    pieces: Sequence[Piece],
    *,
    chip: str,
    table: PartitionTable | None,
    table_offset: int = DEFAULT_TABLE_OFFSET,
    flash_size: int | None = None,
    check_chip: bool = True,
) -> tuple[tuple[str, Check], ...]:
    """Every layout rule over ``pieces`` for a board of ``chip``, as ``(piece name or "table", check)``.

    The table's own rules are ``table_checks``; callers that did not run them on ``table`` yet add them.

    ``table`` is the partition table that will be on the board (the bundle's, one given, or one read
    back); ``flash_size`` defaults to what a bootloader among ``pieces`` declares in its header.
    ``check_chip=False`` leaves the chip rule to a caller that checks each image's chip already.
    """
    found = chip_by_name(chip)
    chip_key = found.key if found else chip
    chip_name = found.name if found else chip
    boot_at = bootloader_offset(chip_key)
    if flash_size is None:
        flash_size = next((p.flash_size for p in pieces if p.kind is Kind.BOOTLOADER), None)
    out: list[tuple[str, Check]] = []

    def fail(piece: str, name: str, reason: str) -> None:
        out.append((piece, Check(name, False, reason)))

    apps = [p for p in table.partitions if is_app_partition(p)] if table is not None else []
    datas = [p for p in table.partitions if p.type == TYPE_DATA] if table is not None else []
    for piece in pieces:
        at = f"{piece.name} at {piece.address:#x}"
        if check_chip and piece.chip is not None and piece.chip != chip_key:
            other = chip_by_name(piece.chip)
            fail(
                piece.name,
                "chip",
                f"{at} is built for {other.name if other else piece.chip}, the bundle is for {chip_name}; "
                f"use the {chip_name} build",
            )
        if piece.kind is Kind.BOOTLOADER:
            if piece.address != boot_at:
                fail(
                    piece.name,
                    "bootloader-offset",
                    f"{at} is a bootloader (by its content), but the {chip_name} ROM loads the bootloader "
                    f"from {boot_at:#x}; put it at {boot_at:#x}",
                )
            elif piece.end > table_offset:
                fail(
                    piece.name,
                    "bootloader-size",
                    f"{at} ends at {piece.end:#x}, over the partition table at {table_offset:#x}; "
                    "shrink the bootloader or move the table",
                )
        elif piece.kind is Kind.PARTITION_TABLE:
            if piece.address != table_offset:
                fail(
                    piece.name,
                    "partition-table-offset",
                    f"{at} is a partition table, but the bootloader reads it at {table_offset:#x}; "
                    f"put it at {table_offset:#x} (or say --partition-table-offset when the bootloader "
                    "was built with another CONFIG_PARTITION_TABLE_OFFSET)",
                )
        elif piece.kind is Kind.APP:
            part = next((p for p in apps if p.offset == piece.address), None)
            if table is None:
                if piece.address != DEFAULT_APP_OFFSET:
                    fail(
                        piece.name,
                        "app-partition",
                        f"{at} is an app, and without a partition table the only app partition known is the "
                        f"default factory at {DEFAULT_APP_OFFSET:#x}; put it there or give the partition table",
                    )
            elif part is None:
                fail(
                    piece.name,
                    "app-partition",
                    f"{at} is an app, but no app partition starts there (app partitions: {_listed(apps)}); "
                    f"put it at {apps[0].offset:#x}"
                    if apps
                    else f"{at} is an app, but the partition table has no factory or ota app partition; add one",
                )
            elif piece.size > part.size:
                fail(
                    piece.name,
                    "app-size",
                    f"{at} is {piece.size:#x} bytes, larger than {_where(part)} ({part.size:#x} bytes); "
                    "enlarge the partition or shrink the app",
                )
        elif piece.kind is Kind.DATA:
            part = next((p for p in datas if p.offset == piece.address), None)
            if table is None:
                fail(
                    piece.name,
                    "data-partition",
                    f"{at} is raw data, and without a partition table no data partition is known; "
                    "give the partition table",
                )
            elif part is None:
                fail(
                    piece.name,
                    "data-partition",
                    f"{at} is raw data, but no data partition starts there (data partitions: {_listed(datas)}); "
                    "put it at one of those",
                )
            elif piece.size > part.size:
                fail(
                    piece.name,
                    "data-size",
                    f"{at} is {piece.size:#x} bytes, larger than {_where(part)} ({part.size:#x} bytes)",
                )
        if flash_size is not None and piece.end > flash_size:
            fail(
                piece.name,
                "flash-size",
                f"{at} ends at {piece.end:#x}, beyond the {flash_size // (1024 * 1024)} MB flash the bootloader "
                "header declares; move it down or build the bootloader for a larger flash",
            )
    # Each piece against the one reaching furthest before it, so every overlapped piece is named.
    furthest: Piece | None = None
    for b in sorted(pieces, key=lambda p: (p.address, p.end)):
        if furthest is not None and b.address < furthest.end:
            a = furthest
            fail(
                b.name,
                "overlap",
                f"{b.name} at {b.address:#x} starts inside {a.name} ({a.address:#x}..{a.end:#x}); move one of them",
            )
        if furthest is None or b.end > furthest.end:
            furthest = b
    if table is not None and flash_size is not None:
        for part in table.partitions:
            if part.offset + part.size > flash_size:
                fail(
                    "table",
                    "flash-size",
                    f"{_where(part)} ends at {part.offset + part.size:#x}, beyond the "
                    f"{flash_size // (1024 * 1024)} MB flash the bootloader header declares; "
                    "shrink the partition or build the bootloader for a larger flash",
                )
    if not any(c.ok is False for _, c in out):
        summary = ", ".join(f"{p.kind.value} {p.name} at {p.address:#x}" for p in pieces)
        out.append(("layout", Check("layout", True, f"{summary or 'nothing'}: where a {chip_name} boots them")))
    return tuple(out)
