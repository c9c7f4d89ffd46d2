"""A SPI NOR flash chip: erased bytes read 0xFF, programming only clears bits, erase works on 4 KiB
sectors or 64 KiB blocks.

Erase and program costs are the Winbond W25Q32JV datasheet's (the 4 MB part on ESP32-WROOM-32
modules; rev. H, "AC Electrical Characteristics"), typical and maximum. The simulator charges the
typical ones unless told otherwise; the bound (esp_loader.lower_bound) is taken at typical too.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass

from station.sim.timing import TimingModel

SECTOR_SIZE = 0x1000
BLOCK_SIZE = 0x10000
PAGE_SIZE = 256


@dataclass(frozen=True)
class NorTimes:
    """A NOR part's erase and program times in seconds."""

    sector_erase: float  # 4 KiB (tSE)
    block_erase: float  # 64 KiB (tBE2)
    page_program: float  # 256 bytes (tPP)
    chip_erase: float  # whole chip (tCE)

    def program_cost(self, nbytes: int) -> float:
        return -(-nbytes // PAGE_SIZE) * self.page_program


# W25Q32JV: tSE 45 / 400 ms, tBE2 150 / 2000 ms, tPP 0.4 / 3 ms, tCE 10 / 50 s (typical / maximum).
W25Q32JV_TYPICAL = NorTimes(sector_erase=0.045, block_erase=0.150, page_program=0.0004, chip_erase=10.0)
W25Q32JV_MAXIMUM = NorTimes(sector_erase=0.400, block_erase=2.000, page_program=0.003, chip_erase=50.0)
# The ROM's and the stub's SPI_FLASH_MD5 read the flash and hash it on the chip: about 5 MB/s
# (0.2 s per MiB, what esptool's "Hash of data verified" takes after a 1 MiB write on an ESP32).
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
        times: NorTimes = W25Q32JV_TYPICAL,
    ) -> None:
        if size <= 0 or size % SECTOR_SIZE:
            raise ValueError(f"flash size {size} is not a positive multiple of {SECTOR_SIZE}")
        self.size = size
        self._data = bytearray(b"\xff" * size)
        self._timing = timing if timing is not None else TimingModel(enabled=False)
        self.times = times
        self._lock = threading.Lock()

    def _charge(self, seconds: float, what: str, background: bool) -> None:
        if background:
            self._timing.background(seconds, what)
        else:
            self._timing.spend(seconds, what)

    @property
    def capacity_id(self) -> int:
        """The JEDEC capacity byte: log2 of the size in bytes (0x16 for 4 MiB)."""
        return self.size.bit_length() - 1

    def _check(self, address: int, length: int) -> None:
        if address < 0 or length < 0 or address + length > self.size:
            raise FlashRangeError(f"flash access {address:#x}+{length:#x} is beyond the {self.size:#x}-byte chip")

    def erase(self, address: int, length: int, *, background: bool = False) -> int:
        """Erase every sector touched by ``[address, address + length)`` the way the ROM's
        esp_rom_spiflash_erase_area does (see ``erase_cost``); returns how many sectors."""
        if length == 0:
            return 0
        self._check(address, length)
        first = address // SECTOR_SIZE
        last = (address + length - 1) // SECTOR_SIZE
        with self._lock:
            self._data[first * SECTOR_SIZE : (last + 1) * SECTOR_SIZE] = b"\xff" * ((last + 1 - first) * SECTOR_SIZE)
        self._charge(erase_cost(first, last + 1 - first, self.times), "erase", background)
        return last + 1 - first

    def erase_block(self, index: int, *, background: bool = False) -> None:
        """One 64 KiB block erase (tBE2)."""
        self._check(index * BLOCK_SIZE, BLOCK_SIZE)
        with self._lock:
            self._data[index * BLOCK_SIZE : (index + 1) * BLOCK_SIZE] = b"\xff" * BLOCK_SIZE
        self._charge(self.times.block_erase, "erase", background)

    def erase_sector(self, index: int, *, background: bool = False) -> None:
        """One 4 KiB sector erase (tSE)."""
        self._check(index * SECTOR_SIZE, SECTOR_SIZE)
        with self._lock:
            self._data[index * SECTOR_SIZE : (index + 1) * SECTOR_SIZE] = b"\xff" * SECTOR_SIZE
        self._charge(self.times.sector_erase, "erase", background)

    def erase_all(self) -> None:
        with self._lock:
            self._data[:] = b"\xff" * self.size
        self._timing.spend(self.times.chip_erase, "erase")

    def program(self, address: int, data: bytes, *, background: bool = False) -> None:
        """Program ``data``: each bit can only go from 1 to 0, as on NOR flash."""
        self._check(address, len(data))
        with self._lock:
            end = address + len(data)
            old = int.from_bytes(self._data[address:end], "little")
            new = old & int.from_bytes(data, "little")
            self._data[address:end] = new.to_bytes(len(data), "little")
        self._charge(self.times.program_cost(len(data)), "program", background)

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


def erase_cost(first_sector: int, sectors: int, times: NorTimes) -> float:
    """The ROM's erase of ``sectors`` from ``first_sector`` (esp_rom_spiflash_erase_area, ESP-IDF
    components/esp_rom/patches/esp_rom_spiflash.c): a "head" of 4 KiB sector erases up to the next
    64 KiB boundary, a whole block's worth when the start is already aligned (16 - first % 16, the
    "BUG of 6.0 erase" it keeps), then 64 KiB block erases while a block is left, then sectors."""
    per_block = BLOCK_SIZE // SECTOR_SIZE
    head = min(per_block - first_sector % per_block, sectors)
    left = sectors - head
    blocks, tail = divmod(left, per_block)
    return (head + tail) * times.sector_erase + blocks * times.block_erase
