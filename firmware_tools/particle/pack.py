"""Wrap a raw payload into a valid module (prefix, suffix, SHA-256, CRC-32) for a platform and function."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from firmware_tools.errors import FirmwareError
from firmware_tools.particle.constants import (
    RTL872X_SECTOR,
    RTL872X_USER_PART_END,
    default_user_part_address,
    is_grows_left,
    platform_name,
)
from firmware_tools.particle.extensions import (
    encode_dynamic_location,
    encode_hash,
    encode_name,
    encode_product_data,
)
from firmware_tools.particle.layout import CRC, PREFIX, PRODUCT_FIELDS, SUFFIX_BASE
from firmware_tools.particle.model import Dependency, ModuleFlags, ModuleFunction
from firmware_tools.particle.seal import reseal

U8 = 0xFF
U16 = 0xFFFF
U32 = 0xFFFFFFFF


def _check_range(label: str, value: int, top: int) -> None:
    if not 0 <= value <= top:
        raise FirmwareError(f"{label} {value} is outside 0..{top}")


def _prefix(
    *,
    start: int,
    end: int,
    flags: int,
    module_version: int,
    platform_id: int,
    function: int,
    index: int,
    dependencies: Sequence[Dependency],
) -> bytes:
    if len(dependencies) > 2:
        raise FirmwareError(f"a module prefix holds 2 dependencies, not {len(dependencies)}")
    slots = [*dependencies, *(Dependency(0, 0, 0),) * (2 - len(dependencies))]
    for dep in slots:
        _check_range("dependency function", dep.function, U8)
        _check_range("dependency index", dep.index, U8)
        _check_range("dependency version", dep.version, U16)
    return PREFIX.pack(
        start,
        end,
        0,
        flags,
        module_version,
        platform_id,
        function,
        index,
        slots[0].function,
        slots[0].index,
        slots[0].version,
        slots[1].function,
        slots[1].index,
        slots[1].version,
    )


def pack_module(
    payload: bytes,
    *,
    platform_id: int,
    function: ModuleFunction = ModuleFunction.USER_PART,
    index: int = 1,
    start_address: int | None = None,
    module_version: int = 6,
    product_id: int | None = 0xFFFF,
    product_version: int | None = 0xFFFF,
    dependencies: Sequence[Dependency] = (),
    asset_name: str | None = None,
) -> bytes:
    """A module carrying ``payload``, laid out as Particle's build for ``platform_id`` lays it out.

    User parts of RTL872x platforms (P2, M-SoM, Tracker-M) get the extension suffix and a start
    address that grows left from the fixed end, the module padded to whole flash sectors. Other
    modules get the 40-byte suffix (36 when both product fields are None). An ASSET module (give
    ``asset_name``) gets HASH, NAME and PRODUCT_DATA extensions and DROP_MODULE_INFO.
    """
    _check_range("platform id", platform_id, U16)
    _check_range("module function", int(function), U8)
    _check_range("module index", index, U8)
    _check_range("module version", module_version, U16)
    for label, value in (("product id", product_id), ("product version", product_version)):
        if value is not None:
            _check_range(label, value, U16)
    is_asset = function == ModuleFunction.ASSET
    if is_asset != (asset_name is not None):
        raise FirmwareError("an ASSET module needs asset_name, and only an ASSET module takes one")
    grows_left = is_grows_left(platform_id) and function == ModuleFunction.USER_PART and start_address is None
    flags = ModuleFlags.NONE

    if is_asset:
        assert asset_name is not None
        flags |= ModuleFlags.DROP_MODULE_INFO
        tail_ext = (
            encode_hash(hashlib.sha256(payload).digest())
            + encode_name(asset_name)
            + encode_product_data(_or_unset(product_id), _or_unset(product_version))
        )
        start = 0 if start_address is None else start_address
    elif is_grows_left(platform_id) and function == ModuleFunction.USER_PART:
        tail_ext = b""  # the dynamic location needs the start address, added below
        start = start_address or 0
    else:
        if (product_id is None) != (product_version is None):
            raise FirmwareError("give both product id and product version, or neither")
        tail_ext = b"" if product_id is None else PRODUCT_FIELDS.pack(product_id, product_version)
        if start_address is not None:
            start = start_address
        else:
            default = default_user_part_address(platform_id, index) if function == ModuleFunction.USER_PART else None
            if default is None:
                where = platform_name(platform_id) or f"platform {platform_id}"
                raise FirmwareError(
                    f"no default address for a {ModuleFunction(function).name} (index {index}) on {where}",
                    hint="pass the start address",
                )
            start = default

    if is_grows_left(platform_id) and function == ModuleFunction.USER_PART:
        dynamic_size = len(encode_dynamic_location(0, 0, 0))
        rtl_product = encode_product_data(_or_unset(product_id), _or_unset(product_version))
        fixed = PREFIX.size + dynamic_size + len(rtl_product) + SUFFIX_BASE.size + CRC.size
        if grows_left:
            total = -(-(fixed + len(payload)) // RTL872X_SECTOR) * RTL872X_SECTOR
            payload = payload + bytes(total - fixed - len(payload))
            start = RTL872X_USER_PART_END + CRC.size - total
        # The dynalib table address is unknown for a raw payload: point it at the payload.
        tail_ext = encode_dynamic_location(start, start + PREFIX.size, 0) + rtl_product

    suffix_size = len(tail_ext) + SUFFIX_BASE.size
    total = PREFIX.size + len(payload) + suffix_size + CRC.size
    end = start + total - CRC.size
    if end > U32:
        raise FirmwareError(f"a {total}-byte module at {start:#x} does not fit the 32-bit address space")
    prefix = _prefix(
        start=start,
        end=end,
        flags=int(flags),
        module_version=module_version,
        platform_id=platform_id,
        function=int(function),
        index=index,
        dependencies=dependencies,
    )
    unsealed = prefix + payload + tail_ext + SUFFIX_BASE.pack(0, bytes(32), suffix_size) + bytes(CRC.size)
    return reseal(unsealed)


def pack_asset(data: bytes, name: str) -> bytes:
    """An uncompressed asset module as Particle's createAssetModule writes it (platform 0, address 0)."""
    return pack_module(
        data,
        platform_id=0,
        function=ModuleFunction.ASSET,
        index=0,
        start_address=0,
        module_version=0,
        asset_name=name,
    )


def _or_unset(value: int | None) -> int:
    return U16 if value is None else value
