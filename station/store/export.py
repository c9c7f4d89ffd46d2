"""Writing the device list: the console's ``.txt`` import file (passed IDs, one per line), CSV or JSON.

Rows stream from the registry to the file, which appears only once complete (temporary file in the
same folder, fsync, rename): a crash or full disk never leaves half an import file behind.
"""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from enum import StrEnum
from pathlib import Path
from typing import IO, Any, TypeVar

from station.errors import InputError, StationError
from station.store.registry import Registry
from station.store.reports import EXPORT_COLUMNS
from station.store.when import UtcFormatter

_T = TypeVar("_T")


class ExportFormat(StrEnum):
    TXT = "txt"
    CSV = "csv"
    JSON = "json"


def check_choice(fmt: ExportFormat, include_all: bool) -> None:
    if fmt is ExportFormat.TXT and include_all:
        raise InputError(
            "--format txt is the console's import file and holds passed devices only",
            hint="use --format csv or json with --all",
        )


def _chunked(lines: Iterable[str], chunk: int) -> Iterator[str]:
    pieces: list[str] = []
    size = 0
    for line in lines:
        pieces.append(line)
        size += len(line)
        if size >= chunk:
            yield "".join(pieces)
            pieces.clear()
            size = 0
    if pieces:
        yield "".join(pieces)


def _with_iso_times(rows: Iterable[tuple[Any, ...]]) -> Iterator[tuple[Any, ...]]:
    iso = UtcFormatter()
    for device_id, platform, first_seen, last_seen, attempts, last_result, code, passed_at in rows:
        yield device_id, platform, iso(first_seen), iso(last_seen), attempts, last_result, code, iso(passed_at)


def _csv_lines(rows: Iterable[tuple[Any, ...]], batch: int = 2000) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS)
    iterator = iter(rows)
    while part := list(itertools.islice(iterator, batch)):
        writer.writerows(part)  # None becomes an empty field
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue()


def _json_lines(rows: Iterable[tuple[Any, ...]]) -> Iterator[str]:
    encode = json.JSONEncoder(separators=(", ", ": ")).encode
    separator = "[\n  "
    for row in rows:
        yield separator + encode(dict(zip(EXPORT_COLUMNS, row, strict=True)))
        separator = ",\n  "
    yield "[]\n" if separator.startswith("[") else "\n]\n"


class Tally:
    """Counts the devices an export has written so far."""

    def __init__(self) -> None:
        self.rows = 0

    def count(self, rows: Iterable[_T]) -> Iterator[_T]:
        for row in rows:
            self.rows += 1
            yield row


def render(
    registry: Registry,
    fmt: ExportFormat,
    *,
    include_all: bool = False,
    tally: Tally | None = None,
    chunk: int = 1 << 16,
) -> Iterator[str]:
    """The export as pieces of about ``chunk`` characters; joined they are the whole file.

    txt: the ID of every device that ever passed, each once, one per line (the console's import
    file). csv and json: one row per device (passed ones, or all with ``include_all``) with the
    columns of ``EXPORT_COLUMNS``, times in ISO 8601 UTC.
    """
    check_choice(fmt, include_all)
    tally = tally or Tally()
    if fmt is ExportFormat.TXT:
        yield from _chunked((device_id + "\n" for device_id in tally.count(registry.iter_passed_ids())), chunk)
        return
    rows = _with_iso_times(tally.count(registry.iter_export_rows(passed_only=not include_all)))
    yield from _chunked(_csv_lines(rows) if fmt is ExportFormat.CSV else _json_lines(rows), chunk)


def write_export(
    registry: Registry, fmt: ExportFormat, path: str | os.PathLike[str], *, include_all: bool = False
) -> int:
    """Write the export to ``path`` atomically; returns the devices written (see ``render``)."""
    tally = Tally()
    with atomic_text_file(path) as fh:
        for piece in render(registry, fmt, include_all=include_all, tally=tally):
            fh.write(piece)
    return tally.rows


def _sync_folder(folder: Path) -> None:
    """Make the rename itself durable: a power cut right after must not bring the old file back."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_text_file(path: str | os.PathLike[str]) -> Iterator[IO[str]]:
    """A text file that replaces ``path`` only when the block ends without an error."""
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise InputError(f"cannot write {target}: {exc.strerror or exc}", hint="choose another -o") from exc
    try:
        # mkstemp makes the file private; an export is for sharing, so keep the mode of the file it
        # replaces, else the usual rw-r--r--.
        try:
            mode = target.stat().st_mode & 0o777
        except OSError:
            mode = 0o644
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
        _sync_folder(folder)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise StationError(f"cannot write {target}: {exc.strerror or exc}", hint="check the disk") from exc
        raise
