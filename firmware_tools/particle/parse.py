"""Parse a Particle module binary into a ``ParticleModule``, the way the reference parser reads it.

The prefix position is not stored anywhere, so it is found by scoring candidate offsets exactly as
binary-version-reader does; the suffix is read backwards from the CRC. Compressed modules are inflated
and combined files split, and the inner modules parsed too.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from dataclasses import replace

from firmware_tools.errors import FormatError
from firmware_tools.particle.constants import SCORING_PLATFORMS
from firmware_tools.particle.extensions import read_extension
from firmware_tools.particle.layout import (
    COMPRESSED_HEADER,
    CRC,
    EXTENDED_PRODUCT_FIELDS,
    EXTENDED_PRODUCT_SUFFIX_SIZE,
    FROM_END_CRC,
    FROM_END_PRODUCT_ID,
    FROM_END_RESERVED,
    FROM_END_SHA,
    KNOWN_PREFIX_OFFSETS,
    MAX_PREFIX_SCAN,
    MIN_PARSEABLE_SIZE,
    PREFERRED_PREFIX_OFFSETS,
    PREFIX,
    PREFIX_SIZE,
    PRODUCT_FIELDS,
    SUFFIX_BASE,
    SUFFIX_BASE_SIZE,
    SUFFIX_WITH_PRODUCT_SIZE,
)
from firmware_tools.particle.model import (
    KNOWN_FLAGS_MASK,
    Dependency,
    Extension,
    ExtensionType,
    ModuleFlags,
    ModuleFunction,
    ModulePrefix,
    ModuleSuffix,
    ParticleModule,
)
from firmware_tools.particle.seal import file_crc32, reseal

FULL_SCORE = 7
# Inflating is bounded: no module is larger than the largest firmware file a command reads.
MAX_DECOMPRESSED = 32 * 1024 * 1024
# A compressed module inside a combined file is as deep as real files nest.
MAX_NESTING = 3
# More modules than any real combined file holds (bootloader, radio stack, system parts, app, assets).
MAX_COMBINED_MODULES = 32
# Largest suffix the reference encoders accept when decompressing (MAX_MODULE_SUFFIX_SIZE).
MAX_SUFFIX_SIZE = 65535


_MAX_FUNCTION = max(ModuleFunction)  # an enum's max walks its members: once, not per candidate offset


def _known_function(code: int) -> bool:
    return 0 <= code <= _MAX_FUNCTION


def prefix_score(data: bytes | memoryview, offset: int) -> int:
    """How plausible a module prefix at ``offset`` is: 0 = impossible, 7 = every sanity check passes."""
    if offset < 0 or offset + PREFIX_SIZE > len(data):
        return 0
    start, end, _res, flags, _ver, platform, func, _idx, d1f, d1i, d1v, d2f, d2i, d2v = PREFIX.unpack_from(data, offset)
    if end <= start:
        return 0
    expected = end - start + CRC.size
    if len(data) < expected or func == ModuleFunction.NONE:
        return 0
    if (d1f == 0 and (d1i or d1v)) or (d2f == 0 and (d2i or d2v)):
        return 0
    return int(
        1
        + (platform in SCORING_PLATFORMS)
        + _known_function(func)
        + _known_function(d1f)
        + _known_function(d2f)
        + (len(data) == expected)
        + ((flags & ~KNOWN_FLAGS_MASK) == 0)
    )


def find_prefix_offset(data: bytes | memoryview) -> tuple[int, int]:
    """The offset of the most plausible prefix and its score (score 0: none found, offset 0)."""
    best_offset, best_score = 0, 0
    for offset in PREFERRED_PREFIX_OFFSETS:
        score = prefix_score(data, offset)
        if score >= FULL_SCORE:
            return offset, score
        if score > best_score:
            best_offset, best_score = offset, score
    last = min(MAX_PREFIX_SCAN, len(data) - SUFFIX_BASE_SIZE - PREFIX_SIZE - CRC.size)
    if last < 4:
        return best_offset, best_score
    # Most of the 2,048 offsets are not even a start below an end that fits in the file (score 0):
    # read the words once and score only the offsets that pass that test, in the same order.
    words = struct.unpack_from(f"<{last // 4 + 2}I", data, 0)
    size = len(data) - CRC.size
    candidates = [
        4 * k
        for k in range(1, last // 4 + 1)
        if words[k] < words[k + 1] <= words[k] + size and 4 * k not in PREFERRED_PREFIX_OFFSETS
    ]
    for offset in candidates:
        score = prefix_score(data, offset)
        if score >= FULL_SCORE:
            return offset, score
        if score > best_score:
            best_offset, best_score = offset, score
    return best_offset, best_score


def _read_prefix(data: bytes, offset: int, name: str | None) -> tuple[ModulePrefix, int]:
    start, end, reserved, flags, version, platform, func, index, d1f, d1i, d1v, d2f, d2i, d2v = PREFIX.unpack_from(
        data, offset
    )
    raw_deps = (Dependency(d1f, d1i, d1v), Dependency(d2f, d2i, d2v))
    used = tuple(d for d in raw_deps if d.function != 0)
    extensions: list[Extension] = []
    size = PREFIX_SIZE
    if flags & ModuleFlags.PREFIX_EXTENSIONS:
        # Bounds as the reference: relative to the data from the prefix on, stop before the minimal suffix.
        limit = len(data) - SUFFIX_BASE_SIZE - CRC.size
        pos = offset + PREFIX_SIZE
        while pos < limit:
            ext = read_extension(data, pos)
            if ext is None:
                break
            extensions.append(ext)
            if ext.length == 0:
                raise FormatError("invalid extension length 0 in the prefix", file=name, offset=pos)
            pos += ext.length
            if ext.type == ExtensionType.END:
                break
        if not extensions or extensions[-1].type != ExtensionType.END:
            raise FormatError(
                "prefix extensions do not end with an END extension", file=name, offset=offset + PREFIX_SIZE
            )
        size = pos - offset
    function: ModuleFunction | int = ModuleFunction(func) if _known_function(func) else func
    prefix = ModulePrefix(
        start_address=start,
        end_address=end,
        reserved=reserved,
        flags=ModuleFlags(flags),
        module_version=version,
        platform_id=platform,
        function=function,
        index=index,
        dependencies=used,
        raw_dependencies=raw_deps,
        extensions=tuple(extensions),
    )
    return prefix, size


def _read_suffix(data: bytes, name: str | None) -> ModuleSuffix:
    n = len(data)
    reserved, sha, suffix_size = SUFFIX_BASE.unpack_from(data, n - FROM_END_CRC - SUFFIX_BASE_SIZE)
    product_id: int | None
    product_version: int | None
    product_id, product_version = PRODUCT_FIELDS.unpack_from(data, n - FROM_END_PRODUCT_ID)
    if suffix_size < SUFFIX_WITH_PRODUCT_SIZE:
        product_id = product_version = None
    product_id32 = None
    if suffix_size == EXTENDED_PRODUCT_SUFFIX_SIZE and n >= FROM_END_RESERVED + EXTENDED_PRODUCT_FIELDS.size:
        product_id32, _ = EXTENDED_PRODUCT_FIELDS.unpack_from(
            data, n - FROM_END_RESERVED - EXTENDED_PRODUCT_FIELDS.size
        )
    extensions: list[Extension] = []
    if suffix_size > SUFFIX_WITH_PRODUCT_SIZE:
        pos = n - FROM_END_CRC - suffix_size
        limit = n - FROM_END_CRC - SUFFIX_BASE_SIZE
        while 0 < pos < limit:
            ext = read_extension(data, pos)
            if ext is None:
                break
            extensions.append(ext)
            if ext.length == 0:
                raise FormatError("invalid extension length 0 in the suffix", file=name, offset=pos)
            pos += ext.length
            if ext.type == ExtensionType.END:
                break
    return ModuleSuffix(
        product_id=product_id,
        product_version=product_version,
        reserved=reserved,
        sha256=sha,
        suffix_size=suffix_size,
        extensions=tuple(extensions),
        product_id32=product_id32,
    )


def _payload_sha256(data: bytes, payload_start: int, suffix_size: int) -> bytes:
    end = len(data) - FROM_END_CRC - suffix_size
    if not 0 <= payload_start <= end:
        return b""
    return hashlib.sha256(memoryview(data)[payload_start:end]).digest()


def parse_module(data: bytes, *, name: str | None = None) -> ParticleModule:
    """Parse one module file (compressed and combined files included). Raises FormatError."""
    return _parse(bytes(data), name, 0, _Budget(MAX_DECOMPRESSED))


class _Budget:
    """Bytes one parse may still inflate, so nested and combined compressed parts cannot multiply."""

    def __init__(self, remaining: int) -> None:
        self.remaining = remaining


def _parse(data: bytes, name: str | None, depth: int, budget: _Budget, *, in_combined: bool = False) -> ParticleModule:
    n = len(data)
    if n == 0:
        raise FormatError("file is empty", file=name)
    if n < MIN_PARSEABLE_SIZE:
        raise FormatError(
            f"{n} bytes is too short for a Particle module (a suffix alone is {MIN_PARSEABLE_SIZE})", file=name
        )
    offset, score = find_prefix_offset(data)
    if score == 0:
        raise FormatError(
            "not a Particle module: no plausible module prefix in the first 8 KiB",
            file=name,
            hint="is this a raw image rather than a module binary?",
        )
    prefix, prefix_size = _read_prefix(data, offset, name)
    suffix = _read_suffix(data, name)
    crc_stored = CRC.unpack_from(data, n - FROM_END_CRC)[0]
    crc_computed = file_crc32(data)
    if crc_stored != crc_computed and offset not in KNOWN_PREFIX_OFFSETS:
        raise FormatError(
            f"not a valid Particle module: no prefix at a known offset (best guess {offset:#x}) "
            "and the CRC-32 does not match",
            file=name,
        )
    sha_computed = hashlib.sha256(memoryview(data)[: n - FROM_END_SHA]).digest()
    # The payload-only hash tells a create_module.py-style seal apart from a corrupt one; a file
    # whose whole-file hash matches needs no second pass over its bytes.
    payload_sha = (
        b"" if suffix.sha256 == sha_computed else _payload_sha256(data, offset + prefix_size, suffix.suffix_size)
    )
    module = ParticleModule(
        size=n,
        prefix_offset=offset,
        prefix=prefix,
        prefix_size=prefix_size,
        suffix=suffix,
        crc32_stored=crc_stored,
        crc32_computed=crc_computed,
        sha256_computed=sha_computed,
        sha256_payload=payload_sha,
    )
    if depth >= MAX_NESTING:
        return module
    inner: tuple[ParticleModule, ...] = ()
    inner_error: str | None = None
    container: str | None = None
    try:
        if module.is_combined and not in_combined:
            container = "combined"
            parts = split_combined(data, name=name)
            inner = tuple(_parse(part, name, depth + 1, budget, in_combined=True) for part in parts)
        elif module.is_compressed:
            container = "compressed"
            restored = decompress_module(data, name=name, limit=budget.remaining)
            budget.remaining -= len(restored)
            inner = (_parse(restored, name, depth + 1, budget),)
    except FormatError as exc:
        inner_error = exc.message if exc.offset is None else f"at offset {exc.offset:#x}: {exc.message}"
    if container is not None:
        module = replace(module, inner=inner, inner_error=inner_error, container=container)
    return module


def split_combined(data: bytes, *, name: str | None = None) -> list[bytes]:
    """The modules of a combined file, each as stored (earlier ones keep their COMBINED flag)."""
    parts: list[bytes] = []
    view = memoryview(data)
    pos = 0
    n = len(data)
    while True:
        if len(parts) >= MAX_COMBINED_MODULES:
            raise FormatError(f"combined file holds more than {MAX_COMBINED_MODULES} modules", file=name)
        rest = view[pos:]
        if len(rest) < PREFIX_SIZE + SUFFIX_BASE_SIZE:
            raise FormatError("combined module ends in the middle of a module", file=name, offset=pos)
        rel, score = find_prefix_offset(rest)
        if score == 0:
            raise FormatError("no module prefix where the next combined module should start", file=name, offset=pos)
        start, end, _r, flags = PREFIX.unpack_from(rest, rel)[:4]
        size = end - start + CRC.size
        if end < start or size > len(rest):
            raise FormatError(
                f"combined module claims {size} bytes but {len(rest)} remain", file=name, offset=pos + rel
            )
        parts.append(bytes(rest[:size]))
        pos += size
        if not flags & ModuleFlags.COMBINED:
            break
        if pos >= n:
            raise FormatError("the last module of a combined file still has the COMBINED flag", file=name)
    if pos != n:
        raise FormatError(f"{n - pos} bytes follow the last combined module", file=name, offset=pos)
    return parts


def decompress_module(data: bytes, *, name: str | None = None, limit: int = MAX_DECOMPRESSED) -> bytes:
    """The module a COMPRESSED module holds, restored as the reference's decompressModule does.

    ``limit`` bounds the inflated size; a module claiming more is refused before inflating.
    """
    outer = _parse_outer_only(data, name)
    prefix, prefix_size, suffix_size = outer
    n = len(data)
    if not prefix.flags & ModuleFlags.COMPRESSED:
        raise FormatError("module is not compressed", file=name)
    if not SUFFIX_BASE_SIZE <= suffix_size <= MAX_SUFFIX_SIZE:
        raise FormatError(f"invalid suffix size {suffix_size}", file=name)
    size = prefix.end_address - prefix.start_address + CRC.size
    header_at = prefix_size  # the compressed module always has its prefix at offset 0
    if n != size or n < prefix_size + COMPRESSED_HEADER.size + suffix_size + CRC.size:
        raise FormatError(f"compressed module is {n} bytes but its prefix says {size}", file=name)
    header_size, method, window_bits, raw_size = COMPRESSED_HEADER.unpack_from(data, header_at)
    if header_size < COMPRESSED_HEADER.size:
        raise FormatError(f"compressed data header of {header_size} bytes is too short", file=name, offset=header_at)
    if method != 0:
        raise FormatError(f"unknown compression method {method}", file=name, offset=header_at + 2)
    if window_bits != 0 and not 8 <= window_bits <= 15:
        raise FormatError(f"invalid Deflate window bits {window_bits}", file=name, offset=header_at + 3)
    if raw_size > limit:
        raise FormatError(
            f"compressed module claims {raw_size} bytes uncompressed, more than the {limit} allowed",
            file=name,
            offset=header_at + 4,
        )
    stream_at = header_at + header_size
    stream_end = n - CRC.size - suffix_size
    if stream_at > stream_end:
        raise FormatError("compressed data header runs into the suffix", file=name, offset=header_at)
    inflater = zlib.decompressobj(-15)
    try:
        raw = inflater.decompress(data[stream_at:stream_end], raw_size + 1)
    except zlib.error as exc:
        raise FormatError(f"compressed data is corrupt: {exc}", file=name, offset=stream_at) from exc
    if len(raw) != raw_size:
        raise FormatError(
            f"compressed data inflates to {len(raw)}{'+' if len(raw) > raw_size else ''} bytes, "
            f"the header says {raw_size}",
            file=name,
            offset=stream_at,
        )
    if not prefix.flags & ModuleFlags.DROP_MODULE_INFO:
        return raw
    # Only the payload was compressed: put the prefix and the suffix back around it.
    suffix_bytes = data[n - CRC.size - suffix_size : n - CRC.size]
    head = bytearray(data[:prefix_size])
    new_end = prefix.start_address + prefix_size + len(raw) + suffix_size
    if new_end > 0xFFFFFFFF:
        raise FormatError("decompressed module does not fit the 32-bit address space", file=name)
    head[4:8] = new_end.to_bytes(4, "little")
    head[9] = int(prefix.flags) & ~ModuleFlags.COMPRESSED & 0xFF
    return reseal(bytes(head) + raw + suffix_bytes + bytes(CRC.size))


def _parse_outer_only(data: bytes, name: str | None) -> tuple[ModulePrefix, int, int]:
    if len(data) < MIN_PARSEABLE_SIZE:
        raise FormatError("too short for a compressed module", file=name)
    offset, score = find_prefix_offset(data)
    if score == 0 or offset != 0:
        raise FormatError("a compressed module has its prefix at offset 0", file=name)
    prefix, prefix_size = _read_prefix(data, offset, name)
    suffix_size = SUFFIX_BASE.unpack_from(data, len(data) - FROM_END_CRC - SUFFIX_BASE_SIZE)[2]
    return prefix, prefix_size, suffix_size
