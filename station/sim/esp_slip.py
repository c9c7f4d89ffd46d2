"""SLIP framing as the ESP ROM loader and its flasher stub speak it: encode one frame, decode a stream."""

from __future__ import annotations

END = 0xC0
ESC = 0xDB
ESC_END = 0xDC
ESC_ESC = 0xDD

# Larger than any frame esptool sends (a 16 KiB stub block, escaped, plus headers); bounds memory.
MAX_FRAME = 0x10000


def slip_encode(payload: bytes) -> bytes:
    """One frame: ``C0``, the payload with ``C0``/``DB`` escaped, ``C0``."""
    body = payload.replace(b"\xdb", b"\xdb\xdd").replace(b"\xc0", b"\xdb\xdc")
    return b"\xc0" + body + b"\xc0"


def _next_special(data: bytes, start: int) -> int:
    """Index of the first END or ESC at or after ``start``; ``len(data)`` if there is none."""
    end = data.find(b"\xc0", start)
    esc = data.find(b"\xdb", start, end if end >= 0 else len(data))
    if esc >= 0:
        return esc
    return end if end >= 0 else len(data)


class SlipDecoder:
    """Turns a byte stream into frames. Bytes outside frames are ignored, as the ROM does."""

    def __init__(self) -> None:
        self._frame: bytearray | None = None
        self._escaped = False
        self.dropped = 0  # frames discarded: bad escape or oversized

    def feed(self, data: bytes) -> list[bytes]:
        # Runs of ordinary bytes are copied whole (bytes.find, in C): a byte-at-a-time loop here
        # costs milliseconds of GIL per 16 KiB block, time taken from the station under test.
        frames: list[bytes] = []
        i, n = 0, len(data)
        while i < n:
            frame = self._frame
            if frame is None:
                start = data.find(b"\xc0", i)
                if start < 0:
                    break
                self._frame = bytearray()
                i = start + 1
                continue
            if self._escaped:
                self._escaped = False
                byte = data[i]
                i += 1
                if byte == ESC_END:
                    frame.append(END)
                elif byte == ESC_ESC:
                    frame.append(ESC)
                else:
                    self.dropped += 1
                    self._frame = None
                    continue
                self._check_size(frame)
                continue
            stop = _next_special(data, i)
            if stop > i:
                frame += data[i:stop]
                i = stop
                if self._check_size(frame):
                    continue
            if i >= n:
                break
            i += 1
            if data[i - 1] == END:
                if frame:
                    frames.append(bytes(frame))
                    self._frame = None
                # An empty frame (C0 C0): the second C0 opens the next frame.
            else:
                self._escaped = True
        return frames

    def _check_size(self, frame: bytearray) -> bool:
        """Drop the frame being built once it is longer than any real one; True if dropped."""
        if len(frame) > MAX_FRAME:
            self.dropped += 1
            self._frame = None
            return True
        return False

    def reset(self) -> None:
        self._frame = None
        self._escaped = False
