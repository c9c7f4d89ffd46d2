"""Module info TLV extensions: read one at an offset (as the reference parser does), and encode them."""

from __future__ import annotations

from firmware_tools.particle.layout import (
    TLV_DEPENDENCY,
    TLV_DYNAMIC_LOCATION,
    TLV_HASH_HEAD,
    TLV_HEADER,
    TLV_PRODUCT_DATA,
)
from firmware_tools.particle.model import (
    AssetDependencyExtension,
    AssetTypeExtension,
    Dependency,
    DependencyExtension,
    DynamicLocationExtension,
    Extension,
    ExtensionType,
    HashExtension,
    NameExtension,
    ProductDataExtension,
    SecurityModeExtension,
)


def read_extension(data: bytes, offset: int) -> Extension | None:
    """The TLV at ``offset``; None at an INVALID type or one that would run past the data.

    The caller guarantees the 4-byte header lies inside ``data``. A body too short for its type's
    fields is returned as a plain ``Extension``.
    """
    ext_type, length = TLV_HEADER.unpack_from(data, offset)
    if ext_type == ExtensionType.INVALID or offset + length > len(data):
        return None
    raw = data[offset : offset + length]
    body = raw[TLV_HEADER.size :]
    base = (ext_type, offset, length, raw)
    if ext_type == ExtensionType.PRODUCT_DATA and len(body) >= TLV_PRODUCT_DATA.size:
        pid32, version = TLV_PRODUCT_DATA.unpack_from(body)
        return ProductDataExtension(*base, product_id32=pid32, product_id=pid32 >> 16, product_version=version)
    if ext_type == ExtensionType.DYNAMIC_LOCATION and len(body) >= TLV_DYNAMIC_LOCATION.size:
        start, load, dyn = TLV_DYNAMIC_LOCATION.unpack_from(body)
        return DynamicLocationExtension(
            *base, module_start_address=start, dynalib_load_address=load, dynalib_start_address=dyn
        )
    if ext_type == ExtensionType.DEPENDENCY and len(body) >= TLV_DEPENDENCY.size:
        func, index, version, target = TLV_DEPENDENCY.unpack_from(body)
        return DependencyExtension(*base, dependency=Dependency(func, index, version), target_id=target)
    if ext_type == ExtensionType.HASH and len(body) >= TLV_HASH_HEAD.size:
        hash_type, _hash_len = TLV_HASH_HEAD.unpack_from(body)
        return HashExtension(*base, hash_type=hash_type, hash=bytes(body[TLV_HASH_HEAD.size :]))
    if ext_type == ExtensionType.NAME:
        return NameExtension(*base, name=bytes(body).decode("utf-8", errors="replace"))
    if ext_type == ExtensionType.ASSET_DEPENDENCY and len(body) >= TLV_HASH_HEAD.size:
        hash_type, hash_len = TLV_HASH_HEAD.unpack_from(body)
        rest = body[TLV_HASH_HEAD.size :]
        return AssetDependencyExtension(
            *base,
            hash_type=hash_type,
            hash=bytes(rest[:hash_len]),
            name=bytes(rest[hash_len:]).decode("utf-8", errors="replace"),
        )
    if ext_type == ExtensionType.SECURITY_MODE and len(body) >= 1:
        return SecurityModeExtension(*base, mode=body[0], certificate=bytes(body[1:]))
    if ext_type == ExtensionType.ASSET_TYPE and len(body) >= 1:
        return AssetTypeExtension(*base, asset_type=body[0])
    return Extension(*base)


def encode_tlv(ext_type: int, body: bytes) -> bytes:
    length = TLV_HEADER.size + len(body)
    if length > 0xFFFF:
        raise ValueError(f"extension body of {len(body)} bytes does not fit a TLV")
    return TLV_HEADER.pack(ext_type, length) + body


def encode_product_data(product_id: int, product_version: int) -> bytes:
    """PRODUCT_DATA as the build writes it: the u32 id is ``FF FF <pid16>``."""
    pid32 = (product_id << 16) | 0xFFFF
    return encode_tlv(ExtensionType.PRODUCT_DATA, TLV_PRODUCT_DATA.pack(pid32, product_version))


def encode_dynamic_location(start: int, dynalib_load: int, dynalib_start: int) -> bytes:
    return encode_tlv(ExtensionType.DYNAMIC_LOCATION, TLV_DYNAMIC_LOCATION.pack(start, dynalib_load, dynalib_start))


def encode_hash(digest: bytes, hash_type: int = 0) -> bytes:
    return encode_tlv(ExtensionType.HASH, TLV_HASH_HEAD.pack(hash_type, len(digest)) + digest)


def encode_name(name: str) -> bytes:
    return encode_tlv(ExtensionType.NAME, name.encode("utf-8"))
