"""write_atomic: whole file or nothing, and the permissions a user expects of an output file."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from firmware_tools.errors import FirmwareError
from firmware_tools.fileio import current_umask, write_atomic


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_current_umask_is_read_without_changing_it(umask_022: None) -> None:
    assert current_umask() == 0o022
    os.umask(0o027)
    assert current_umask() == 0o027
    assert os.umask(0o022) == 0o027


def test_a_new_file_gets_the_umask_mode_not_the_temporary_file_s_0600(tmp_path: Path, umask_022: None) -> None:
    out = tmp_path / "firmware.bin"
    write_atomic(out, b"abc")
    assert out.read_bytes() == b"abc"
    assert _mode(out) == 0o644


def test_a_replaced_file_keeps_its_mode(tmp_path: Path, umask_022: None) -> None:
    out = tmp_path / "firmware.bin"
    out.write_bytes(b"old")
    out.chmod(0o640)
    write_atomic(out, b"new")
    assert out.read_bytes() == b"new"
    assert _mode(out) == 0o640


def test_an_explicit_mode_wins(tmp_path: Path, umask_022: None) -> None:
    out = tmp_path / "release.key"
    write_atomic(out, b"secret", mode=0o600)
    assert _mode(out) == 0o600


def test_a_folder_or_a_missing_folder_is_a_one_line_error_and_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(FirmwareError, match="cannot write: it is a folder"):
        write_atomic(tmp_path, b"abc")
    with pytest.raises(FirmwareError, match="cannot write: No such file or directory"):
        write_atomic(tmp_path / "missing" / "x.bin", b"abc")
    # A file where a folder should be.
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(FirmwareError, match="cannot write"):
        write_atomic(tmp_path / "file" / "x.bin", b"abc")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_interrupted_write_leaves_old_file_and_no_temporary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "firmware.bin"
    out.write_bytes(b"old")

    def interrupted(fd: int) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_atomic(out, b"new")
    assert out.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["firmware.bin"]
