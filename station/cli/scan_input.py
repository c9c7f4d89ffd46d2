"""Scans on standard input for ``station run --json``: one line per scan, naming the slot or not.

A line is either a JSON object ``{"scan": "SERIAL MOBILE_SECRET", "slot": "A1"}`` (``slot``, a
label or a port path, is optional) or the scanned code itself, which goes to the board that began
waiting last. A refused line becomes a ``scan-refused`` event; the code is never echoed (it may
hold the mobile secret).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import TextIO

from station.line.events import EventSink, ScanRefused
from station.line.runner import LineRunner
from station.line.scan import ScanRejected, serial_from_code

# A scan that arrives before its board waits for it (scanned, then plugged in) is held this long.
SCAN_EARLY_SECONDS = 10.0


def parse_scan_line(line: str) -> tuple[str, str | None]:
    """(code, slot or None) from one input line; ScanRejected for a malformed JSON line."""
    text = line.strip()
    if text.startswith("{"):
        try:
            doc = json.loads(text)
        except ValueError:
            raise ScanRejected("a scan line starting with '{' is not valid JSON") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("scan"), str):
            raise ScanRejected('a JSON scan line needs "scan": "CODE" (and optionally "slot": "A1")')
        slot = doc.get("slot")
        if slot is not None and not isinstance(slot, str):
            raise ScanRejected('"slot" must be a string: the slot label or port path')
        return doc["scan"], slot
    return text, None


def feed_scans(stream: TextIO, runner: LineRunner, sink: EventSink, stop: threading.Event) -> None:
    """Read scan lines until end of input or ``stop``; each one is offered to the runner."""
    for line in stream:
        if stop.is_set():
            return
        if not line.strip():
            continue
        slot: str | None = None
        try:
            code, slot = parse_scan_line(line)
            serial_from_code(code)  # a code that is no serial number is refused at once
            # The board may still be plugging in or identifying when its scan arrives.
            deadline = time.monotonic() + SCAN_EARLY_SECONDS
            while True:
                try:
                    runner.submit_scan(code, slot)
                    break
                except ScanRejected:
                    if stop.is_set() or time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
        except ScanRejected as exc:
            sink(ScanRefused(time=time.time(), slot=slot or "", label="", message=exc.one_line()))
    if not stop.is_set():
        # Boards that need a scan now wait until the line stops: say why, once.
        print("station: standard input ended: no more scans will arrive", file=sys.stderr, flush=True)
