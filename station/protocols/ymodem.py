"""YModem batch transfer (CRC-16, 128- and 1024-byte blocks) as explicit state machines.

``YModemSender`` and ``YModemReceiver`` do no I/O: they take the bytes and timeouts their peer
produces and return the bytes to write, like h11. ``send_file`` drives a sender over a
``ByteStream`` with a timeout on every wait. The receiver follows Device OS 5.x
(system_ymodem.cpp): sequence checks only unless ``verify_crc``, ``C`` on every error, CAN CAN
after too many, and the end-of-batch ACK withheld until the image has been validated.
"""

from __future__ import annotations

import binascii
import contextlib
import struct
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import Protocol

from station.errors import DeviceDisconnected, DeviceError, DeviceTimeout, Reason

SOH = 0x01  # 128-byte packet
STX = 0x02  # 1024-byte packet
EOT = 0x04
ACK = 0x06
NAK = 0x15
CAN = 0x18
CRC_REQUEST = 0x43  # "C": the receiver wants CRC mode, or a (re)transmission
SPACE = 0x20  # Device OS acknowledges a lone space and otherwise ignores it
USER_ABORT = (0x41, 0x61)  # "A", "a" typed at the device's console

SHORT_BLOCK = 128
LONG_BLOCK = 1024
PAD = 0x1A  # CPMEOF, the padding the YModem spec names; receivers truncate to the header's size
ABORT_SEQUENCE = bytes((CAN, CAN))

_PACKET_HEAD = struct.Struct(">BBB")  # mark, sequence, 255 - sequence
_PACKET_CRC = struct.Struct(">H")  # CRC-16/XMODEM of the payload, big-endian
_MAX_FILE_NAME = 256


def crc16(data: bytes) -> int:
    """CRC-16/XMODEM (poly 0x1021, init 0), the YModem trailer."""
    return binascii.crc_hqx(data, 0)


def encode_packet(sequence: int, payload: bytes, *, pad: int = PAD) -> bytes:
    """One packet: 128-byte SOH when the payload fits, else 1024-byte STX; padded with ``pad``."""
    if len(payload) > LONG_BLOCK:
        raise ValueError(f"payload of {len(payload)} bytes does not fit a YModem packet")
    size = SHORT_BLOCK if len(payload) <= SHORT_BLOCK else LONG_BLOCK
    body = payload + bytes((pad,)) * (size - len(payload))
    mark = SOH if size == SHORT_BLOCK else STX
    seq = sequence & 0xFF
    return _PACKET_HEAD.pack(mark, seq, 0xFF - seq) + body + _PACKET_CRC.pack(crc16(body))


def header_payload(name: str, size: int) -> bytes:
    """Packet 0 of a file: the name, NUL, the decimal size and a space (Device OS reads up to it)."""
    raw = name.encode("utf-8", "replace")[:_MAX_FILE_NAME]
    if not raw or 0 in raw:
        raise ValueError(f"file name {name!r} cannot be sent in a YModem header")
    payload = raw + b"\0" + f"{size} ".encode("ascii")
    if len(payload) > LONG_BLOCK:
        raise ValueError("YModem header too long")
    return payload.ljust(SHORT_BLOCK if len(payload) <= SHORT_BLOCK else LONG_BLOCK, b"\0")


END_OF_BATCH = bytes(SHORT_BLOCK)  # a header with an empty name ends the batch


@dataclass(frozen=True)
class FileHeader:
    name: str
    size: int


def parse_header(payload: bytes) -> FileHeader | None:
    """The file a header packet announces; None for the end-of-batch header. ValueError if garbled."""
    if not payload or payload[0] == 0:
        return None
    name_raw, nul, rest = payload.partition(b"\0")
    if not nul or len(name_raw) > _MAX_FILE_NAME:
        raise ValueError("header has no NUL-terminated file name")
    digits = rest.split(b" ", 1)[0].split(b"\0", 1)[0]
    if not digits.isdigit():
        raise ValueError(f"header size field {digits[:16]!r} is not a decimal number")
    return FileHeader(name_raw.decode("utf-8", "replace"), int(digits))


class ByteStream(Protocol):
    """The transport both machines' drivers use: a serial port, a pty, a pipe pair."""

    def write(self, data: bytes) -> None:
        """Write all of ``data``; raise DeviceDisconnected if the link is gone."""
        ...

    def read(self, size: int, timeout: float) -> bytes:
        """Up to ``size`` bytes, at least one; b"" when ``timeout`` seconds pass with nothing."""
        ...


# -- errors ---------------------------------------------------------------------------------------


class PacketRefused(DeviceError):
    """The receiver NAKed a packet more times than the sender retries."""

    reason = Reason.REFUSED


class TransferCancelled(DeviceError):
    """The receiver cancelled the transfer (CAN CAN): a write failed or the image was rejected."""

    reason = Reason.DEVICE_STATUS


class UnexpectedReply(DeviceError):
    """The receiver answered a byte the protocol does not allow at that point."""

    reason = Reason.PROTOCOL


# -- sender ---------------------------------------------------------------------------------------


class SenderState(StrEnum):
    AWAIT_START = "await-start"  # waiting for the receiver's first "C"
    AWAIT_HEADER_ACK = "await-header-ack"
    AWAIT_DATA_START = "await-data-start"  # header ACKed, waiting for "C"
    AWAIT_DATA_ACK = "await-data-ack"
    AWAIT_EOT_ACK = "await-eot-ack"
    AWAIT_BATCH_START = "await-batch-start"  # waiting for "C" before the end-of-batch header
    AWAIT_BATCH_ACK = "await-batch-ack"  # the receiver validates before it answers
    DONE = "done"
    FAILED = "failed"


class YModemSender:
    """Sends one file as a YModem batch of one. Feed it what the receiver says; write what it returns.

    Packets are numbered for errors and progress as the transfer goes: 0 = the header, 1..n =
    data, n+1 = EOT, n+2 = the end-of-batch header. ``wait_for_start=False`` sends the header at
    once (Device OS prints a prompt instead of "C"); ``wait_before_batch_end=False`` sends the
    end-of-batch header right after the EOT's ACK (Device OS only says "C" after a 5 s timeout).
    """

    def __init__(
        self,
        name: str,
        data: bytes,
        *,
        block_size: int = LONG_BLOCK,
        max_retries: int = 10,
        wait_for_start: bool = True,
        wait_before_batch_end: bool = True,
        device: str | None = None,
    ) -> None:
        if block_size not in (SHORT_BLOCK, LONG_BLOCK):
            raise ValueError(f"block size must be {SHORT_BLOCK} or {LONG_BLOCK}, not {block_size}")
        self._data = data
        self._header = header_payload(name, len(data))
        self._block = block_size
        self._max_retries = max_retries
        self._wait_for_start = wait_for_start
        self._wait_before_batch_end = wait_before_batch_end
        self._device = device
        self._data_packets = max(1, -(-len(data) // block_size)) if data else 0
        self.state = SenderState.AWAIT_START
        self.packet = 0  # the packet in flight
        self.acknowledged = 0  # data bytes the receiver has ACKed
        self._errors = 0
        self._silences = 0  # waits that timed out since the last new packet went out
        self._can_seen = False
        self._last: bytes = b""

    @property
    def total(self) -> int:
        return len(self._data)

    @property
    def offset(self) -> int:
        """Byte offset in the file of the packet in flight."""
        return min(max(self.packet - 1, 0) * self._block, len(self._data))

    def start(self) -> bytes:
        if self._wait_for_start:
            return b""
        return self._send_header()

    def on_bytes(self, received: bytes) -> bytes:
        out = bytearray()
        for byte in received:
            if self.state in (SenderState.DONE, SenderState.FAILED):
                break
            out += self.on_byte(byte)
        return bytes(out)

    def on_byte(self, byte: int) -> bytes:
        if byte == CAN:
            if self._can_seen:
                self.state = SenderState.FAILED
                raise TransferCancelled(
                    "receiver cancelled the transfer (CAN CAN)",
                    device=self._device,
                    block=self.packet,
                    address=self.offset,
                )
            self._can_seen = True
            return b""
        if self._can_seen:
            self._can_seen = False
            raise self._unexpected(CAN)
        state = self.state
        if state is SenderState.AWAIT_START:
            # Text before the first "C" (a console prompt, line noise) is not ours to judge.
            return self._send_header() if byte == CRC_REQUEST else b""
        if state is SenderState.AWAIT_HEADER_ACK:
            if byte == ACK:
                self.state = SenderState.AWAIT_DATA_START if self._data_packets else SenderState.AWAIT_EOT_ACK
                self._errors = 0
                return b"" if self._data_packets else self._send(bytes((EOT,)))
            return self._retry_or_raise(byte)
        if state is SenderState.AWAIT_DATA_START:
            if byte == CRC_REQUEST:
                return self._send_data(1)
            if byte == NAK:  # the receiver lost the header after all
                return self._retry_or_raise(byte)
            raise self._unexpected(byte)
        if state is SenderState.AWAIT_DATA_ACK:
            if byte == ACK:
                self.acknowledged = min(self.packet * self._block, len(self._data))
                self._errors = 0
                if self.packet < self._data_packets:
                    return self._send_data(self.packet + 1)
                self.packet += 1
                self.state = SenderState.AWAIT_EOT_ACK
                return self._send(bytes((EOT,)))
            return self._retry_or_raise(byte)
        if state is SenderState.AWAIT_EOT_ACK:
            if byte == ACK:
                self._errors = 0
                self.packet += 1
                if self._wait_before_batch_end:
                    self.state = SenderState.AWAIT_BATCH_START
                    return b""
                return self._send_batch_end()
            return self._retry_or_raise(byte)
        if state is SenderState.AWAIT_BATCH_START:
            if byte == CRC_REQUEST:
                return self._send_batch_end()
            raise self._unexpected(byte)
        if state is SenderState.AWAIT_BATCH_ACK:
            if byte == ACK:
                self.state = SenderState.DONE
                return b""
            # "C" again: the receiver lost the header (lrzsz purges its input right after asking).
            return self._retry_or_raise(byte)
        return b""

    def on_timeout(self) -> bytes:
        """Nothing arrived within the wait: retransmit, or give up naming the packet."""
        if self.state in (SenderState.DONE, SenderState.FAILED):
            return b""
        self._errors += 1
        if self._errors > self._max_retries:
            self.state = SenderState.FAILED
            waiting = {
                SenderState.AWAIT_START: "for the receiver to ask for the file",
                SenderState.AWAIT_DATA_START: "for the receiver to ask for data",
                SenderState.AWAIT_BATCH_START: "for the receiver to ask for the next file",
                SenderState.AWAIT_BATCH_ACK: "for the device to validate and accept the image",
            }.get(self.state, "to the packet")
            raise DeviceTimeout(
                f"no answer {waiting} after {self._max_retries + 1} tries",
                device=self._device,
                block=self.packet,
                address=self.offset,
            )
        self._silences += 1
        if self.state in (SenderState.AWAIT_START, SenderState.AWAIT_DATA_START, SenderState.AWAIT_BATCH_START):
            return b""
        return self._last

    def _retry_or_raise(self, byte: int) -> bytes:
        if byte not in (NAK, CRC_REQUEST):
            raise self._unexpected(byte)
        # Device OS answers "C" on any receive error and NAK on a wrong sequence: both mean resend.
        self._errors += 1
        if self._errors > self._max_retries:
            self.state = SenderState.FAILED
            raise PacketRefused(
                f"receiver refused the packet {self._max_retries + 1} times",
                device=self._device,
                block=self.packet,
                address=self.offset,
            )
        return self._last

    def _unexpected(self, byte: int) -> DeviceError:
        doing = self.state_description()
        self.state = SenderState.FAILED
        if self._silences and byte != CAN:
            # Silence, then something that is no YModem answer: the device hung and came back
            # without the transfer (a watchdog reset). The stall is what failed, not the answer.
            return DeviceTimeout(
                f"no answer while {doing}; after {self._silences} wait(s) the device answered {byte:#04x} "
                "instead: it stopped answering and seems to have restarted",
                device=self._device,
                block=self.packet,
                address=self.offset,
            )
        return UnexpectedReply(
            f"receiver answered {byte:#04x} while {doing}",
            device=self._device,
            block=self.packet,
            address=self.offset,
        )

    def state_description(self) -> str:
        return {
            SenderState.AWAIT_HEADER_ACK: "the header awaited ACK",
            SenderState.AWAIT_DATA_START: "waiting for 'C' after the header",
            SenderState.AWAIT_DATA_ACK: "the packet awaited ACK",
            SenderState.AWAIT_EOT_ACK: "EOT awaited ACK",
            SenderState.AWAIT_BATCH_START: "waiting for 'C' after EOT",
            SenderState.AWAIT_BATCH_ACK: "the end-of-batch header awaited ACK",
        }.get(self.state, self.state.value)

    def _send(self, data: bytes) -> bytes:
        self._last = data
        self._silences = 0
        return data

    def _send_header(self) -> bytes:
        self.state = SenderState.AWAIT_HEADER_ACK
        self.packet = 0
        self._errors = 0
        return self._send(encode_packet(0, self._header, pad=0))

    def _send_data(self, packet: int) -> bytes:
        self.state = SenderState.AWAIT_DATA_ACK
        self.packet = packet
        start = (packet - 1) * self._block
        chunk = self._data[start : start + self._block]
        # The last, short piece goes in a 128-byte packet where it fits, as lrzsz's sb does.
        return self._send(encode_packet(packet, chunk))

    def _send_batch_end(self) -> bytes:
        self.state = SenderState.AWAIT_BATCH_ACK
        self._errors = 0
        return self._send(encode_packet(0, END_OF_BATCH, pad=0))

    @property
    def waiting_for_validation(self) -> bool:
        return self.state is SenderState.AWAIT_BATCH_ACK


ProgressFn = Callable[[int, int], None]


def send_file(
    stream: ByteStream,
    name: str,
    data: bytes,
    *,
    block_size: int = LONG_BLOCK,
    timeout: float = 10.0,
    finish_timeout: float = 70.0,
    max_retries: int = 5,
    wait_for_start: bool = True,
    wait_before_batch_end: bool = True,
    progress: ProgressFn | None = None,
    device: str | None = None,
) -> None:
    """Send ``data`` as file ``name``; return when the receiver has accepted the whole batch.

    Every wait is bounded by ``timeout`` (``finish_timeout`` for the final ACK, which a device
    sends only after validating the image); a failed transfer is cancelled on the link (CAN CAN)
    before the error propagates, so the receiver returns to its prompt.
    """
    sender = YModemSender(
        name,
        data,
        block_size=block_size,
        max_retries=max_retries,
        wait_for_start=wait_for_start,
        wait_before_batch_end=wait_before_batch_end,
        device=device,
    )
    try:
        out = sender.start()
        if out:
            stream.write(out)
        reported = -1
        while sender.state is not SenderState.DONE:
            wait = finish_timeout if sender.waiting_for_validation else timeout
            # One byte at a time: replies are one or two bytes, and text after a CAN CAN stays
            # on the link for the caller to read as the device's explanation.
            received = stream.read(1, wait)
            out = sender.on_bytes(received) if received else sender.on_timeout()
            if progress is not None and sender.acknowledged != reported:
                reported = sender.acknowledged
                progress(reported, sender.total)
            if out:
                stream.write(out)
    except TransferCancelled:
        raise  # the receiver ended it already
    except DeviceDisconnected as exc:
        if exc.block is not None:
            raise
        raise DeviceDisconnected(
            f"link lost during the transfer: {exc.message}",
            device=device or exc.device,
            block=sender.packet,
            address=sender.offset,
            hint="re-plug the board; it can be flashed again",
        ) from exc
    except BaseException:
        # Our failure, a bug or Ctrl-C: tell the receiver, so it returns to its prompt now
        # instead of after its own timeouts.
        _cancel(stream)
        raise


def _cancel(stream: ByteStream) -> None:
    with contextlib.suppress(DeviceDisconnected):
        stream.write(ABORT_SEQUENCE)


# -- receiver -------------------------------------------------------------------------------------


class Verdict(Enum):
    """What the receiver's owner decides about a packet or the finished batch."""

    ACCEPT = "accept"  # ACK
    REFUSE = "refuse"  # NAK, and the packet does not count
    FAIL = "fail"  # CAN CAN: the write or the validation failed; the transfer is over
    IGNORE = "ignore"  # say nothing, the packet does not count (the device hung or vanished)


class ReceiverHooks(Protocol):
    """The receiving device: where data goes and whether it is good."""

    def on_header(self, packet: int, header: FileHeader) -> Verdict: ...

    def on_data(self, packet: int, offset: int, payload: bytes) -> Verdict: ...

    def on_end_of_batch(self, packet: int) -> Verdict: ...


class Outcome(StrEnum):
    COMPLETE = "complete"
    SENDER_CANCELLED = "sender-cancelled"
    USER_ABORTED = "user-aborted"
    FAILED = "failed"  # too many errors, a refused header, a failed write or validation


class _RxState(StrEnum):
    IDLE = "idle"  # between packets
    PACKET = "packet"  # collecting a packet's bytes
    CAN_SEEN = "can-seen"
    DONE = "done"


class YModemReceiver:
    """Receives a YModem batch the way Device OS does; the owner writes and validates via hooks.

    ``packet`` numbering matches the sender's: 0 = header, 1..n = data, then EOT, then the
    end-of-batch header. ``on_timeout`` is for the owner to call when ``byte_timeout`` passes
    with nothing received.
    """

    def __init__(
        self,
        hooks: ReceiverHooks,
        *,
        verify_crc: bool = False,
        max_errors: int = 5,
    ) -> None:
        self._hooks = hooks
        self._verify_crc = verify_crc
        self._max_errors = max_errors
        self._state = _RxState.IDLE
        self._buffer = bytearray()
        self._expected_size = 0
        self._received_in_file = 0  # packets received in this file; the next sequence expected
        self._offset = 0
        self._errors = 0
        self.packet = 0
        self.outcome: Outcome | None = None
        self.files: list[FileHeader] = []
        self.message = ""

    @property
    def done(self) -> bool:
        return self._state is _RxState.DONE

    @property
    def mid_packet(self) -> bool:
        return self._state is _RxState.PACKET

    def feed(self, data: bytes) -> bytes:
        out = bytearray()
        i, n = 0, len(data)
        while i < n and self._state is not _RxState.DONE:
            if self._state is _RxState.PACKET:
                # A packet's body is copied as one slice, not byte by byte: 1 KiB packets are the
                # whole of a transfer, and a per-byte loop here was most of the receiver's CPU.
                size = SHORT_BLOCK if self._buffer[0] == SOH else LONG_BLOCK
                whole = _PACKET_HEAD.size + size + _PACKET_CRC.size
                take = data[i : i + whole - len(self._buffer)]
                self._buffer += take
                i += len(take)
                if len(self._buffer) == whole:
                    packet = bytes(self._buffer)
                    self._buffer.clear()
                    self._state = _RxState.IDLE
                    out += self._on_packet(packet, size)
                continue
            out += self._on_byte(data[i])
            i += 1
        return bytes(out)

    def on_timeout(self) -> bytes:
        if self._state is _RxState.DONE:
            return b""
        self._buffer.clear()
        self._state = _RxState.IDLE
        return self._error()

    def abort(self, message: str) -> bytes:
        """End the transfer from the device side (e.g. the owner's user typed 'a')."""
        return self._finish(Outcome.FAILED, message, ABORT_SEQUENCE)

    def _on_byte(self, byte: int) -> bytes:
        if self._state is _RxState.PACKET:
            self._buffer.append(byte)
            size = SHORT_BLOCK if self._buffer[0] == SOH else LONG_BLOCK
            if len(self._buffer) < _PACKET_HEAD.size + size + _PACKET_CRC.size:
                return b""
            packet = bytes(self._buffer)
            self._buffer.clear()
            self._state = _RxState.IDLE
            return self._on_packet(packet, size)
        if self._state is _RxState.CAN_SEEN:
            self._state = _RxState.IDLE
            if byte == CAN:
                return self._finish(Outcome.SENDER_CANCELLED, "Cancelled by the sender.", bytes((ACK,)))
            return self._error()
        if byte in (SOH, STX):
            self._buffer.append(byte)
            self._state = _RxState.PACKET
            return b""
        if byte == EOT:
            self.packet += 1
            self._received_in_file = 0  # a new header (sequence 0) comes next
            return bytes((ACK,))
        if byte == CAN:
            self._state = _RxState.CAN_SEEN
            return b""
        if byte in USER_ABORT:
            return self._finish(Outcome.USER_ABORTED, "Aborted by user.", ABORT_SEQUENCE)
        if byte == SPACE:
            return bytes((ACK,))
        return self._error()

    def _on_packet(self, packet: bytes, size: int) -> bytes:
        _, seq, complement = _PACKET_HEAD.unpack_from(packet)
        if seq ^ complement != 0xFF:
            return self._error()
        payload = packet[_PACKET_HEAD.size : _PACKET_HEAD.size + size]
        if self._verify_crc:
            (crc,) = _PACKET_CRC.unpack_from(packet, _PACKET_HEAD.size + size)
            if crc != crc16(payload):
                return bytes((NAK,))
        if seq != self._received_in_file & 0xFF:
            return bytes((NAK,))
        if self._received_in_file == 0:
            return self._on_header_packet(payload)
        verdict = self._hooks.on_data(self.packet, self._offset, payload)
        if verdict is Verdict.ACCEPT:
            self._errors = 0
            self._offset += size
            self._received_in_file += 1
            self.packet += 1
            return bytes((ACK,))
        return self._refused(verdict, "Failed to save chunk!")

    def _on_header_packet(self, payload: bytes) -> bytes:
        try:
            header = parse_header(payload)
        except ValueError:
            return self._error()
        if header is None:
            verdict = self._hooks.on_end_of_batch(self.packet)
            if verdict is Verdict.ACCEPT:
                return self._finish(Outcome.COMPLETE, "", bytes((ACK,)))
            return self._refused(verdict, "Validation failed")
        verdict = self._hooks.on_header(self.packet, header)
        if verdict is Verdict.ACCEPT:
            self.files.append(header)
            self._expected_size = header.size
            self._offset = 0
            self._errors = 0
            self._received_in_file = 1
            self.packet += 1
            return bytes((ACK, CRC_REQUEST))
        return self._refused(verdict, "The file size is higher than the allowed space memory!")

    def _refused(self, verdict: Verdict, message: str) -> bytes:
        if verdict is Verdict.REFUSE:
            return bytes((NAK,))
        if verdict is Verdict.FAIL:
            # The owner may have said why (e.g. "Validation failed: -1903") before failing it.
            return self._finish(Outcome.FAILED, self.message or message, ABORT_SEQUENCE)
        return b""

    def _error(self) -> bytes:
        self._errors += 1
        if self._errors > self._max_errors:
            return self._finish(Outcome.FAILED, "Failed to receive the file!", ABORT_SEQUENCE)
        return bytes((CRC_REQUEST,))

    def _finish(self, outcome: Outcome, message: str, reply: bytes) -> bytes:
        self.outcome = outcome
        self.message = message
        self._state = _RxState.DONE
        return reply
