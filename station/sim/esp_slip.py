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


class SlipDecoder:
    """Turns a byte stream into frames. Bytes outside frames are ignored, as the ROM does."""

    def __init__(self) -> None:
        self._frame: bytearray | None = None
        self._escaped = False
        self.dropped = 0  # frames discarded: bad escape or oversized

    def feed(self, data: bytes) -> list[bytes]:
        frames: list[bytes] = []
        for byte in data:
            if self._frame is None:
                if byte == END:
                    self._frame = bytearray()
                continue
            if self._escaped:
                self._escaped = False
                if byte == ESC_END:
                    self._frame.append(END)
                elif byte == ESC_ESC:
                    self._frame.append(ESC)
                else:
                    self.dropped += 1
                    self._frame = None
                continue
            if byte == END:
                if self._frame:
                    frames.append(bytes(self._frame))
                    self._frame = None
                # An empty frame (C0 C0): the second C0 opens the next frame.
                continue
            if byte == ESC:
                self._escaped = True
                continue
            self._frame.append(byte)
            if len(self._frame) > MAX_FRAME:
                self.dropped += 1
                self._frame = None
        return frames

    def reset(self) -> None:
        self._frame = None
        self._escaped = False
