"""Where one ESP image given to ``station flash FILE --address A`` may go: the layout rules a bundle
follows (firmware_tools.esp.flash_layout), judged from the image's content, against the partition
table given with ``--partition-table`` or, failing that, the one read back from the board.

``--raw`` bytes (a filesystem, an NVS image: no ESP header) go only to a data partition of a known
table. Everything is decided before a byte is written; the result says which table decided it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from firmware_tools.bundle.partition_table import (
    MAX_TABLE_BYTES,
    PartitionTable,
    looks_like_partition_table,
    parse_partition_table,
)
from firmware_tools.checks import Check
from firmware_tools.errors import FirmwareError
from firmware_tools.esp.flash_layout import (
    DEFAULT_APP_OFFSET,
    DEFAULT_TABLE_OFFSET,
    TABLE_SECTOR,
    Kind,
    Piece,
    bootloader_offset,
    is_app_partition,
    layout_checks,
    piece_of,
)
from station.devices.base import FlashImage
from station.errors import InputError, Reason, StationError

# The kind names station.devices.esp reads (it checks the chip id of apps and bootloaders only).
_FLASH_KIND = {
    Kind.APP: "app",
    Kind.BOOTLOADER: "bootloader",
    Kind.PARTITION_TABLE: "partition-table",
    Kind.DATA: "data",
}


class LayoutRefused(StationError):
    """The image would not boot (or would break what boots) where it was to be written; nothing was."""

    exit_code = 1
    reason = Reason.REFUSED

    def __init__(self, failures: tuple[tuple[str, Check], ...], *, device: str | None = None) -> None:
        self.failures = failures
        listed = "; ".join(f"{c.name}: {c.reason}" for _, c in failures)
        super().__init__(
            f"layout refused, nothing was written: {listed}",
            device=device,
            hint="see the named check; station flash follows the layout rules fwtool release does",
        )


@dataclass(frozen=True)
class EspPlacement:
    """One image with its flash address, what its content is, and the table the address is judged by."""

    image: FlashImage
    piece: Piece
    table: PartitionTable | None
    table_origin: str | None  # "--partition-table FILE", "read back from the board at 0x8000"

    @property
    def needs_board_table(self) -> bool:
        """Apps and raw data are placed by a partition table; without one given, the board's decides."""
        return self.table is None and self.piece.kind in (Kind.APP, Kind.DATA)

    def note(self) -> str:
        """What decided the address, for the result."""
        p = self.piece
        where = f"{p.kind.value} {p.name} at {p.address:#x}"
        if self.table is None:
            return f"{where}: no partition table on the board or given; placed by the default layout"
        part = next((x for x in self.table.partitions if x.offset == p.address), None)
        inside = f" = partition {part.label!r}" if part is not None else ""
        return f"{where}{inside}, by the partition table {self.table_origin}"


def _table_from_file(path: str) -> PartitionTable:
    from firmware_tools.formats import read_firmware

    try:
        data = read_firmware(path).data
        table = parse_partition_table(data, name=path)
    except FirmwareError as exc:
        raise InputError(f"--partition-table: {exc.one_line()}") from None
    failed = tuple(("table", c) for c in table.checks() if c.ok is False)
    if failed:
        raise LayoutRefused(failed)
    return table


def _default_address(piece: Piece, table: PartitionTable | None) -> int:
    if piece.kind is Kind.BOOTLOADER and piece.chip is not None:
        return bootloader_offset(piece.chip)
    if piece.kind is Kind.PARTITION_TABLE:
        return DEFAULT_TABLE_OFFSET
    apps = [p for p in table.partitions if is_app_partition(p)] if table is not None else []
    return apps[0].offset if apps else DEFAULT_APP_OFFSET


def place_esp_image(
    name: str,
    data: bytes,
    *,
    address: int | None,
    base_address: int | None,
    raw: bool = False,
    table_file: str | None = None,
) -> EspPlacement:
    """The placement of ``data``, with every rule the board's table cannot change already checked.

    InputError (2) for unusable input, LayoutRefused (1) for an address the image cannot go to.
    """
    table = _table_from_file(table_file) if table_file is not None else None
    label = Path(name).name
    at = address if address is not None else base_address
    if raw:
        if at is None:
            raise InputError("--raw data has no header to say where it goes", hint="give --address of a data partition")
        piece = Piece(label, at, len(data), Kind.DATA)
    else:
        try:
            piece = piece_of(data, name=label, address=at if at is not None else 0)
        except FirmwareError as exc:
            raise InputError(
                f"{exc.one_line()}", hint="for data without an ESP header (a filesystem) use --raw --address A"
            ) from None
        if at is None:
            piece = replace(piece, address=_default_address(piece, table))
    placement = EspPlacement(
        FlashImage(name=label, data=data, address=piece.address, kind=_FLASH_KIND[piece.kind]),
        piece,
        table,
        None if table_file is None else f"--partition-table {table_file}",
    )
    if piece.kind in (Kind.APP, Kind.DATA) and piece.address < DEFAULT_TABLE_OFFSET + TABLE_SECTOR:
        # No partition table can put a partition there: below it sit the bootloader and the table.
        what = "an app" if piece.kind is Kind.APP else "raw data"
        check = Check(
            "app-partition" if piece.kind is Kind.APP else "data-partition",
            False,
            f"{label} at {piece.address:#x} is {what}, but no partition can start below "
            f"{DEFAULT_TABLE_OFFSET + TABLE_SECTOR:#x} (the bootloader and the partition table are there); "
            f"put it at its partition's offset (e.g. {DEFAULT_APP_OFFSET:#x})",
        )
        raise LayoutRefused(((label, check),))
    if not placement.needs_board_table:
        _judge(placement, piece.chip)
    return placement


def _judge(placement: EspPlacement, chip: str | None, device: str | None = None) -> None:
    # A table or raw data names no chip; the only chip-bound rule (the bootloader's offset) is not theirs.
    checks = layout_checks([placement.piece], chip=chip or "", table=placement.table)
    failed = tuple((n, c) for n, c in checks if c.ok is False)
    if failed:
        raise LayoutRefused(failed, device=device)


def read_board_table(read_flash: Callable[[int, int], bytes]) -> PartitionTable | None:
    """The partition table at 0x8000 of a board, or None when none is there (blank or not a table)."""
    data = bytes(read_flash(DEFAULT_TABLE_OFFSET, MAX_TABLE_BYTES))
    if not looks_like_partition_table(data):
        return None
    try:
        return parse_partition_table(data, name="the board's partition table")
    except FirmwareError:
        return None


def judge_on_board(
    placement: EspPlacement, *, chip: str, read_flash: Callable[[int, int], bytes], device: str | None = None
) -> EspPlacement:
    """Check ``placement`` on a board of ``chip``, reading its table back when none was given."""
    if placement.needs_board_table:
        table = read_board_table(read_flash)
        if table is not None:
            placement = replace(
                placement, table=table, table_origin=f"read back from the board at {DEFAULT_TABLE_OFFSET:#x}"
            )
    _judge(placement, chip, device)
    return placement
