"""Intel HEX <-> flat binary, with the file's base address kept, in time and memory bounded by the image.

Reading walks the records once, checking each as intelhex does (length, checksum, type, overlap) and
the span they cover as it goes, so a file whose records lie 32 MiB apart is refused before any
buffer is made; records in order are appended as they come, others sorted into one buffer of
exactly the span. intelhex itself
keeps a dict entry per byte (a 30 MiB file costs it 1.5 GB), so it writes HEX here and is the
reference the reader is tested against, but is not handed untrusted files to read.
"""

from __future__ import annotations

import binascii
import io

from firmware_tools.errors import FormatError

# Gaps between records are filled as erased NOR flash reads.
ERASED = 0xFF
# A HEX file whose records span more than this is refused rather than turned into a huge buffer.
MAX_SPAN = 32 * 1024 * 1024

_DATA, _EOF, _EXT_SEGMENT, _START_SEGMENT, _EXT_LINEAR, _START_LINEAR = range(6)
_MIN_RECORD_BYTES = 5  # length, address (2), type, checksum


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


def _bad(message: str, name: str | None, line: int) -> FormatError:
    return FormatError(f"not a valid Intel HEX file: line {line}: {message}", file=name)


def _span_refused(low: int, end: int, number: int, name: str | None) -> FormatError:
    return FormatError(
        f"Intel HEX records span more than {MAX_SPAN} bytes (line {number} reaches {end - 1:#x}, "
        f"the lowest address is {low:#x})",
        file=name,
        hint="a firmware image is contiguous; split the file per flash region",
    )


def hex_to_bin(raw: bytes, *, name: str | None = None) -> tuple[bytes, int]:
    """The bytes from the lowest to the highest address the file gives, and that lowest address."""
    # Records in ascending order (what every linker writes) are appended to ``image``, each gap
    # starting a new run; the first record out of order switches to collecting (address, bytes).
    image = bytearray()
    runs: list[tuple[int, int]] = []  # (address, index in image) where each contiguous run starts
    scattered: list[tuple[int, bytes]] | None = None
    low, high = -1, -1  # lowest address, one past the highest
    offset = 0
    for number, line in enumerate(raw.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        if line[:1] != b":":
            raise _bad("a record does not start with ':'", name, number)
        try:
            record = binascii.unhexlify(line[1:])
        except (binascii.Error, ValueError):
            raise _bad("a record holds characters that are not hex digits", name, number) from None
        length = record[0] if record else -1
        if length < 0 or len(record) != _MIN_RECORD_BYTES + length:
            raise _bad("the record's length byte does not match its length", name, number)
        if sum(record) & 0xFF:
            raise _bad("checksum mismatch", name, number)
        field, kind = (record[1] << 8) | record[2], record[3]
        if kind == _DATA:
            if not length:
                continue
            address = offset + field
            end = address + length
            if low < 0:
                low = high = address
            if scattered is None and address >= high:
                if end - low > MAX_SPAN:
                    # Refused while reading: nothing of that size is ever allocated.
                    raise _span_refused(low, end, number, name)
                if address > high or not runs:
                    runs.append((address, len(image)))
                image += record[4:-1]
                high = end
                continue
            if scattered is None:
                ends = [i for _, i in runs[1:]] + [len(image)]
                scattered = [(a, bytes(image[i:e])) for (a, i), e in zip(runs, ends, strict=True)]
                image = bytearray()
            low, high = min(low, address), max(high, end)
            if high - low > MAX_SPAN:
                raise _span_refused(low, end, number, name)
            scattered.append((address, record[4:-1]))
        elif kind == _EOF:
            if length:
                raise _bad("an end-of-file record carries data", name, number)
            break
        elif kind in (_EXT_SEGMENT, _EXT_LINEAR):
            if length != 2 or field:
                raise _bad("an extended address record must hold 2 bytes at address 0", name, number)
            value = (record[4] << 8) | record[5]
            offset = value * 16 if kind == _EXT_SEGMENT else value << 16
        elif kind in (_START_SEGMENT, _START_LINEAR):
            if length != 4 or field:
                raise _bad("a start address record must hold 4 bytes at address 0", name, number)
        else:
            raise _bad(f"record type {kind} is not an Intel HEX record type", name, number)
    if low < 0:
        raise FormatError("Intel HEX file holds no data records", file=name)
    if scattered is None:
        if len(runs) == 1:
            return bytes(image), low
        ends = [i for _, i in runs[1:]] + [len(image)]
        scattered = [(a, bytes(image[i:e])) for (a, i), e in zip(runs, ends, strict=True)]
    scattered.sort(key=lambda r: r[0])
    flat = bytearray([ERASED]) * (high - low)
    previous_end = -1
    for address, data in scattered:
        if address < previous_end:
            raise FormatError(f"Intel HEX records overlap at address {address:#x}", file=name)
        previous_end = address + len(data)
        flat[address - low : previous_end - low] = data
    return bytes(flat), low


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
