"""The zip container of a release bundle: a deterministic writer, and a reader that trusts nothing.

The reader lists members and judges each (path, type, size, compression ratio) from the central
directory before a single byte is decompressed, and every read is bounded by the size it may have.
"""

from __future__ import annotations

import io
import stat
import struct
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from firmware_tools.bundle.manifest import MANIFEST_NAME, MAX_IMAGE_BYTES, MAX_IMAGES, SIGNATURE_NAME
from firmware_tools.errors import FormatError

MAX_MANIFEST_BYTES = 1024 * 1024
MAX_SIGNATURE_BYTES = 1024
MAX_MEMBERS = MAX_IMAGES + 2
# The whole bundle, compressed or not: a factory ships a handful of images of a few MiB each.
MAX_BUNDLE_BYTES = 256 * 1024 * 1024
MAX_TOTAL_UNCOMPRESSED = 256 * 1024 * 1024
# Deflate can reach ~1030:1. Erased-flash padding compresses well, so the ratio only counts for
# members large enough to matter; the writer stores (does not deflate) anything that would exceed it.
MAX_COMPRESSION_RATIO = 100
RATIO_APPLIES_ABOVE = 1024 * 1024
_READ_CHUNK = 64 * 1024
_ALLOWED_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)
_UNIX = 3
# What zipfile and zlib raise on malformed input (found by mutating real bundles): all mean "corrupt".
_ZIP_PARSE_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    zlib.error,
    EOFError,
    OSError,
    ValueError,
    NotImplementedError,
    RuntimeError,
    struct.error,
    KeyError,
    IndexError,
    OverflowError,
)
_MEMBER_MODE = 0o100644


def member_limit(name: str) -> int:
    """The most bytes the member called ``name`` may decompress to."""
    if name == MANIFEST_NAME:
        return MAX_MANIFEST_BYTES
    if name == SIGNATURE_NAME:
        return MAX_SIGNATURE_BYTES
    return MAX_IMAGE_BYTES


# ---------------------------------------------------------------------------------------------
# Writing.


def _deflates_within_ratio(data: bytes) -> bool:
    if len(data) <= RATIO_APPLIES_ABOVE:
        return True
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    compressed = len(compressor.compress(data)) + len(compressor.flush())
    return len(data) <= compressed * MAX_COMPRESSION_RATIO


def pack_members(members: Sequence[tuple[str, bytes]], *, timestamp: datetime) -> bytes:
    """A zip of ``members`` in the given order, byte-for-byte the same for the same input."""
    t = timestamp
    # Zip timestamps start in 1980; every member gets the release time so the zip is reproducible.
    stamp = (max(t.year, 1980), t.month, t.day, t.hour, t.minute, t.second)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for name, data in members:
            info = zipfile.ZipInfo(name, date_time=stamp)
            info.create_system = _UNIX
            info.external_attr = _MEMBER_MODE << 16
            info.compress_type = zipfile.ZIP_DEFLATED if _deflates_within_ratio(data) else zipfile.ZIP_STORED
            zf.writestr(info, data, compresslevel=9)
    return out.getvalue()


# ---------------------------------------------------------------------------------------------
# Reading.


@dataclass(frozen=True)
class Member:
    """A member that passed every structural rule; only these are ever read."""

    name: str
    size: int
    compressed_size: int
    info: zipfile.ZipInfo


@dataclass(frozen=True)
class Listing:
    """What the central directory holds: the members that may be read, and what is wrong with the rest."""

    members: tuple[Member, ...]
    problems: tuple[str, ...]

    def get(self, name: str) -> Member | None:
        for m in self.members:
            if m.name == name:
                return m
        return None


class MemberUnreadable(Exception):
    """A member whose stored bytes do not decompress to what the directory says (corrupt or tampered)."""


def _path_problem(name: str) -> str | None:
    if not name:
        return "a member has an empty name"
    if "\x00" in name:
        return f"member {name!r} has a NUL in its name"
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return f"member {name!r} has an absolute path"
    parts = name.replace("\\", "/").split("/")
    if ".." in parts:
        return f"member {name!r} climbs out of the bundle with '..'"
    if name.endswith("/"):
        return f"member {name!r} is a folder"
    if len(parts) > 1:
        return f"member {name!r} is inside a folder; a bundle's members are all at its top level"
    return None


def _type_problem(info: zipfile.ZipInfo) -> str | None:
    mode = info.external_attr >> 16
    if info.create_system == _UNIX and mode:
        if stat.S_ISLNK(mode):
            return f"member {info.filename!r} is a symbolic link"
        if stat.S_IFMT(mode) and not stat.S_ISREG(mode):
            return f"member {info.filename!r} is not a regular file"
    if info.flag_bits & 0x1:
        return f"member {info.filename!r} is encrypted"
    if info.compress_type not in _ALLOWED_METHODS:
        return f"member {info.filename!r} uses compression method {info.compress_type}; only stored or deflate"
    return None


def _size_problem(info: zipfile.ZipInfo) -> str | None:
    limit = member_limit(info.filename)
    if info.file_size > limit:
        return f"member {info.filename!r} would decompress to {info.file_size} bytes, more than {limit}"
    if info.file_size > RATIO_APPLIES_ABOVE and info.file_size > max(info.compress_size, 1) * MAX_COMPRESSION_RATIO:
        return (
            f"member {info.filename!r} has compression ratio "
            f"{info.file_size // max(info.compress_size, 1)}:1, more than {MAX_COMPRESSION_RATIO}:1 (zip bomb?)"
        )
    return None


def list_members(zf: zipfile.ZipFile) -> Listing:
    """Judge every central-directory entry; nothing is decompressed here."""
    infos = zf.infolist()
    problems: list[str] = []
    if len(infos) > MAX_MEMBERS:
        return Listing((), (f"bundle has {len(infos)} members, more than the {MAX_MEMBERS} allowed",))
    counts: dict[str, int] = {}
    for info in infos:
        key = info.filename.lower()
        counts[key] = counts.get(key, 0) + 1
    members: list[Member] = []
    total = 0
    for info in infos:
        problem = _path_problem(info.filename) or _type_problem(info) or _size_problem(info)
        if problem is None and counts[info.filename.lower()] > 1:
            problem = f"member name {info.filename!r} appears more than once"
        if problem is not None:
            if problem not in problems:
                problems.append(problem)
            continue
        total += info.file_size
        members.append(Member(info.filename, info.file_size, info.compress_size, info))
    if total > MAX_TOTAL_UNCOMPRESSED:
        problems.append(f"members would decompress to {total} bytes, more than {MAX_TOTAL_UNCOMPRESSED}")
        members = []
    return Listing(tuple(members), tuple(problems))


def read_member(zf: zipfile.ZipFile, member: Member) -> bytes:
    """The member's bytes, never more than its listed size; MemberUnreadable when they do not check out."""
    chunks: list[bytes] = []
    got = 0
    try:
        with zf.open(member.info) as fh:
            while True:
                chunk = fh.read(min(_READ_CHUNK, member.size + 1 - got))
                if not chunk:
                    break
                got += len(chunk)
                if got > member.size:
                    raise MemberUnreadable(f"{member.name}: decompresses to more than its listed size")
                chunks.append(chunk)
    except _ZIP_PARSE_ERRORS as exc:
        raise MemberUnreadable(f"{member.name}: stored data is corrupt ({exc})") from None
    if got != member.size:
        raise MemberUnreadable(f"{member.name}: holds {got} bytes, not the {member.size} listed")
    return b"".join(chunks)


def open_zip(source: bytes | BinaryIO, *, name: str) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(io.BytesIO(source) if isinstance(source, bytes) else source)
    except _ZIP_PARSE_ERRORS as exc:
        raise FormatError(f"not a release bundle (not a readable zip: {exc})", file=name) from None


def check_bundle_file(path: Path) -> int:
    """The bundle file's size, after refusing what is not a regular file or is too large to be a bundle."""
    try:
        st = path.stat()
    except OSError as exc:
        raise FormatError(f"cannot read: {exc.strerror}", file=str(path)) from exc
    if not stat.S_ISREG(st.st_mode):
        raise FormatError("not a regular file", file=str(path))
    if st.st_size > MAX_BUNDLE_BYTES:
        raise FormatError(
            f"file is {st.st_size} bytes, larger than the {MAX_BUNDLE_BYTES} a release bundle may be",
            file=str(path),
        )
    return st.st_size
