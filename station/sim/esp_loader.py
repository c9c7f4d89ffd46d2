"""A simulated ESP32 / ESP32-S3 / ESP32-C3 in UART download mode, served where esptool can reach it.

``SimulatedEsp`` holds the chip (flash, eFuse MAC) and serves its ROM loader and flasher stub on a
TCP port (pyserial ``socket://`` URL) or a pseudo-terminal. Over TCP each new connection is a fresh
boot into the ROM loader (the way esptool's reconnect treats a re-plugged board); the flash persists.
A pty has no reset line, so its boot lasts until ``reset()``.
"""

from __future__ import annotations

import contextlib
import os
import random
import select
import socket
import threading
import tty
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType

from station.sim.esp_chips import ChipProfile, chip_profile, parse_mac, random_mac
from station.sim.esp_flash import (
    BLOCK_SIZE,
    MD5_BYTES_PER_SECOND,
    SECTOR_SIZE,
    W25Q32JV_TYPICAL,
    NorFlash,
    NorTimes,
    erase_cost,
)
from station.sim.esp_session import (
    COMMAND_LATENCY,
    DATA_HEADER,
    REQUEST_HEADER,
    ROM_BAUD,
    EspChip,
    LoaderSession,
    UnsupportedReply,
)
from station.sim.faults import FaultPlan
from station.sim.timing import TimingModel

_POLL_SECONDS = 0.1
_RECV_BYTES = 65536
# What esptool 5.6 uploads as the ESP32 flasher stub (text + data), for the lower bound.
STUB_UPLOAD_BYTES = 6456 + 212
ROM_BLOCK = 0x400
STUB_BLOCK = 0x4000


class SimulatedEsp:
    """One simulated ESP chip. Start it with ``serve_tcp`` or ``serve_pty``; ``stop`` ends it."""

    def __init__(
        self,
        chip: str = "esp32",
        mac: str | None = None,
        *,
        timing: TimingModel | None = None,
        faults: FaultPlan | None = None,
        flash_size: int = 4 * 1024 * 1024,
        unsupported_reply: UnsupportedReply | str = UnsupportedReply.ROM,
        rng: random.Random | None = None,
        secure_download: bool = False,
        flash_times: NorTimes = W25Q32JV_TYPICAL,
    ) -> None:
        """``secure_download``: the chip's eFuses enable Secure Download Mode (ESP32-S3/C3 here): the
        ROM writes flash but refuses register reads, MD5, flash reads and the stub upload."""
        self.profile: ChipProfile = chip_profile(chip)
        mac_bytes = parse_mac(mac) if mac is not None else random_mac(self.profile, rng or random.Random())
        # Timed like the hardware unless told otherwise; unit tests pass an untimed model.
        self.timing = timing if timing is not None else TimingModel()
        self.faults = faults if faults is not None else FaultPlan()
        self.unsupported_reply = UnsupportedReply(unsupported_reply)
        self.flash = NorFlash(flash_size, timing=self.timing, times=flash_times)
        self.chip = EspChip(self.profile, mac_bytes, self.flash, secure_download=secure_download)
        self._lock = threading.Lock()
        self._life = threading.Lock()  # serving and stopping, one at a time (a re-plug races an unplug)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._listener: socket.socket | None = None
        self._conn: socket.socket | None = None
        self._pty: tuple[int, int] | None = None
        self._session: LoaderSession | None = None
        self.url: str | None = None

    # ---- what the chip is ---------------------------------------------------------------------

    @property
    def chip_name(self) -> str:
        return self.profile.name

    @property
    def mac(self) -> str:
        return ":".join(f"{b:02x}" for b in self.chip.mac)

    @property
    def device_id(self) -> str:
        """The MAC as 12 lower-case hex digits, as ``EspDevice.identify`` reports it."""
        return self.chip.mac.hex()

    @property
    def commands(self) -> Counter[str]:
        """How many of each loader command the chip has received, by name (``FLASH_DEFL_DATA`` ...)."""
        return self.chip.commands

    @property
    def app_started(self) -> int:
        return self.chip.app_started

    def read_flash(self, address: int = 0, size: int | None = None) -> bytes:
        """The flash contents, as a logic analyser on the SPI bus would read them."""
        return self.flash.read(address, self.flash.size - address if size is None else size)

    def _new_session(self, send: Callable[[bytes], None] | None = None) -> LoaderSession:
        return LoaderSession(
            self.chip, faults=self.faults, timing=self.timing, unsupported=self.unsupported_reply, send=send
        )

    def reset(self) -> None:
        """Press EN with IO0 held low: the chip reboots into the ROM loader (used by the pty)."""
        with self._lock:
            pty = self._pty
            self._session = self._new_session(None if pty is None else _writer(pty[0]))

    def _power_on(self) -> None:
        """Serving again after ``stop`` is plugging the board back in: same chip, same flash."""
        if self._listener is not None or self._pty is not None:
            raise RuntimeError("this simulated ESP is already being served")
        for thread in self._threads:
            thread.join(timeout=2)
        self._threads = []
        self._stop.clear()

    # ---- TCP ----------------------------------------------------------------------------------

    def serve_tcp(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on ``host:port`` (0 = any free port); returns the ``socket://`` URL for pyserial."""
        with self._life:
            self._power_on()
            listener = socket.create_server((host, port))
            listener.settimeout(_POLL_SECONDS)
            self._listener = listener
            bound_host, bound_port = listener.getsockname()[:2]
            self.url = f"socket://{bound_host}:{bound_port}"
            self._spawn(self._accept_loop, "accept")
            return self.url

    def _spawn(self, target: object, what: str) -> None:
        thread = threading.Thread(
            target=target,  # type: ignore[arg-type]
            name=f"sim-{self.profile.key}-{self.device_id}-{what}",
            daemon=True,
        )
        self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        listener = self._listener
        assert listener is not None
        while not self._stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                # One UART: a new connection replaces the old one, as re-opening a port does.
                if self._conn is not None:
                    with contextlib.suppress(OSError):
                        self._conn.close()
                self._conn = conn
            self._spawn(lambda c=conn: self._serve_connection(c), "conn")

    def _serve_connection(self, conn: socket.socket) -> None:
        session = self._new_session(conn.sendall)
        conn.settimeout(_POLL_SECONDS)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while not self._stop.is_set():
                try:
                    data = conn.recv(_RECV_BYTES)
                except TimeoutError:
                    continue
                if not data:
                    return
                out = session.receive(data)
                if out.data:
                    conn.sendall(bytes(out.data))
                if out.close:
                    return
        except OSError:
            return
        finally:
            with contextlib.suppress(OSError):
                conn.close()
            with self._lock:
                if self._conn is conn:
                    self._conn = None

    # ---- pty ----------------------------------------------------------------------------------

    def serve_pty(self) -> str:
        """Create a pseudo-terminal and serve on it; returns the ``/dev/pts/N`` path to open."""
        with self._life:
            self._power_on()
            master, slave = os.openpty()
            tty.setraw(slave)
            # Holding the slave open keeps the master readable between clients instead of failing EIO.
            self._pty = (master, slave)
            self._session = self._new_session(_writer(master))
            self.url = os.ttyname(slave)
            self._spawn(self._pty_loop, "pty")
            return self.url

    def _pty_loop(self) -> None:
        assert self._pty is not None
        master = self._pty[0]
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([master], [], [], _POLL_SECONDS)
                if not ready:
                    continue
                data = os.read(master, _RECV_BYTES)
            except OSError:
                return
            with self._lock:
                session = self._session
            assert session is not None
            try:
                out = session.receive(data)
                if out.data:
                    _writer(master)(bytes(out.data))
            except OSError:
                return
            if out.close:
                # The device vanished: the pty goes away for good, as a USB adapter would.
                self._close_pty()
                return

    def _close_pty(self) -> None:
        with self._lock:
            fds, self._pty = self._pty, None
        if fds is not None:
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)

    # ---- life ---------------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop serving and wait for the serving threads; safe to call twice."""
        with self._life:
            self._stop_now()

    def _stop_now(self) -> None:
        self._stop.set()
        with self._lock:
            listener, self._listener = self._listener, None
            conn, self._conn = self._conn, None
        for sock in (listener, conn):
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.close()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout=2)
        self._close_pty()

    def __enter__(self) -> SimulatedEsp:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ---- timing -------------------------------------------------------------------------------

    def lower_bound(
        self,
        images: Sequence[tuple[int, bytes]],
        *,
        baud: int = 460800,
        stub: bool = True,
        compress: bool = True,
    ) -> float:
        """Seconds this chip's timing model needs at least to write and MD5-check ``images``."""
        return lower_bound(images, baud=baud, stub=stub, compress=compress, times=self.flash.times)

    def bound_parts(
        self, images: Sequence[tuple[int, bytes]], *, baud: int = 460800, stub: bool = True, compress: bool = True
    ) -> EspBound:
        """``lower_bound`` in its parts: wire, device work, fixed waits."""
        return bound_parts(images, baud=baud, stub=stub, compress=compress, times=self.flash.times)


def _writer(fd: int) -> Callable[[bytes], None]:
    """Write all of it to ``fd`` (a pty master may take less than asked)."""

    def write(data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]

    return write


def _wire_bytes(payload: int) -> int:
    """SLIP frame bytes for a request of ``payload`` data bytes, escapes ignored (a lower bound)."""
    return payload + REQUEST_HEADER.size + 2


# Reply frames: header (8) + status (stub 2, ESP32-family ROM 4) + the two delimiters.
_STUB_REPLY = 8 + 2 + 2
_ROM_REPLY = 8 + 4 + 2


@dataclass(frozen=True)
class EspBound:
    """The least time the timing model allows for a write + MD5 job, in its parts.

    ``wire``: request and reply bytes at the line rate (the stub upload at the ROM's 115200);
    ``device``: chip work the host has to wait for (ROM erase and program, the stub's erase/program
    not hidden behind the next block, the MD5); ``fixed``: one command turnaround per request;
    ``overlapped``: stub work done while the next block was on the wire (not in the total).
    """

    wire: float
    device: float
    fixed: float
    overlapped: float

    @property
    def total(self) -> float:
        return self.wire + self.device + self.fixed

    def parts(self) -> str:
        return (
            f"wire {self.wire:.3f} s + device {self.device:.3f} s + fixed {self.fixed:.3f} s"
            f" (overlapped {self.overlapped:.3f} s)"
        )


def lower_bound(
    images: Sequence[tuple[int, bytes]],
    *,
    baud: int = 460800,
    stub: bool = True,
    compress: bool = True,
    times: NorTimes = W25Q32JV_TYPICAL,
    latency: float = COMMAND_LATENCY,
) -> float:
    """``bound_parts(...).total``."""
    return bound_parts(images, baud=baud, stub=stub, compress=compress, times=times, latency=latency).total


def bound_parts(
    images: Sequence[tuple[int, bytes]],
    *,
    baud: int = 460800,
    stub: bool = True,
    compress: bool = True,
    times: NorTimes = W25Q32JV_TYPICAL,
    latency: float = COMMAND_LATENCY,
) -> EspBound:
    """The least time the ESP timing model allows for writing and MD5-checking ``images``, as esptool
    sends them (zlib level 9 in 16 KiB slices through the stub; 1 KiB plain blocks to the ROM).

    The stub's pipeline, as in its C source (esptool-legacy-flasher-stub, stub_flasher.c and
    stub_write_flash.c): each block is ACKed as soon as it is received and checked, then inflated,
    erased (64 KiB block erases where aligned, else 4 KiB sectors) and programmed while the next
    block is on the wire; the next command is taken only when that work is done, and
    FLASH_DEFL_END is answered after the last block is written. The ROM erases the whole region at
    FLASH_BEGIN and programs each block before answering. Sync, register reads and the SPI flash
    probe (about 60 short commands at 115200) are not counted.
    """
    wire = device = fixed = stub_work = stub_waited = 0.0
    t = 0.0  # the job's timeline
    busy = 0.0  # when the stub's background work ends

    def request(payload: int, rate: float) -> None:
        nonlocal wire, fixed, t
        cost = _wire_bytes(payload) * 10 / rate
        wire += cost
        fixed += latency
        t += cost + latency

    def wait_for_stub() -> None:
        nonlocal device, stub_waited, t
        if busy > t:
            device += busy - t
            stub_waited += busy - t
            t = busy

    def reply(nbytes: int, rate: float) -> None:
        nonlocal wire, t
        cost = nbytes * 10 / rate
        wire += cost
        t += cost

    def work(seconds: float) -> None:
        nonlocal device, t
        device += seconds
        t += seconds

    if stub:
        blocks = -(-STUB_UPLOAD_BYTES // 0x1800)
        for _ in range(2 + 1):  # MEM_BEGIN x2 + MEM_END
            request(16, ROM_BAUD)
            reply(_ROM_REPLY, ROM_BAUD)
        for _ in range(blocks):
            request(DATA_HEADER.size, ROM_BAUD)
            reply(_ROM_REPLY, ROM_BAUD)
        wire += STUB_UPLOAD_BYTES * 10 / ROM_BAUD
        t += STUB_UPLOAD_BYTES * 10 / ROM_BAUD
    per_block = BLOCK_SIZE // SECTOR_SIZE
    answer = _STUB_REPLY if stub else _ROM_REPLY
    for address, data in images:
        if not data:
            continue
        size = len(data) + (-len(data)) % 4
        if not stub:
            address, size = address - address % SECTOR_SIZE, size + address % SECTOR_SIZE
        request(20 if stub else 16, baud)  # FLASH(_DEFL)_BEGIN
        if not stub:
            first = address // SECTOR_SIZE
            work(erase_cost(first, -(-size // SECTOR_SIZE), times))
        reply(answer, baud)
        block = STUB_BLOCK if stub else ROM_BLOCK
        sent = zlib.compress(data, 9) if compress else data
        slices = [sent[i : i + block] for i in range(0, len(sent), block)]
        inflater = zlib.decompressobj() if compress else None
        erased_to = address - address % SECTOR_SIZE
        erase_left = -(-(address % SECTOR_SIZE + size) // SECTOR_SIZE)
        written = 0
        for piece in slices:
            request(DATA_HEADER.size + (len(piece) if compress else block), baud)
            if not stub:
                work(times.program_cost(block))
                reply(answer, baud)
                continue
            wait_for_stub()
            out = len(inflater.decompress(piece)) if inflater is not None else len(piece)
            end = address + written + out
            cost = 0.0
            while erased_to < end:
                sector = erased_to // SECTOR_SIZE
                if erase_left >= per_block and sector % per_block == 0:
                    cost, step = cost + times.block_erase, per_block
                else:
                    cost, step = cost + times.sector_erase, 1
                erased_to += step * SECTOR_SIZE
                erase_left = max(0, erase_left - step)
            cost += times.program_cost(out)
            written += out
            busy = max(busy, t) + cost
            stub_work += cost
            reply(answer, baud)
        if stub:  # FLASH_DEFL_END / FLASH_END: answered once the last block is written
            request(4, baud)
            wait_for_stub()
            reply(answer, baud)
        request(16, baud)  # SPI_FLASH_MD5
        work(size / MD5_BYTES_PER_SECOND)
        reply(answer + (16 if stub else 32), baud)
    return EspBound(wire=wire, device=device, fixed=fixed, overlapped=stub_work - stub_waited)
