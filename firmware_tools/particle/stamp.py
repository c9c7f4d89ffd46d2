"""Set a module's product id and product version and re-seal it, byte for byte as the reference encoder."""

from __future__ import annotations

from firmware_tools.errors import FormatError, UnsupportedError
from firmware_tools.particle.layout import FROM_END_PRODUCT_ID, PRODUCT_FIELDS, SUFFIX_WITH_PRODUCT_SIZE
from firmware_tools.particle.parse import parse_module
from firmware_tools.particle.seal import reseal

U16_MAX = 0xFFFF


def stamp_product(data: bytes, *, product_id: int | None, product_version: int, name: str | None = None) -> bytes:
    """``data`` with product id (None: keep the stored one) and version written, SHA-256 then CRC-32 redone.

    The two u16 fields sit 44 and 42 bytes before the end in every layout (on RTL872x inside the
    PRODUCT_DATA extension), so only they, the SHA and the CRC change.
    """
    for label, value in (("product id", product_id), ("product version", product_version)):
        if value is not None and not 0 <= value <= U16_MAX:
            raise UnsupportedError(f"{label} {value} does not fit the 16-bit field (0..65535)", file=name)
    module = parse_module(data, name=name)
    suffix = module.suffix
    if suffix.product_id is None or suffix.product_version is None:
        raise UnsupportedError(
            f"the module has a {suffix.suffix_size}-byte suffix with no product id / version fields",
            file=name,
            hint="rebuild the app with PRODUCT_VERSION(...) so the linker reserves them",
        )
    if suffix.suffix_size == U16_MAX:
        raise UnsupportedError("the suffix is erased flash (size 0xffff), not module info", file=name)
    if module.is_combined or module.is_compressed:
        kind = "combined" if module.is_combined else "compressed"
        raise UnsupportedError(
            f"cannot stamp a {kind} module: the product fields live in its inner module",
            file=name,
            hint="stamp the plain module, then compress or combine it",
        )
    if suffix.suffix_size == 42:
        raise UnsupportedError("the module has the retired 42-byte suffix with a 32-bit product id", file=name)
    # Re-sealing recomputes both checksums: on damaged bytes that would make the damage look valid.
    if not module.crc_ok or not module.sha_ok:
        failed = "CRC-32" if not module.crc_ok else "SHA-256"
        raise FormatError(
            f"the module's {failed} does not match its bytes; refusing to re-seal a damaged module",
            file=name,
            hint="rebuild or copy the binary again; 'fwtool validate' shows what is wrong",
        )
    assert suffix.suffix_size >= SUFFIX_WITH_PRODUCT_SIZE
    new_id = suffix.product_id if product_id is None else product_id
    buf = bytearray(data)
    PRODUCT_FIELDS.pack_into(buf, len(buf) - FROM_END_PRODUCT_ID, new_id, product_version)
    return reseal(buf)
