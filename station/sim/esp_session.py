"""The ESP ROM download loader and flasher stub as a state machine: request frames in, reply bytes out.

No I/O here (transports live in ``esp_loader``): ``LoaderSession.receive`` takes what arrived on
the UART and returns what the chip sends back (or hands each frame to the transport's ``send`` as
the modelled UART gets it out), and whether it drops the link. One session is one
boot of the chip; the flash and eFuses (``EspChip``) outlive it. Byte layouts and behaviour follow
esp-serial-protocol.md; fault kinds honoured: disconnect, stall, corrupt-reply, error-status and
refuse-block, each counted in flash data blocks (the ``seq`` of FLASH_DATA / FLASH_DEFL_DATA) and,
once struck, armed for the rest of that boot. slow-poll has no meaning for a UART loader and is ignored.
"""

from __future__ import annotations

import struct
import threading
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum, IntEnum

from station.sim.esp_chips import CHIP_DETECT_MAGIC_REG, XTAL_HZ, ChipProfile, mac_registers
from station.sim.esp_flash import BLOCK_SIZE, SECTOR_SIZE, FlashRangeError, NorFlash
from station.sim.esp_slip import SlipDecoder, slip_encode
from station.sim.faults import FaultKind, FaultPlan
from station.sim.timing import TimingModel

REQUEST_HEADER = struct.Struct("<BBHI")  # direction 0, opcode, data size, checksum
RESPONSE_HEADER = struct.Struct("<BBHI")  # direction 1, opcode, data size, value
DATA_HEADER = struct.Struct("<IIII")  # *_DATA: block length, sequence number, 0, 0
BEGIN_PARAMS = struct.Struct("<IIII")  # FLASH/MEM/DEFL_BEGIN: size, blocks, block size, offset
WORD = struct.Struct("<I")
TWO_WORDS = struct.Struct("<II")
REG_WRITE = struct.Struct("<IIII")  # WRITE_REG group: address, value, mask, delay in µs
MD5_REQUEST = struct.Struct("<IIII")  # address, size, 0, 0
READ_FLASH_REQUEST = struct.Struct("<IIII")  # offset, length, packet size, packets in flight
SPI_PARAMS = struct.Struct("<IIIIII")
SECURITY_INFO = struct.Struct("<IB7BII")  # flags, crypt count, 7 key purposes, chip id, api version

SYNC_PAYLOAD = b"\x07\x07\x12\x20" + b"\x55" * 32
SYNC_REPLIES = 8
ROM_SYNC_VALUE = 0x20120707
CHECKSUM_SEED = 0xEF
ROM_BAUD = 115200
STUB_GREETING = b"OHAI"
READ_SLOW_BLOCK = 64
MAX_RAM_UPLOAD = 512 * 1024
MAX_STUB_BLOCK = 0x4000
# A USB-UART bridge's turnaround per request (USB frame scheduling dominates; ~1 ms).
COMMAND_LATENCY = 0.001
SPI_CMD_USR = 1 << 18
SPI_USR_ADDR = 1 << 30


class Op(IntEnum):
    FLASH_BEGIN = 0x02
    FLASH_DATA = 0x03
    FLASH_END = 0x04
    MEM_BEGIN = 0x05
    MEM_END = 0x06
    MEM_DATA = 0x07
    SYNC = 0x08
    WRITE_REG = 0x09
    READ_REG = 0x0A
    SPI_SET_PARAMS = 0x0B
    SPI_ATTACH = 0x0D
    READ_FLASH_SLOW = 0x0E
    CHANGE_BAUDRATE = 0x0F
    FLASH_DEFL_BEGIN = 0x10
    FLASH_DEFL_DATA = 0x11
    FLASH_DEFL_END = 0x12
    SPI_FLASH_MD5 = 0x13
    GET_SECURITY_INFO = 0x14
    ERASE_FLASH = 0xD0
    ERASE_REGION = 0xD1
    READ_FLASH = 0xD2
    RUN_USER_CODE = 0xD3


ROM_OPS = frozenset(Op) - {Op.ERASE_FLASH, Op.ERASE_REGION, Op.READ_FLASH, Op.RUN_USER_CODE}
STUB_OPS = frozenset(Op) - {Op.READ_FLASH_SLOW}
# Secure Download Mode (eFuse ENABLE_SECURITY_DOWNLOAD): the ROM takes only the commands that write
# flash plainly, and refuses every read (registers, flash, MD5) and every RAM download (no stub).
# esptool's "Secure Download Mode" docs list these; esptool then skips its MD5 check and the stub.
SDM_OPS = frozenset(
    {
        Op.SYNC,
        Op.FLASH_BEGIN,
        Op.FLASH_DATA,
        Op.FLASH_END,
        Op.FLASH_DEFL_BEGIN,
        Op.FLASH_DEFL_DATA,
        Op.FLASH_DEFL_END,
        Op.SPI_ATTACH,
        Op.SPI_SET_PARAMS,
        Op.CHANGE_BAUDRATE,
        Op.GET_SECURITY_INFO,
    }
)
# GET_SECURITY_INFO flag bits (esp-serial-protocol.md §5).
SECURITY_FLAG_SECURE_DOWNLOAD = 1 << 2


class Failure(Enum):
    """Why a request is refused, with the ROM's and the stub's code for it."""

    INVALID_MESSAGE = (0x05, 0xC0)
    BAD_PARAMETER = (0x01, 0xC0)
    CHECKSUM = (0x07, 0xC1)
    BLOCK_SIZE = (0x05, 0xC2)
    FLASH_WRITE = (0x08, 0xC4)
    FLASH_READ = (0x09, 0xC4)
    NOT_IN_FLASH_MODE = (0x05, 0xC6)
    INFLATE = (0x0B, 0xC7)
    NOT_ENOUGH_DATA = (0x0D, 0xC8)
    TOO_MUCH_DATA = (0x0C, 0xC9)
    READ_LENGTH = (0x0A, 0xC0)
    SEQUENCE = (0x05, 0xC0)  # a block other than the next one expected

    def code(self, stub: bool) -> int:
        return self.value[1] if stub else self.value[0]


ROM_INVALID_MESSAGE = 0x05
STUB_INVALID_COMMAND = 0xC3


class LoaderMode(Enum):
    ROM = "rom"
    STUB = "stub"
    APP = "app"  # left the loader: the application runs and the loader answers nothing


class UnsupportedReply(Enum):
    """How the ROM refuses a command it does not know (esp-serial-protocol.md §5)."""

    ROM = "rom"  # like hardware: 8 error packets under another opcode (esptool drains 0.2 s)
    ECHO = "echo"  # one error packet echoing the opcode: same outcome in esptool, no drain


class _Refused(Exception):
    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.name)
        self.failure = failure


def checksum(data: bytes) -> int:
    state = CHECKSUM_SEED
    for byte in data:
        state ^= byte
    return state


class EspChip:
    """The hardware that outlives a boot: flash, eFuses and registers, and a count of commands seen."""

    def __init__(self, profile: ChipProfile, mac: bytes, flash: NorFlash, *, secure_download: bool = False) -> None:
        if secure_download and profile.chip_id is None:
            # esptool learns SDM from GET_SECURITY_INFO, which this chip's ROM does not have.
            raise ValueError(f"{profile.name}: Secure Download Mode is simulated for chips with GET_SECURITY_INFO")
        self.profile = profile
        self.mac = mac
        self.flash = flash
        self.secure_download = secure_download
        self._lock = threading.Lock()
        self._regs: dict[int, int] = {}
        self._fixed = dict(profile.fixed_regs)
        self._fixed.update(mac_registers(profile, mac))
        self._fixed[CHIP_DETECT_MAGIC_REG] = profile.magic
        self.commands: Counter[str] = Counter()
        self.boots = 0
        self.app_started = 0  # times the loader was left to run the application

    def count(self, name: str) -> None:
        with self._lock:
            self.commands[name] += 1

    def read_reg(self, address: int, baud: int) -> int:
        if address == self.profile.uart_clkdiv_reg:
            return (XTAL_HZ // baud) & 0xFFFFF
        with self._lock:
            if address in self._regs:
                return self._regs[address]
        return self._fixed.get(address, 0)

    def write_reg(self, address: int, value: int, mask: int) -> None:
        if address in self._fixed:
            return  # eFuse and ROM words are read-only
        with self._lock:
            old = self._regs.get(address, 0)
            self._regs[address] = (old & ~mask & 0xFFFFFFFF) | (value & mask)
            spi = self.profile.spi
            if address == spi.cmd_reg and self._regs[address] & SPI_CMD_USR:
                self._run_spi_command()
                self._regs[address] &= ~SPI_CMD_USR & 0xFFFFFFFF

    def _run_spi_command(self) -> None:
        """Execute the SPI1 "user command" esptool set up, answering in W0 like a W25Q32JV."""
        spi = self.profile.spi
        opcode = self._regs.get(spi.base + spi.usr2, 0) & 0xFF
        usr = self._regs.get(spi.base + spi.usr, 0)
        address = self._regs.get(spi.addr_reg, 0)
        if usr & SPI_USR_ADDR and spi.addr_msb:
            addr_bits = ((self._regs.get(spi.base + spi.usr1, 0) >> 26) & 0x3F) + 1
            address >>= 32 - addr_bits
        w0 = spi.base + spi.w0
        if opcode == 0x9F:  # RDID: manufacturer, memory type, capacity
            self._regs[w0] = 0xEF | (0x40 << 8) | (self.flash.capacity_id << 16)
        elif opcode == 0x5A:  # RDSFDP
            table = _sfdp_table(self.flash.size)
            chunk = table[address : address + 4].ljust(4, b"\xff")
            self._regs[w0] = WORD.unpack(chunk)[0]
        elif opcode in (0x05, 0x35, 0x15):  # RDSR 1-3: idle, nothing protected
            self._regs[w0] = 0
        # Reset (0x66/0x99), write-enable and status writes change nothing we model.


def _sfdp_table(size: int) -> bytes:
    """A JEDEC SFDP header with one basic parameter table, as a Winbond part answers."""
    header = b"SFDP" + bytes([0x06, 0x01, 0x00, 0xFF])
    param_header = bytes([0x00, 0x06, 0x01, 0x10, 0x30, 0x00, 0x00, 0xFF])
    density = WORD.pack(size * 8 - 1)
    basic = bytes([0xE5, 0x20, 0xF1, 0xFF]) + density
    return (header + param_header).ljust(0x30, b"\xff") + basic


@dataclass
class Output:
    """What the chip answers to one ``receive``: bytes for the wire, and whether the link drops."""

    data: bytearray = field(default_factory=bytearray)
    close: bool = False


@dataclass
class _FlashWrite:
    compressed: bool
    offset: int
    size: int  # bytes to erase (plain) or uncompressed bytes expected (compressed)
    blocks: int
    block_size: int
    serial: int  # which write of this session, so a fault armed for one does not hit the next
    next_seq: int = 0
    written: int = 0
    erased_to: int = 0  # stub: erased lazily up to here
    erase_left: int = 0  # stub: sectors of the write's region not erased yet
    inflater: zlib._Decompress | None = None


@dataclass
class _MemLoad:
    address: int
    size: int
    blocks: int
    block_size: int
    data: bytearray = field(default_factory=bytearray)
    next_seq: int = 0


@dataclass
class _ReadStream:
    offset: int
    length: int
    packet: int
    in_flight: int
    sent: int = 0
    acked: int = 0


class LoaderSession:
    """One boot into the UART download loader, until the link drops or the chip resets."""

    def __init__(
        self,
        chip: EspChip,
        *,
        faults: FaultPlan,
        timing: TimingModel,
        unsupported: UnsupportedReply = UnsupportedReply.ROM,
        send: Callable[[bytes], None] | None = None,
    ) -> None:
        """``send``: where a transport wants each frame as soon as the modelled UART has shifted it out;
        without one, frames collect in the ``Output`` that ``receive`` returns."""
        self.chip = chip
        self._send = send
        self.faults = faults
        self.timing = timing
        self.unsupported = unsupported
        self.mode = LoaderMode.ROM
        self.baud = ROM_BAUD
        self.stalled = False
        self._decoder = SlipDecoder()
        self._write: _FlashWrite | None = None
        self._writes = 0
        self._mem: _MemLoad | None = None
        self._ram: list[tuple[int, bytes]] = []
        self._read: _ReadStream | None = None
        self._armed: dict[tuple[int, int], FaultKind] = {}
        self._corrupt_next = False
        self._after: list[Callable[[Output], None]] = []
        chip.boots += 1
        self._handlers: dict[Op, Callable[[bytes, int], bytes | tuple[int, bytes] | None]] = {
            Op.SYNC: self._sync,
            Op.READ_REG: self._read_reg,
            Op.WRITE_REG: self._write_reg,
            Op.SPI_ATTACH: self._spi_attach,
            Op.SPI_SET_PARAMS: self._spi_set_params,
            Op.CHANGE_BAUDRATE: self._change_baud,
            Op.GET_SECURITY_INFO: self._security_info,
            Op.FLASH_BEGIN: self._flash_begin,
            Op.FLASH_DATA: self._flash_data,
            Op.FLASH_END: self._flash_end,
            Op.FLASH_DEFL_BEGIN: self._defl_begin,
            Op.FLASH_DEFL_DATA: self._defl_data,
            Op.FLASH_DEFL_END: self._flash_end,
            Op.SPI_FLASH_MD5: self._md5,
            Op.READ_FLASH_SLOW: self._read_flash_slow,
            Op.READ_FLASH: self._read_flash,
            Op.ERASE_FLASH: self._erase_flash,
            Op.ERASE_REGION: self._erase_region,
            Op.MEM_BEGIN: self._mem_begin,
            Op.MEM_DATA: self._mem_data,
            Op.MEM_END: self._mem_end,
            Op.RUN_USER_CODE: self._run_user_code,
        }

    @property
    def is_stub(self) -> bool:
        return self.mode is LoaderMode.STUB

    # ---- wire ---------------------------------------------------------------------------------

    def _uart(self, nbytes: int) -> None:
        self.timing.spend(nbytes * 10 / self.baud, "uart")

    def receive(self, data: bytes) -> Output:
        out = Output()
        if self._deaf():
            return out
        self._uart(len(data))
        for frame in self._decoder.feed(data):
            self._frame(frame, out)
            if out.close or self._deaf():
                break
        return out

    def _deaf(self) -> bool:
        """Stalled, or running the application: the loader answers nothing."""
        return self.stalled or self.mode is LoaderMode.APP

    def _send_raw(self, out: Output, payload: bytes) -> None:
        encoded = slip_encode(payload)
        if self._corrupt_next:
            # A damaged byte on the line: an escape followed by a byte SLIP does not allow.
            self._corrupt_next = False
            encoded = encoded[:-1] + b"\xdb\x5a\xc0"
        self._uart(len(encoded))
        if self._send is not None:
            # A UART streams: the host sees each frame when it is out, not when the whole answer
            # is (a stub read sends up to 64 frames per request; held back, esptool times out).
            self._send(encoded)
            return
        out.data += encoded

    def _reply(self, out: Output, op: int, *, value: int = 0, payload: bytes = b"", error: int = 0) -> None:
        status = bytes([1 if error else 0, error])
        if not self.is_stub:
            status += b"\x00\x00"  # ESP32-family ROMs send two reserved status bytes more
        body = payload + status
        self._send_raw(out, RESPONSE_HEADER.pack(1, op, len(body), value) + body)

    def _refuse_unknown(self, out: Output, op: int) -> None:
        if self.is_stub:
            self._reply(out, op, error=STUB_INVALID_COMMAND)
        elif self.unsupported is UnsupportedReply.ECHO:
            self._reply(out, op, error=ROM_INVALID_MESSAGE)
        else:
            for _ in range(SYNC_REPLIES):
                self._reply(out, 0, error=ROM_INVALID_MESSAGE)

    def _frame(self, frame: bytes, out: Output) -> None:
        if self._read is not None:
            self._read_ack(frame, out)
            return
        if len(frame) < REQUEST_HEADER.size:
            return
        direction, op, size, chk = REQUEST_HEADER.unpack_from(frame)
        if direction != 0:
            return
        self.timing.spend(COMMAND_LATENCY, "latency")
        # The stub's main loop takes the next command only once the last block is written.
        self.timing.join("flash-wait")
        body = frame[REQUEST_HEADER.size :]
        try:
            known = Op(op)
        except ValueError:
            self.chip.count(f"unknown-{op:#04x}")
            self._refuse_unknown(out, op)
            return
        self.chip.count(known.name)
        allowed = STUB_OPS if self.is_stub else SDM_OPS if self.chip.secure_download else ROM_OPS
        if known not in allowed or (known is Op.GET_SECURITY_INFO and self.chip.profile.chip_id is None):
            self._refuse_unknown(out, op)
            return
        if size != len(body):
            self._reply(out, op, error=Failure.INVALID_MESSAGE.code(self.is_stub))
            return
        try:
            result = self._handlers[known](body, chk)
        except _Refused as refused:
            self._reply(out, op, error=refused.failure.code(self.is_stub))
            return
        if result is _NO_REPLY:
            return
        if result is _DROP:
            out.close = True
            return
        if isinstance(result, tuple):
            value, payload = result
        else:
            value, payload = 0, result or b""
        if known is Op.SYNC:
            for _ in range(SYNC_REPLIES):
                self._reply(out, op, value=value)
        else:
            self._reply(out, op, value=value, payload=payload)
        after, self._after = self._after, []
        for action in after:
            action(out)

    # ---- faults -------------------------------------------------------------------------------

    def _block_fault(self, write: _FlashWrite, seq: int) -> FaultKind | None:
        key = (write.serial, seq)
        if key in self._armed:
            return self._armed[key]
        for kind in (
            FaultKind.DISCONNECT,
            FaultKind.STALL,
            FaultKind.CORRUPT_REPLY,
            FaultKind.ERROR_STATUS,
            FaultKind.REFUSE_BLOCK,
        ):
            if self.faults.take(kind, seq) is not None:
                # Armed for the rest of this boot: retries of the block meet the same fault.
                self._armed[key] = kind
                return kind
        return None

    def _apply_block_fault(self, write: _FlashWrite, seq: int) -> bytes | None:
        """None to go on writing; a sentinel when the fault replaces the answer."""
        kind = self._block_fault(write, seq)
        if kind is FaultKind.DISCONNECT:
            return _DROP
        if kind is FaultKind.STALL:
            self.stalled = True
            return _NO_REPLY
        if kind is FaultKind.ERROR_STATUS:
            raise _Refused(Failure.FLASH_WRITE)
        if kind is FaultKind.REFUSE_BLOCK:
            raise _Refused(Failure.CHECKSUM)
        if kind is FaultKind.CORRUPT_REPLY and self._corrupt_next is False:
            self._corrupt_next = True
            # Only the first answer is damaged; a retried block then meets the sequence check.
            del self._armed[(write.serial, seq)]
        return None

    # ---- commands -----------------------------------------------------------------------------

    def _sync(self, body: bytes, _chk: int) -> tuple[int, bytes] | bytes:
        if body != SYNC_PAYLOAD:
            return _NO_REPLY
        return (0 if self.is_stub else ROM_SYNC_VALUE), b""

    def _read_reg(self, body: bytes, _chk: int) -> tuple[int, bytes]:
        if len(body) != WORD.size:
            raise _Refused(Failure.INVALID_MESSAGE)
        (address,) = WORD.unpack(body)
        return self.chip.read_reg(address, self.baud), b""

    def _write_reg(self, body: bytes, _chk: int) -> bytes:
        if not body or len(body) % REG_WRITE.size:
            raise _Refused(Failure.INVALID_MESSAGE)
        for offset in range(0, len(body), REG_WRITE.size):
            address, value, mask, delay_us = REG_WRITE.unpack_from(body, offset)
            self.chip.write_reg(address, value, mask)
            self.timing.spend(delay_us / 1e6, "latency")
        return b""

    def _spi_attach(self, body: bytes, _chk: int) -> bytes:
        # The ROM takes a "legacy" flag word more than the stub does.
        if len(body) != (4 if self.is_stub else 8):
            raise _Refused(Failure.INVALID_MESSAGE)
        return b""

    def _spi_set_params(self, body: bytes, _chk: int) -> bytes:
        if len(body) != SPI_PARAMS.size:
            raise _Refused(Failure.INVALID_MESSAGE)
        _fl_id, total, _block, sector, page, _mask = SPI_PARAMS.unpack(body)
        if total == 0 or sector != SECTOR_SIZE or page == 0:
            raise _Refused(Failure.BAD_PARAMETER)
        return b""

    def _change_baud(self, body: bytes, _chk: int) -> bytes:
        if len(body) != TWO_WORDS.size:
            raise _Refused(Failure.INVALID_MESSAGE)
        new, _old = TWO_WORDS.unpack(body)
        if not 300 <= new <= 5_000_000:
            raise _Refused(Failure.BAD_PARAMETER)

        def switch(_out: Output) -> None:
            self.baud = new  # the answer still goes out at the old rate

        self._after.append(switch)
        return b""

    def _security_info(self, body: bytes, _chk: int) -> bytes:
        if body:
            raise _Refused(Failure.INVALID_MESSAGE)
        chip_id = self.chip.profile.chip_id or 0
        flags = SECURITY_FLAG_SECURE_DOWNLOAD if self.chip.secure_download else 0
        return SECURITY_INFO.pack(flags, 0, *([0] * 7), chip_id, 0)

    def _begin_params(self, body: bytes) -> tuple[int, int, int, int]:
        words = 5 if self.is_stub else self.chip.profile.rom_begin_words
        if len(body) != 4 * words:
            raise _Refused(Failure.INVALID_MESSAGE)
        size, blocks, block_size, offset = BEGIN_PARAMS.unpack_from(body)
        if words == 5 and WORD.unpack_from(body, 16)[0]:
            raise _Refused(Failure.BAD_PARAMETER)  # encrypted writes: no flash encryption here
        if block_size == 0 or block_size > MAX_STUB_BLOCK or blocks * block_size > 2 * self.chip.flash.size:
            raise _Refused(Failure.BLOCK_SIZE)
        if offset + size > self.chip.flash.size:
            raise _Refused(Failure.BAD_PARAMETER)
        return size, blocks, block_size, offset

    def _open_write(self, compressed: bool, body: bytes) -> _FlashWrite:
        size, blocks, block_size, offset = self._begin_params(body)
        self._writes += 1
        write = _FlashWrite(
            compressed=compressed,
            offset=offset,
            size=size,
            blocks=blocks,
            block_size=block_size,
            serial=self._writes,
            erased_to=offset - offset % SECTOR_SIZE,
            erase_left=-(-(offset % SECTOR_SIZE + size) // SECTOR_SIZE),
            inflater=zlib.decompressobj() if compressed else None,
        )
        if not self.is_stub and size:
            self.chip.flash.erase(offset, size)  # the ROM erases the whole region up front
        self._write = write
        return write

    def _flash_begin(self, body: bytes, _chk: int) -> bytes:
        self._open_write(False, body)
        return b""

    def _defl_begin(self, body: bytes, _chk: int) -> bytes:
        self._open_write(True, body)
        return b""

    def _data_block(self, body: bytes, chk: int, compressed: bool) -> tuple[_FlashWrite, int, bytes] | bytes:
        write = self._write
        if write is None or write.compressed is not compressed:
            raise _Refused(Failure.NOT_IN_FLASH_MODE)
        if len(body) < DATA_HEADER.size:
            raise _Refused(Failure.INVALID_MESSAGE)
        length, seq, _, _ = DATA_HEADER.unpack_from(body)
        block = body[DATA_HEADER.size :]
        if len(block) != length:
            raise _Refused(Failure.INVALID_MESSAGE)
        fault = self._apply_block_fault(write, seq)
        if fault is not None:
            return fault
        if checksum(block) != chk:
            raise _Refused(Failure.CHECKSUM)
        if seq != write.next_seq:
            raise _Refused(Failure.SEQUENCE)
        if seq >= write.blocks:
            raise _Refused(Failure.TOO_MUCH_DATA)
        if length > write.block_size or (not compressed and length != write.block_size):
            raise _Refused(Failure.BLOCK_SIZE)
        return write, seq, block

    def _program(self, write: _FlashWrite, address: int, data: bytes) -> None:
        flash = self.chip.flash
        data = data[: max(0, flash.size - address)]
        if not data:
            return
        if self.is_stub:
            # The stub ACKed this block before writing it (stub_flasher.c: "ACK DATA commands
            # immediately, then process them"); its erase and program run while the next block is on
            # the wire, and the next command waits for them (``join`` in ``_frame``).
            end = address + len(data)
            while write.erased_to < end:
                self._stub_erase_next(write)
        try:
            flash.program(address, data, background=self.is_stub)
        except FlashRangeError:
            raise _Refused(Failure.FLASH_WRITE) from None

    def _stub_erase_next(self, write: _FlashWrite) -> None:
        """stub_write_flash.c start_next_erase: a 64 KiB block erase when the next sector starts a
        block and at least a block of the region is left, else one 4 KiB sector."""
        flash = self.chip.flash
        sector = write.erased_to // SECTOR_SIZE
        per_block = BLOCK_SIZE // SECTOR_SIZE
        if write.erase_left >= per_block and sector % per_block == 0:
            flash.erase_block(sector // per_block, background=True)
            step = per_block
        else:
            flash.erase_sector(sector, background=True)
            step = 1
        write.erased_to += step * SECTOR_SIZE
        write.erase_left = max(0, write.erase_left - step)

    def _flash_data(self, body: bytes, chk: int) -> bytes:
        checked = self._data_block(body, chk, compressed=False)
        if isinstance(checked, bytes):
            return checked
        write, seq, block = checked
        self._program(write, write.offset + seq * write.block_size, block)
        write.next_seq += 1
        write.written += len(block)
        return b""

    def _defl_data(self, body: bytes, chk: int) -> bytes:
        checked = self._data_block(body, chk, compressed=True)
        if isinstance(checked, bytes):
            return checked
        write, _seq, block = checked
        assert write.inflater is not None
        room = write.size - write.written
        try:
            data = write.inflater.decompress(block, room + 1)
        except zlib.error:
            raise _Refused(Failure.INFLATE) from None
        if len(data) > room or write.inflater.unconsumed_tail:
            raise _Refused(Failure.TOO_MUCH_DATA)
        self._program(write, write.offset + write.written, data)
        write.written += len(data)
        write.next_seq += 1
        return b""

    def _flash_end(self, body: bytes, _chk: int) -> bytes:
        if len(body) != WORD.size:
            raise _Refused(Failure.INVALID_MESSAGE)
        (stay,) = WORD.unpack(body)
        write, self._write = self._write, None
        if (
            self.is_stub
            and write is not None
            and write.compressed
            and write.size
            and (write.written != write.size or write.inflater is None or not write.inflater.eof)
        ):
            raise _Refused(Failure.NOT_ENOUGH_DATA)
        if stay and not self.is_stub:
            self._after.append(self._start_app)  # "run user code": the ROM jumps to the app
        elif not stay:
            self._after.append(self._reboot)
        return b""

    def _start_app(self, _out: Output) -> None:
        self.mode = LoaderMode.APP
        self.chip.app_started += 1

    def _reboot(self, _out: Output) -> None:
        # Strapping still selects download mode, so a software reboot lands in the ROM loader.
        self.mode = LoaderMode.ROM
        self.baud = ROM_BAUD
        self._write = None
        self._mem = None
        self._ram.clear()
        self.chip.boots += 1

    def _md5(self, body: bytes, _chk: int) -> bytes:
        if len(body) != MD5_REQUEST.size:
            raise _Refused(Failure.INVALID_MESSAGE)
        address, size, _, _ = MD5_REQUEST.unpack(body)
        try:
            digest = self.chip.flash.md5(address, size)
        except FlashRangeError:
            raise _Refused(Failure.FLASH_READ) from None
        return digest if self.is_stub else digest.hex().encode("ascii")

    def _read_flash_slow(self, body: bytes, _chk: int) -> bytes:
        if len(body) != TWO_WORDS.size:
            raise _Refused(Failure.INVALID_MESSAGE)
        address, length = TWO_WORDS.unpack(body)
        if length > READ_SLOW_BLOCK:
            raise _Refused(Failure.READ_LENGTH)
        try:
            data = self.chip.flash.read(address, length)
        except FlashRangeError:
            raise _Refused(Failure.FLASH_READ) from None
        return data.ljust(READ_SLOW_BLOCK, b"\x00")

    def _read_flash(self, body: bytes, _chk: int) -> bytes:
        if len(body) != READ_FLASH_REQUEST.size:
            raise _Refused(Failure.INVALID_MESSAGE)
        offset, length, packet, in_flight = READ_FLASH_REQUEST.unpack(body)
        if not 0 < packet <= MAX_STUB_BLOCK or in_flight == 0 or offset + length > self.chip.flash.size:
            raise _Refused(Failure.BAD_PARAMETER)
        stream = _ReadStream(offset, length, packet, in_flight)

        def start(out: Output) -> None:
            self._read = stream
            self._pump(out)

        self._after.append(start)
        return b""

    def _pump(self, out: Output) -> None:
        stream = self._read
        assert stream is not None
        while stream.sent < stream.length and (stream.sent - stream.acked) < stream.in_flight * stream.packet:
            size = min(stream.packet, stream.length - stream.sent)
            self._send_raw(out, self.chip.flash.read(stream.offset + stream.sent, size))
            stream.sent += size
        if stream.acked >= stream.length:
            self._read = None
            self._send_raw(out, self.chip.flash.md5(stream.offset, stream.length))

    def _read_ack(self, frame: bytes, out: Output) -> None:
        stream = self._read
        assert stream is not None
        if len(frame) != WORD.size:
            return
        (received,) = WORD.unpack(frame)
        stream.acked = min(max(stream.acked, received), stream.sent)
        self._pump(out)

    def _erase_flash(self, body: bytes, _chk: int) -> bytes:
        if body:
            raise _Refused(Failure.INVALID_MESSAGE)
        self.chip.flash.erase_all()
        return b""

    def _erase_region(self, body: bytes, _chk: int) -> bytes:
        if len(body) != TWO_WORDS.size:
            raise _Refused(Failure.INVALID_MESSAGE)
        offset, size = TWO_WORDS.unpack(body)
        if offset % SECTOR_SIZE or size % SECTOR_SIZE:
            raise _Refused(Failure.BAD_PARAMETER)
        try:
            self.chip.flash.erase(offset, size)
        except FlashRangeError:
            raise _Refused(Failure.BAD_PARAMETER) from None
        return b""

    def _mem_begin(self, body: bytes, _chk: int) -> bytes:
        if len(body) != BEGIN_PARAMS.size:
            raise _Refused(Failure.INVALID_MESSAGE)
        size, blocks, block_size, address = BEGIN_PARAMS.unpack(body)
        if size > MAX_RAM_UPLOAD or block_size == 0 or blocks * block_size < size:
            raise _Refused(Failure.BAD_PARAMETER)
        self._mem = _MemLoad(address, size, blocks, block_size)
        return b""

    def _mem_data(self, body: bytes, chk: int) -> bytes:
        load = self._mem
        if load is None:
            raise _Refused(Failure.NOT_IN_FLASH_MODE)
        if len(body) < DATA_HEADER.size:
            raise _Refused(Failure.INVALID_MESSAGE)
        length, seq, _, _ = DATA_HEADER.unpack_from(body)
        block = body[DATA_HEADER.size :]
        if len(block) != length or length > load.block_size:
            raise _Refused(Failure.INVALID_MESSAGE)
        if checksum(block) != chk:
            raise _Refused(Failure.CHECKSUM)
        if seq != load.next_seq or len(load.data) + length > load.size:
            raise _Refused(Failure.SEQUENCE)
        load.data += block
        load.next_seq += 1
        if len(load.data) == load.size:
            self._ram.append((load.address, bytes(load.data)))
            self._mem = None
        return b""

    def _mem_end(self, body: bytes, _chk: int) -> bytes:
        if len(body) != TWO_WORDS.size:
            raise _Refused(Failure.INVALID_MESSAGE)
        no_entry, entry = TWO_WORDS.unpack(body)
        runs_code = not no_entry and any(start <= entry < start + len(data) for start, data in self._ram)
        if runs_code and not self.is_stub:
            # Only the flasher stub is modelled: uploaded code that gets run is taken to be it.
            self._after.append(self._start_stub)
        return b""

    def _start_stub(self, out: Output) -> None:
        self.mode = LoaderMode.STUB
        self._send_raw(out, STUB_GREETING)

    def _run_user_code(self, body: bytes, _chk: int) -> bytes:
        self._start_app(Output())
        return _NO_REPLY


# Sentinels a handler returns instead of an answer.
_NO_REPLY = b"<no reply>"
_DROP = b"<drop link>"
