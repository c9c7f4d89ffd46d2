"""Writing the device list: the console's ``.txt`` import file (passed IDs, one per line), CSV or JSON.

Rows stream from the registry to the file, which appears only once complete (temporary file in the
same folder, fsync, rename): a crash or full disk never leaves half an import file behind.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from enum import StrEnum
from pathlib import Path
from typing import IO, Any

from station.errors import InputError, StationError
from station.store.models import DeviceRecord
from station.store.when import iso_utc


class ExportFormat(StrEnum):
    TXT = "txt"
    CSV = "csv"
    JSON = "json"


COLUMNS = (
    "device_id",
    "platform",
    "first_seen",
    "last_seen",
    "attempts",
    "last_result",
    "last_error_code",
    "passed_at",
)


def check_choice(fmt: ExportFormat, include_all: bool) -> None:
    if fmt is ExportFormat.TXT and include_all:
        raise InputError(
            "--format txt is the console's import file and holds passed devices only",
            hint="use --format csv or json with --all",
        )


def device_row(record: DeviceRecord) -> dict[str, Any]:
    return {
        "device_id": record.device_id,
        "platform": record.platform,
        "first_seen": iso_utc(record.first_seen),
        "last_seen": iso_utc(record.last_seen),
        "attempts": record.attempts,
        "last_result": None if record.last_result is None else record.last_result.value,
        "last_error_code": record.last_error_code,
        "passed_at": iso_utc(record.passed_at),
    }


def _lines(records: Iterable[DeviceRecord], fmt: ExportFormat) -> Iterator[str]:
    if fmt is ExportFormat.TXT:
        for record in records:
            yield record.device_id + "\n"
    elif fmt is ExportFormat.CSV:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        for record in records:
            writer.writerow({k: ("" if v is None else v) for k, v in device_row(record).items()})
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
        yield buffer.getvalue()
    else:
        first = True
        yield "["
        for record in records:
            yield ("\n  " if first else ",\n  ") + json.dumps(device_row(record), separators=(", ", ": "))
            first = False
        yield "]\n" if first else "\n]\n"


def render(records: Iterable[DeviceRecord], fmt: ExportFormat, *, chunk: int = 1 << 16) -> Iterator[str]:
    """The export as pieces of text of about ``chunk`` characters; joined they are the whole file."""
    pieces: list[str] = []
    size = 0
    for line in _lines(records, fmt):
        pieces.append(line)
        size += len(line)
        if size >= chunk:
            yield "".join(pieces)
            pieces.clear()
            size = 0
    if pieces:
        yield "".join(pieces)


def write_export(records: Iterable[DeviceRecord], fmt: ExportFormat, out: IO[str]) -> None:
    for piece in render(records, fmt):
        out.write(piece)


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
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise StationError(f"cannot write {target}: {exc.strerror or exc}", hint="check the disk") from exc
        raise
