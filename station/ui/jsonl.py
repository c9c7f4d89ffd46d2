"""JSON lines: one event per line on a stream, for MES integration and for `--json`."""

from __future__ import annotations

import json
import threading
from typing import TextIO

from station.line.events import Event


class JsonLinesSink:
    """Writes each event as one compact JSON object and flushes, so a reader sees it at once."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        line = json.dumps(event.to_json(), separators=(",", ":"), sort_keys=True)
        with self._lock:
            self._stream.write(line + "\n")
            self._stream.flush()
