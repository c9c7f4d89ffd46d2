"""Label printers: raw ZPL to a Zebra on TCP port 9100, or through CUPS (``lp -d QUEUE -o raw``).

The profile's ``[label]`` section names it: ``printer = "tcp://10.0.0.7:9100"`` (port 9100 when
left out) or ``printer = "cups://QUEUE"``; ``template = "unit.zpl"`` replaces the built-in label;
``preview_dir = "labels"`` also writes each label as a PNG there; ``timeout`` (seconds, default 5).
A printer that cannot be reached is a ``LabelPrinterError``: the label fails, never the board.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from station.errors import InputError, Reason, StationError
from station.labels.zpl import DEFAULT_TEMPLATE, load_template

RAW_PORT = 9100
_KEYS = {"printer", "template", "preview_dir", "timeout"}


class LabelPrinterError(StationError):
    reason = Reason.DISCONNECTED


@dataclass(frozen=True)
class LabelConfig:
    printer: str  # tcp://HOST:PORT or cups://QUEUE
    template: str = DEFAULT_TEMPLATE
    preview_dir: Path | None = None
    timeout: float = 5.0

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any], *, where: str, base_dir: Path) -> LabelConfig:
        unknown = sorted(set(raw) - _KEYS)
        if unknown:
            raise InputError(f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(_KEYS))})")
        printer = raw.get("printer")
        if not isinstance(printer, str):
            raise InputError(f"{where}: printer must name the printer: tcp://HOST:9100 or cups://QUEUE")
        describe(printer, where=where)
        template = DEFAULT_TEMPLATE
        if "template" in raw:
            if not isinstance(raw["template"], str):
                raise InputError(f"{where}: template must be the path of a .zpl file")
            template = load_template(base_dir / raw["template"])
        preview = raw.get("preview_dir")
        if preview is not None and not isinstance(preview, str):
            raise InputError(f"{where}: preview_dir must be a folder path")
        timeout = raw.get("timeout", 5.0)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0.1 <= timeout <= 120:
            raise InputError(f"{where}: timeout must be 0.1-120 seconds, not {timeout!r}")
        return cls(printer, template, None if preview is None else base_dir / preview, float(timeout))


def describe(printer: str, *, where: str = "printer") -> tuple[str, str, int]:
    """(kind, host or queue, port) of a printer name; InputError for anything else."""
    parts = urlsplit(printer)
    if parts.scheme == "tcp" and parts.hostname:
        try:
            port = parts.port or RAW_PORT
        except ValueError:
            raise InputError(f"{where}: {printer!r} has no usable port") from None
        return "tcp", parts.hostname, port
    if parts.scheme == "cups" and (parts.netloc or parts.path.strip("/")):
        return "cups", (parts.netloc or parts.path.strip("/")), 0
    raise InputError(f"{where}: printer {printer!r} is neither tcp://HOST[:PORT] nor cups://QUEUE")


def send(printer: str, data: bytes, *, timeout: float = 5.0) -> None:
    """Send raw printer language; LabelPrinterError when it does not get there."""
    kind, where, port = describe(printer)
    if kind == "tcp":
        try:
            with socket.create_connection((where, port), timeout=timeout) as conn:
                conn.sendall(data)
                conn.shutdown(socket.SHUT_WR)
        except OSError as exc:
            raise LabelPrinterError(
                f"label printer {where}:{port} not reachable: {exc.strerror or exc}",
                hint="check the printer is on and on the network; `station label reprint --failed` prints the queue",
            ) from None
        return
    lp = shutil.which("lp")
    if lp is None:
        raise LabelPrinterError("CUPS' lp command is not installed", hint="install cups-client, or use tcp://HOST:9100")
    try:
        done = subprocess.run(
            [lp, "-d", where, "-o", "raw"], input=data, capture_output=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        raise LabelPrinterError(f"lp -d {where} did not answer within {timeout:g} s") from None
    if done.returncode != 0:
        why = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise LabelPrinterError(f"lp -d {where} refused the label: {why[-1] if why else done.returncode}")
