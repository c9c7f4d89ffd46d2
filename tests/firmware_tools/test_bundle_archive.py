"""The bundle's zip layer: deterministic writing, and hostile archives judged before anything is read."""

from __future__ import annotations

import io
import stat
import struct
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_tools.bundle import archive
from firmware_tools.errors import FormatError

WHEN = datetime(2026, 11, 26, 7, 0, 0, tzinfo=UTC)


def _zip(entries: list[tuple[zipfile.ZipInfo | str, bytes]], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=method) as zf:
        for info, data in entries:
            zf.writestr(info, data)
    return out.getvalue()


def _listing(data: bytes) -> archive.Listing:
    with archive.open_zip(data, name="t.fwpkg") as zf:
        return archive.list_members(zf)


def test_pack_is_deterministic_and_keeps_order() -> None:
    members = [("manifest.json", b"{}\n"), ("manifest.sig", b"s" * 64), ("b.bin", b"\x01" * 500), ("a.bin", b"x")]
    one = archive.pack_members(members, timestamp=WHEN)
    assert one == archive.pack_members(members, timestamp=WHEN)
    with zipfile.ZipFile(io.BytesIO(one)) as zf:
        assert [i.filename for i in zf.infolist()] == [n for n, _ in members]
        for info in zf.infolist():
            assert stat.S_ISREG(info.external_attr >> 16)
            assert info.date_time == (2026, 11, 26, 7, 0, 0)
        listing = archive.list_members(zf)
        assert listing.problems == ()
        assert [archive.read_member(zf, m) for m in listing.members] == [d for _, d in members]


def test_highly_compressible_members_are_stored_so_the_reader_accepts_them() -> None:
    padding = b"\xff" * (3 * 1024 * 1024)
    data = archive.pack_members([("flash.bin", padding)], timestamp=WHEN)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.infolist()[0].compress_type == zipfile.ZIP_STORED
        listing = archive.list_members(zf)
        assert listing.problems == ()
        assert archive.read_member(zf, listing.members[0]) == padding


def _symlink(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


def _fifo(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (stat.S_IFIFO | 0o644) << 16
    return info


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("/etc/passwd", "absolute path"),
        ("\\windows\\x.bin", "absolute path"),
        ("C:evil.bin", "absolute path"),
        ("../evil.bin", "'..'"),
        ("a/../../evil.bin", "'..'"),
        ("sub/app.bin", "inside a folder"),
        ("sub/", "is a folder"),
        (_symlink("app.bin"), "symbolic link"),
        (_fifo("app.bin"), "not a regular file"),
    ],
)
def test_hostile_member_paths_and_types(entry: zipfile.ZipInfo | str, message: str) -> None:
    listing = _listing(_zip([("manifest.json", b"{}"), (entry, b"target")]))
    assert [m.name for m in listing.members] == ["manifest.json"]
    assert len(listing.problems) == 1
    assert message in listing.problems[0]


def test_duplicate_names_are_refused_even_when_only_case_differs() -> None:
    with pytest.warns(UserWarning, match="Duplicate name"):
        data = _zip([("app.bin", b"one"), ("app.bin", b"two"), ("Other.bin", b"3"), ("other.bin", b"4")])
    listing = _listing(data)
    assert listing.members == ()
    assert any("'app.bin' appears more than once" in p for p in listing.problems)
    assert any("other.bin" in p.lower() for p in listing.problems)


def test_unsupported_compression_and_encryption_flags() -> None:
    bz = _zip([("app.bin", b"x" * 100)], method=zipfile.ZIP_BZIP2)
    assert "compression method 12" in _listing(bz).problems[0]
    raw = bytearray(_zip([(zipfile.ZipInfo("app.bin"), b"abc")], method=zipfile.ZIP_STORED))
    # Set the "encrypted" bit in the central directory entry (general purpose flags at offset 8).
    cd = raw.index(b"PK\x01\x02")
    raw[cd + 8] |= 0x1
    assert "encrypted" in _listing(bytes(raw)).problems[0]


def test_zip_bomb_by_ratio_is_refused_before_decompressing() -> None:
    bomb = _zip([("app.bin", b"\0" * (4 * 1024 * 1024))])
    listing = _listing(bomb)
    assert listing.members == ()
    assert "compression ratio" in listing.problems[0]
    assert "zip bomb" in listing.problems[0]


def test_oversized_members_are_refused_before_decompressing() -> None:
    sig = _zip([("manifest.sig", b"s" * (archive.MAX_SIGNATURE_BYTES + 1))])
    assert "more than 1024" in _listing(sig).problems[0]
    manifest = _zip([("manifest.json", b"{" * (archive.MAX_MANIFEST_BYTES + 1))])
    assert "more than" in _listing(manifest).problems[0]


def test_too_many_members() -> None:
    data = _zip([(f"m{i}.bin", b"x") for i in range(archive.MAX_MEMBERS + 1)])
    listing = _listing(data)
    assert listing.members == ()
    assert "members, more than" in listing.problems[0]


def _set_sizes(raw: bytearray, size: int) -> None:
    """Make every header claim ``size`` uncompressed bytes (a lying directory)."""
    pos = raw.index(b"PK\x01\x02")
    struct.pack_into("<I", raw, pos + 24, size)
    loc = raw.index(b"PK\x03\x04")
    struct.pack_into("<I", raw, loc + 22, size)


def test_a_member_that_decompresses_to_more_than_listed_is_cut_off() -> None:
    raw = bytearray(_zip([("app.bin", bytes(range(256)) * 64)]))
    _set_sizes(raw, 100)
    with archive.open_zip(bytes(raw), name="t") as zf:
        listing = archive.list_members(zf)
        assert listing.members[0].size == 100
        with pytest.raises(archive.MemberUnreadable):
            archive.read_member(zf, listing.members[0])


def test_a_member_shorter_than_listed_is_unreadable() -> None:
    raw = bytearray(_zip([("app.bin", b"abc")], method=zipfile.ZIP_STORED))
    _set_sizes(raw, 10)
    with archive.open_zip(bytes(raw), name="t") as zf, pytest.raises(archive.MemberUnreadable):
        archive.read_member(zf, archive.list_members(zf).members[0])


def test_corrupt_member_data_is_unreadable_not_a_crash() -> None:
    payload = bytes(range(256)) * 16
    raw = bytearray(archive.pack_members([("app.bin", payload)], timestamp=WHEN))
    start = raw.index(b"app.bin") + len("app.bin") + 5
    raw[start] ^= 0xFF
    with archive.open_zip(bytes(raw), name="t") as zf, pytest.raises(archive.MemberUnreadable, match="corrupt"):
        archive.read_member(zf, archive.list_members(zf).members[0])


def test_not_a_zip_is_a_format_error() -> None:
    with pytest.raises(FormatError, match="not a release bundle"):
        archive.open_zip(b"PK\x03\x04 but nothing else", name="x.fwpkg")


def test_bundle_file_checks(tmp_path: Path) -> None:
    with pytest.raises(FormatError, match="cannot read"):
        archive.check_bundle_file(tmp_path / "missing.fwpkg")
    with pytest.raises(FormatError, match="not a regular file"):
        archive.check_bundle_file(tmp_path)
    sparse = tmp_path / "huge.fwpkg"
    with sparse.open("wb") as fh:
        fh.truncate(archive.MAX_BUNDLE_BYTES + 1)
    with pytest.raises(FormatError, match="larger than"):
        archive.check_bundle_file(sparse)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600), st.data())
def test_mutated_zips_never_raise_anything_unexpected(payload: bytes, data: st.DataObject) -> None:
    raw = bytearray(archive.pack_members([("manifest.json", b"{}"), ("app.bin", payload)], timestamp=WHEN))
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(raw) - 1))
        raw[pos] = data.draw(st.integers(0, 255))
    try:
        zf = archive.open_zip(bytes(raw), name="t")
    except FormatError:
        return
    with zf:
        listing = archive.list_members(zf)
        for member in listing.members:
            try:
                got = archive.read_member(zf, member)
            except archive.MemberUnreadable:
                continue
            assert len(got) == member.size
