"""A sparse NOR flash: erased bytes read 0xFF, programming can only clear bits, erase sets a page back to 0xFF.

Writing over bytes that were not erased ANDs the new data into the old, as real NOR flash does;
that is how a host that skips the erase ends up with corrupt firmware. ``overwrite=True`` models
memory the bootloader manages itself (Particle's DCT), where a write simply replaces bytes.
"""

from __future__ import annotations

_CHUNK = 4096


class NorFlash:
    """``size`` bytes of flash starting at ``base``; storage is allocated only where written."""

    def __init__(self, base: int, size: int, *, overwrite: bool = False) -> None:
        self.base = base
        self.size = size
        self.overwrite = overwrite
        self._chunks: dict[int, bytearray] = {}

    @property
    def end(self) -> int:
        return self.base + self.size

    def _check(self, address: int, length: int) -> None:
        if length < 0 or address < self.base or address + length > self.end:
            raise ValueError(f"range {address:#x}+{length:#x} is outside flash {self.base:#x}..{self.end:#x}")

    def read(self, address: int, length: int) -> bytes:
        self._check(address, length)
        out = bytearray(b"\xff" * length)
        offset = address - self.base
        done = 0
        while done < length:
            index, within = divmod(offset + done, _CHUNK)
            n = min(_CHUNK - within, length - done)
            chunk = self._chunks.get(index)
            if chunk is not None:
                out[done : done + n] = chunk[within : within + n]
            done += n
        return bytes(out)

    def program(self, address: int, data: bytes) -> None:
        self._check(address, len(data))
        offset = address - self.base
        done = 0
        while done < len(data):
            index, within = divmod(offset + done, _CHUNK)
            n = min(_CHUNK - within, len(data) - done)
            chunk = self._chunks.get(index)
            if chunk is None:
                chunk = self._chunks[index] = bytearray(b"\xff" * _CHUNK)
            piece = data[done : done + n]
            if self.overwrite:
                chunk[within : within + n] = piece
            else:
                old = int.from_bytes(chunk[within : within + n], "big")
                chunk[within : within + n] = (old & int.from_bytes(piece, "big")).to_bytes(n, "big")
            done += n

    def erase(self, address: int, length: int) -> None:
        self._check(address, length)
        offset = address - self.base
        done = 0
        while done < length:
            index, within = divmod(offset + done, _CHUNK)
            n = min(_CHUNK - within, length - done)
            if within == 0 and n == _CHUNK:
                self._chunks.pop(index, None)
            elif index in self._chunks:
                self._chunks[index][within : within + n] = b"\xff" * n
            done += n

    def is_erased(self, address: int, length: int) -> bool:
        return self.read(address, length) == b"\xff" * length
