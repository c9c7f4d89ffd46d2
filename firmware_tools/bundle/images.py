"""What a bundle records about each image, read from the image itself, and the checks it must pass.

The release writer and the verifier both call ``describe_image``, so what is signed and what is
checked are derived by one piece of code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from firmware_tools.bundle.manifest import (
    PARTICLE_KIND_BY_FUNCTION,
    EspFacts,
    Family,
    ImageKind,
    ParticleFacts,
    Target,
)
from firmware_tools.bundle.partition_table import PartitionTable, looks_like_partition_table, parse_partition_table
from firmware_tools.checks import Check, Expectations
from firmware_tools.errors import FormatError, UnsupportedError
from firmware_tools.esp.flash_layout import DEFAULT_TABLE_OFFSET, Kind, Piece, layout_checks, piece_of_image

# Kinds the station can put on a board from a bundle. Assets, settings and resources travel other
# ways (OTA, the device itself), so a release refuses them rather than ship what cannot be flashed.
FLASHABLE_KINDS = frozenset(
    {
        ImageKind.BOOTLOADER,
        ImageKind.RADIO_STACK,
        ImageKind.NCP_FIRMWARE,
        ImageKind.MONO_FIRMWARE,
        ImageKind.SYSTEM_PART,
        ImageKind.USER_PART,
        ImageKind.ESP_BOOTLOADER,
        ImageKind.ESP_APP,
        ImageKind.ESP_PARTITION_TABLE,
    }
)

# ESP flash is erased in 4 KiB sectors; an image that does not start on one would erase its neighbour.
ESP_SECTOR = 0x1000


def esp_bootloader_offset(chip_key: str) -> int:
    """Where the ROM of ``chip_key`` loads the bootloader from (esptool's BOOTLOADER_FLASH_OFFSET)."""
    from firmware_tools.esp.flash_layout import bootloader_offset

    return bootloader_offset(chip_key)


@dataclass(frozen=True)
class ImageFacts:
    """One image as the bundle sees it: what it is, where it goes, what it says, and its own checks."""

    kind: ImageKind
    address: int
    target: Target | None  # None for what fits any device of its family (a partition table)
    particle: ParticleFacts | None
    esp: EspFacts | None
    checks: tuple[Check, ...]
    # Particle: what the product id field means ("absent", "unset", "platform-id", "product-id").
    product_field: str | None = None
    # ESP: the image as the layout rules see it, and the partition table when it is one.
    piece: Piece | None = None
    table: PartitionTable | None = None

    @property
    def failed(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if c.ok is False)


def _particle_kind(function: int, name: str | None) -> ImageKind:
    kind = PARTICLE_KIND_BY_FUNCTION.get(function)
    if kind is None:
        raise FormatError(f"module function {function} is not a kind of module a device runs", file=name)
    return kind


def describe_particle(data: bytes, *, name: str | None, expect: Expectations) -> ImageFacts:
    """Facts and checks of a Particle module (FormatError when it is not one)."""
    from firmware_tools.particle import parse_module, platform_name
    from firmware_tools.particle.validate import module_checks

    module = parse_module(data, name=name)
    if module.is_combined or module.is_compressed:
        what = "combined" if module.is_combined else "compressed"
        raise UnsupportedError(
            f"a {what} module cannot go into a bundle: the station flashes plain modules one by one",
            file=name,
            hint="give the plain modules instead",
        )
    kind = _particle_kind(int(module.function), name)
    p, s = module.prefix, module.suffix
    target = Target(
        Family.PARTICLE,
        platform_id=p.platform_id,
        platform_name=platform_name(p.platform_id) or f"platform-{p.platform_id}",
    )
    facts = ParticleFacts(
        module_function=kind,
        module_index=p.index,
        module_version=p.module_version,
        platform_id=p.platform_id,
        product_id=s.product_id,
        product_version=s.product_version,
    )
    checks = tuple(module_checks(module, expect))
    return ImageFacts(kind, p.start_address, target, facts, None, checks, module.product_id_meaning)


def describe_esp(data: bytes, *, name: str | None, address: int, expect: Expectations) -> ImageFacts:
    """Facts and checks of an ESP app, bootloader or partition table to be written at ``address``."""
    from firmware_tools.esp import parse_esp_image
    from firmware_tools.esp.validate import check_image

    if looks_like_partition_table(data):
        table = parse_partition_table(data, name=name)
        piece = Piece(name or "partition-table", address, len(data), Kind.PARTITION_TABLE)
        return ImageFacts(
            ImageKind.ESP_PARTITION_TABLE,
            address,
            None,
            None,
            None,
            (*table.checks(table_offset=address), _sector_check(address)),
            piece=piece,
            table=table,
        )
    image = parse_esp_image(data, name=name)
    # The kind comes from the bytes: an address says where the image is put, not what it is.
    piece = piece_of_image(image, name=name or "image", address=address)
    kind = ImageKind.ESP_BOOTLOADER if piece.kind is Kind.BOOTLOADER else ImageKind.ESP_APP
    facts = EspFacts(
        chip=image.chip_key,
        chip_id=image.chip_id,
        app_version=image.app.version if image.app is not None else None,
        project_name=image.app.project_name if image.app is not None else None,
    )
    checks = (*check_image(image, expect).checks, _sector_check(address))
    return ImageFacts(kind, address, Target(Family.ESP, chip=image.chip_key), None, facts, checks, piece=piece)


def esp_layout_checks(
    facts: Sequence[ImageFacts], *, chip: str, table_offset: int | None = None
) -> tuple[tuple[str, Check], ...]:
    """The layout rules (firmware_tools.esp.flash_layout) over the images of one ESP bundle.

    ``table_offset`` is where the bootloader reads the table; by default where the bundle puts its
    table (the signed manifest says so), else 0x8000.
    """
    tables = [f for f in facts if f.table is not None]
    if table_offset is None:
        table_offset = tables[0].address if tables else DEFAULT_TABLE_OFFSET
    pieces = [f.piece for f in facts if f.piece is not None]
    table = tables[0].table if tables else None
    # Each image's chip is already one of its own checks (describe_esp's expectation).
    return layout_checks(pieces, chip=chip, table=table, table_offset=table_offset, check_chip=False)


def _sector_check(address: int) -> Check:
    if address % ESP_SECTOR:
        return Check("address", False, f"{address:#x} is not on a 4 KiB flash sector boundary")
    return Check("address", True, f"{address:#x} starts a 4 KiB flash sector")


def describe_image(
    data: bytes, *, family: Family, name: str | None, address: int | None, expect: Expectations
) -> ImageFacts:
    """Facts of an image of ``family``; ESP images need the ``address`` they are flashed at."""
    if family is Family.PARTICLE:
        return describe_particle(data, name=name, expect=expect)
    if address is None:
        raise UnsupportedError("an ESP image needs the address it is flashed at", file=name, hint="give ADDRESS=FILE")
    return describe_esp(data, name=name, address=address, expect=expect)


def product_checks(facts: ImageFacts, *, product_id: int, product_version: int) -> tuple[Check, ...]:
    """Whether an application module carries the release's product id and version.

    Device OS 4 and later compile the platform id where the product id was (one binary may serve
    several products), so there only the version can be compared.
    """
    p = facts.particle
    if facts.kind is not ImageKind.USER_PART or p is None:
        return ()
    meaning = facts.product_field
    if meaning == "absent" or p.product_id is None or p.product_version is None:
        return (Check("product", False, "the application has no product id / version fields"),)
    if meaning == "unset":
        return (Check("product", False, "the application's product id and version are not set"),)
    version = Check(
        "product-version",
        p.product_version == product_version,
        f"product version {p.product_version}, release is {product_version}",
    )
    if meaning == "platform-id":
        pid = Check(
            "product-id",
            True,
            f"product id field holds the platform id {p.product_id} (Device OS >= 4 compiles in no product id)",
        )
    else:
        pid = Check("product-id", p.product_id == product_id, f"product id {p.product_id}, release is {product_id}")
    return (pid, version)
