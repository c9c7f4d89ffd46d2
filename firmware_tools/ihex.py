"""Intel HEX <-> flat binary, through intelhex, with the file's base address kept."""

from __future__ import annotations

import io

from firmware_tools.errors import FormatError

# Gaps between records are filled as erased NOR flash reads.
ERASED = 0xFF
# A HEX file whose records span more than this is refused rather than turned into a huge buffer.
MAX_SPAN = 32 * 1024 * 1024


def looks_like_ihex(raw: bytes) -> bool:
    """Intel HEX is ASCII records that start with ':'; binaries almost never do."""
    head = raw[:64].lstrip(b"\r\n\t ")
    if not head.startswith(b":"):
        return False
    try:
        head.decode("ascii")
    except UnicodeDecodeError:
        return False
    return all(c in b"0123456789abcdefABCDEF:\r\n" for c in head)


def hex_to_bin(raw: bytes, *, name: str | None = None) -> tuple[bytes, int]:
    """The bytes from the lowest to the highest address the file gives, and that lowest address."""
    from intelhex import IntelHex, IntelHexError

    ih = IntelHex()
    try:
        ih.loadhex(io.StringIO(raw.decode("ascii")))
    except (IntelHexError, UnicodeDecodeError, ValueError) as exc:
        raise FormatError(f"not a valid Intel HEX file: {exc}", file=name) from exc
    if not ih.addresses():
        raise FormatError("Intel HEX file holds no data records", file=name)
    start, end = ih.minaddr(), ih.maxaddr()
    if end - start + 1 > MAX_SPAN:
        raise FormatError(
            f"Intel HEX records span {end - start + 1} bytes ({start:#x}..{end:#x}), more than {MAX_SPAN}",
            file=name,
        )
    ih.padding = ERASED
    return bytes(ih.tobinarray(start=start, end=end)), start


def bin_to_hex(data: bytes, address: int) -> bytes:
    """An Intel HEX file placing ``data`` at ``address``."""
    from intelhex import IntelHex

    if not 0 <= address <= 0xFFFFFFFF or address + len(data) > 0x1_0000_0000:
        raise FormatError(f"address {address:#x} + {len(data)} bytes does not fit 32-bit address space")
    ih = IntelHex()
    ih.frombytes(data, offset=address)
    out = io.StringIO()
    ih.write_hex_file(out)
    return out.getvalue().encode("ascii")
