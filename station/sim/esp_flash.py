"""A SPI NOR flash chip: erased bytes read 0xFF, programming only clears bits, erase works on 4 KiB sectors.

Erase and program costs come from the Winbond W25Q32JV datasheet (typical values) and are charged
to the simulator's timing model.
"""

from __future__ import annotations

import hashlib
import threading

from station.sim.timing import FlashSpec, TimingModel

SECTOR_SIZE = 0x1000
PAGE_SIZE = 256

# W25Q32JV: tSE 45 ms per 4 KiB sector, tPP 0.4 ms per 256-byte page, tCE 10 s for the chip.
W25Q32_SPEC = FlashSpec(sector_erase=0.045, program_per_byte=0.0004 / PAGE_SIZE)
W25Q32_CHIP_ERASE = 10.0
# Reading for MD5 at 40 MHz quad I/O is ~20 MB/s; the ROM's MD5 loop is slower, ~5 MB/s.
MD5_BYTES_PER_SECOND = 5_000_000


class FlashRangeError(ValueError):
    """An access beyond the end of the flash chip."""


class NorFlash:
    """The flash contents of one simulated chip; safe to use from several threads."""

    def __init__(
        self,
        size: int = 4 * 1024 * 1024,
        *,
        timing: TimingModel | None = None,
        spec: FlashSpec = W25Q32_SPEC,
        chip_erase_seconds: float = W25Q32_CHIP_ERASE,
    ) -> None:
        if size <= 0 or size % SECTOR_SIZE:
            raise ValueError(f"flash size {size} is not a positive multiple of {SECTOR_SIZE}")
        self.size = size
        self._data = bytearray(b"\xff" * size)
        self._timing = timing if timing is not None else TimingModel(enabled=False)
        self._spec = spec
        self._chip_erase_seconds = chip_erase_seconds
        self._lock = threading.Lock()

    @property
    def capacity_id(self) -> int:
        """The JEDEC capacity byte: log2 of the size in bytes (0x16 for 4 MiB)."""
        return self.size.bit_length() - 1

    def _check(self, address: int, length: int) -> None:
        if address < 0 or length < 0 or address + length > self.size:
            raise FlashRangeError(f"flash access {address:#x}+{length:#x} is beyond the {self.size:#x}-byte chip")

    def erase(self, address: int, length: int) -> int:
        """Erase every sector touched by ``[address, address + length)``; returns how many."""
        if length == 0:
            return 0
        self._check(address, length)
        first = address // SECTOR_SIZE
        last = (address + length - 1) // SECTOR_SIZE
        with self._lock:
            self._data[first * SECTOR_SIZE : (last + 1) * SECTOR_SIZE] = b"\xff" * ((last + 1 - first) * SECTOR_SIZE)
        count = last + 1 - first
        self._timing.spend(self._spec.erase_cost(count), "erase")
        return count

    def erase_sector(self, index: int) -> None:
        self.erase(index * SECTOR_SIZE, SECTOR_SIZE)

    def erase_all(self) -> None:
        with self._lock:
            self._data[:] = b"\xff" * self.size
        self._timing.spend(self._chip_erase_seconds, "erase")

    def program(self, address: int, data: bytes) -> None:
        """Program ``data``: each bit can only go from 1 to 0, as on NOR flash."""
        self._check(address, len(data))
        with self._lock:
            end = address + len(data)
            old = int.from_bytes(self._data[address:end], "little")
            new = old & int.from_bytes(data, "little")
            self._data[address:end] = new.to_bytes(len(data), "little")
        self._timing.spend(self._spec.program_cost(len(data)), "program")

    def read(self, address: int, length: int) -> bytes:
        self._check(address, length)
        with self._lock:
            return bytes(self._data[address : address + length])

    def md5(self, address: int, length: int) -> bytes:
        data = self.read(address, length)
        self._timing.spend(length / MD5_BYTES_PER_SECOND, "md5")
        return hashlib.md5(data).digest()

    def load(self, address: int, data: bytes) -> None:
        """Set bytes directly, bypassing NOR rules: for tests and fixtures that plant content."""
        self._check(address, len(data))
        with self._lock:
            self._data[address : address + len(data)] = data
