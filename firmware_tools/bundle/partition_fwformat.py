"""The ESP-IDF partition table as one of the formats ``fwtool inspect`` and ``validate`` detect by content.

A release can carry the table, so the developer can look at the same file on its own.
"""

from __future__ import annotations

from firmware_tools.bundle.partition_table import (
    MAX_TABLE_BYTES,
    PartitionTable,
    looks_like_partition_table,
    parse_partition_table,
)
from firmware_tools.checks import Check, Expectations, ValidationReport
from firmware_tools.errors import FormatError

FORMAT_NAME = "esp-partition-table"
_TYPE_NAMES = {0x00: "app", 0x01: "data", 0x02: "bootloader", 0x03: "partition_table"}


class PartitionTableFormat:
    """Implements firmware_tools.formats.FirmwareFormat for binary ESP-IDF partition tables."""

    name = FORMAT_NAME

    def sniff(self, data: bytes) -> int:
        """80 for a table that parses; 0 otherwise (two magic bytes alone are too weak a sign)."""
        if not looks_like_partition_table(data) or len(data) > MAX_TABLE_BYTES:
            return 0
        try:
            parse_partition_table(data)
        except FormatError:
            return 0
        return 80

    def inspect(self, data: bytes) -> dict[str, object]:
        return {**parse_partition_table(data).to_json(), "size": len(data)}

    def summary(self, data: bytes) -> list[str]:
        return summary_lines(parse_partition_table(data))

    def validate(self, data: bytes, expect: Expectations) -> ValidationReport:
        checks = list(parse_partition_table(data).checks())
        if expect.chip is not None:
            checks.append(Check("expected-chip", None, "a partition table is the same for every chip; not checked"))
        for field, asked in (
            ("expected-platform", expect.platform),
            ("expected-product-id", expect.product_id),
            ("expected-product-version", expect.product_version),
            ("expected-version", expect.version),
        ):
            if asked is not None:
                checks.append(Check(field, False, f"a partition table carries no {field[9:]} (expected {asked})"))
        return ValidationReport(tuple(checks))


def summary_lines(table: PartitionTable) -> list[str]:
    md5 = {None: "no MD5 entry", True: "MD5 ok", False: "MD5 MISMATCH"}[table.md5_ok]
    lines = [f"ESP-IDF partition table, {len(table.partitions)} partitions, {md5}"]
    for p in table.partitions:
        kind = _TYPE_NAMES.get(p.type, f"type {p.type:#x}")
        lines.append(
            f"  {p.label:<16} {kind:<10} subtype {p.subtype:#04x}  at {p.offset:#08x}  "
            f"{p.size:#08x} ({p.size // 1024} KiB)" + (f"  flags {p.flags:#x}" if p.flags else "")
        )
    return lines


FORMAT = PartitionTableFormat()

__all__ = ["FORMAT", "PartitionTableFormat"]
