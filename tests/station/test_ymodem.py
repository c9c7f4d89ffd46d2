"""YModem state machines without I/O: sender against receiver in memory, and each failure path."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from station.errors import DeviceDisconnected, DeviceError, DeviceTimeout
from station.protocols import ymodem
from station.protocols.ymodem import (
    ACK,
    CAN,
    CRC_REQUEST,
    EOT,
    NAK,
    FileHeader,
    Outcome,
    PacketRefused,
    TransferCancelled,
    UnexpectedReply,
    Verdict,
    YModemReceiver,
    YModemSender,
)


class Sink:
    """Receiver hooks that store what arrives, with an optional verdict per packet."""

    def __init__(self, verdicts: dict[int, Verdict] | None = None, end: Verdict = Verdict.ACCEPT) -> None:
        self.header: FileHeader | None = None
        self.data = bytearray()
        self.verdicts = verdicts or {}
        self.end = end
        self.packets: list[int] = []

    def on_header(self, packet: int, header: FileHeader) -> Verdict:
        self.header = header
        self.packets.append(packet)
        return Verdict.ACCEPT

    def on_data(self, packet: int, offset: int, payload: bytes) -> Verdict:
        self.packets.append(packet)
        verdict = self.verdicts.get(packet, Verdict.ACCEPT)
        if verdict is Verdict.ACCEPT:
            del self.data[offset:]
            self.data += payload
        return verdict

    def on_end_of_batch(self, packet: int) -> Verdict:
        self.packets.append(packet)
        return self.end

    def file(self) -> bytes:
        assert self.header is not None
        return bytes(self.data[: self.header.size])


def run(sender: YModemSender, receiver: YModemReceiver, *, start_with_c: bool = True) -> None:
    """Shuttle bytes between the two machines until the sender is done."""
    to_receiver = sender.start()
    to_sender = bytes((CRC_REQUEST,)) if start_with_c else b""
    for _ in range(100_000):
        if sender.state is ymodem.SenderState.DONE:
            return
        if to_receiver:
            to_sender += receiver.feed(to_receiver)
            to_receiver = b""
        elif to_sender:
            to_receiver = sender.on_bytes(to_sender)
            to_sender = b""
        else:
            # Device OS only says "C" after its receive timeout; let that happen.
            to_sender = receiver.on_timeout()
    raise AssertionError("transfer did not finish")


def test_crc16_is_xmodem() -> None:
    assert ymodem.crc16(b"123456789") == 0x31C3


def test_packet_layout() -> None:
    packet = ymodem.encode_packet(1, b"abc")
    assert packet[:3] == bytes((ymodem.SOH, 1, 0xFE))
    assert len(packet) == 3 + 128 + 2
    assert packet[3:6] == b"abc" and packet[6:131] == bytes((ymodem.PAD,)) * 125
    assert packet[-2:] == ymodem.crc16(packet[3:131]).to_bytes(2, "big")
    big = ymodem.encode_packet(300, bytes(129))
    assert big[:3] == bytes((ymodem.STX, 300 & 0xFF, 0xFF - (300 & 0xFF))) and len(big) == 1029


def test_header_payload_layout() -> None:
    payload = ymodem.header_payload("app.bin", 1234)
    assert payload.startswith(b"app.bin\x001234 \x00") and len(payload) == 128
    assert ymodem.parse_header(payload) == FileHeader("app.bin", 1234)
    assert ymodem.parse_header(ymodem.END_OF_BATCH) is None


@settings(max_examples=150, deadline=None)
@given(
    name=st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=100),
    size=st.integers(min_value=0, max_value=2**40),
)
def test_header_round_trip(name: str, size: int) -> None:
    assert ymodem.parse_header(ymodem.header_payload(name, size)) == FileHeader(name, size)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=200))
def test_parse_header_never_crashes(payload: bytes) -> None:
    with contextlib.suppress(ValueError):
        ymodem.parse_header(payload)


@pytest.mark.parametrize("block", [128, 1024])
@pytest.mark.parametrize("size", [1, 127, 128, 129, 1023, 1024, 1025, 5000, 140_000])
def test_sender_to_receiver_byte_exact(block: int, size: int) -> None:
    data = bytes((i * 7 + 3) & 0xFF for i in range(size))
    sink = Sink()
    receiver = YModemReceiver(sink, verify_crc=True)
    run(YModemSender("f.bin", data, block_size=block), receiver)
    assert receiver.outcome is Outcome.COMPLETE
    assert sink.header == FileHeader("f.bin", size)
    assert sink.file() == data


@settings(max_examples=60, deadline=None)
@given(data=st.binary(min_size=1, max_size=4000), block=st.sampled_from([128, 1024]))
def test_round_trip_property(data: bytes, block: int) -> None:
    sink = Sink()
    receiver = YModemReceiver(sink)
    run(YModemSender("x", data, block_size=block, wait_for_start=False, wait_before_batch_end=False), receiver)
    assert sink.file() == data


def test_sequence_numbers_wrap_past_255() -> None:
    data = bytes(range(256)) * 160  # 320 packets of 128 bytes
    sink = Sink()
    receiver = YModemReceiver(sink)
    run(YModemSender("wrap", data, block_size=128), receiver)
    assert sink.file() == data


def test_device_os_flow_needs_no_c() -> None:
    """Device OS prints a prompt instead of "C" and only says "C" after EOT on a timeout."""
    data = b"module" * 100
    sink = Sink()
    receiver = YModemReceiver(sink)
    sender = YModemSender("m", data, block_size=128, wait_for_start=False, wait_before_batch_end=False)
    run(sender, receiver, start_with_c=False)
    assert sink.file() == data
    assert sink.packets == [0, 1, 2, 3, 4, 5, 7]  # header, 5 data, (EOT = 6), end-of-batch


def test_nak_is_retried_then_refused() -> None:
    sender = YModemSender("a", bytes(3000), max_retries=3)
    sender.on_bytes(bytes((CRC_REQUEST,)))
    sender.on_bytes(bytes((ACK, CRC_REQUEST)))
    first = sender.on_bytes(bytes((ACK,)))  # packet 1 acked: packet 2 goes out
    for _ in range(3):
        assert sender.on_byte(NAK) == first
    with pytest.raises(PacketRefused) as err:
        sender.on_byte(NAK)
    assert err.value.block == 2 and err.value.address == 1024


def test_timeouts_retransmit_then_fail_naming_the_packet() -> None:
    sender = YModemSender("a", bytes(3000), max_retries=2, wait_for_start=False)
    header = sender.start()
    assert sender.on_timeout() == header
    assert sender.on_timeout() == header
    with pytest.raises(DeviceTimeout) as err:
        sender.on_timeout()
    assert err.value.block == 0 and "no answer to the packet" in err.value.message


def test_can_can_cancels() -> None:
    sender = YModemSender("a", bytes(3000), wait_for_start=False)
    sender.start()
    assert sender.on_byte(CAN) == b""
    with pytest.raises(TransferCancelled):
        sender.on_byte(CAN)


def test_unexpected_byte_is_a_protocol_error() -> None:
    sender = YModemSender("a", bytes(3000), wait_for_start=False)
    sender.start()
    sender.on_bytes(bytes((ACK, CRC_REQUEST)))
    with pytest.raises(UnexpectedReply) as err:
        sender.on_byte(0x86)
    assert err.value.block == 1 and "0x86" in err.value.message


def test_garbage_after_silence_is_a_stall_not_a_bad_answer() -> None:
    # A device that hung and came back (watchdog) answers the retransmission with console text.
    sender = YModemSender("a", bytes(3000), wait_for_start=False)
    sender.start()
    sender.on_bytes(bytes((ACK, CRC_REQUEST, ACK)))
    assert sender.packet == 2
    assert sender.on_timeout()  # the same packet again
    with pytest.raises(DeviceTimeout) as err:
        sender.on_byte(ord("D"))
    assert err.value.block == 2 and err.value.address == 1024
    assert "stopped answering" in err.value.message and "0x44" in err.value.message


def test_receiver_naks_a_wrong_sequence() -> None:
    sink = Sink()
    receiver = YModemReceiver(sink)
    assert receiver.feed(ymodem.encode_packet(0, ymodem.header_payload("a", 10), pad=0)) == bytes((ACK, CRC_REQUEST))
    assert receiver.feed(ymodem.encode_packet(2, b"x")) == bytes((NAK,))
    assert receiver.feed(ymodem.encode_packet(1, b"x")) == bytes((ACK,))


def test_receiver_gives_up_after_five_errors() -> None:
    receiver = YModemReceiver(Sink())
    for _ in range(5):
        assert receiver.on_timeout() == bytes((CRC_REQUEST,))
    assert receiver.on_timeout() == bytes((CAN, CAN))
    assert receiver.outcome is Outcome.FAILED and receiver.message == "Failed to receive the file!"


def test_receiver_checks_complement_and_optionally_crc() -> None:
    receiver = YModemReceiver(Sink(), verify_crc=True)
    packet = bytearray(ymodem.encode_packet(0, ymodem.header_payload("a", 10), pad=0))
    bad_complement = bytes(packet[:2]) + b"\x00" + bytes(packet[3:])
    assert receiver.feed(bad_complement) == bytes((CRC_REQUEST,))
    packet[-1] ^= 0xFF
    assert receiver.feed(bytes(packet)) == bytes((NAK,))
    # Device OS reads the CRC but never checks it.
    lenient = YModemReceiver(Sink())
    assert lenient.feed(bytes(packet)) == bytes((ACK, CRC_REQUEST))


def test_receiver_user_abort_and_sender_cancel() -> None:
    receiver = YModemReceiver(Sink())
    assert receiver.feed(b"a") == bytes((CAN, CAN))
    assert receiver.outcome is Outcome.USER_ABORTED
    receiver = YModemReceiver(Sink())
    assert receiver.feed(bytes((CAN, CAN))) == bytes((ACK,))
    assert receiver.outcome is Outcome.SENDER_CANCELLED


def test_receiver_space_is_acknowledged_and_eot_acked() -> None:
    receiver = YModemReceiver(Sink())
    assert receiver.feed(b" ") == bytes((ACK,))
    assert receiver.feed(bytes((EOT,))) == bytes((ACK,))


def test_validation_failure_cancels_at_end_of_batch() -> None:
    sink = Sink(end=Verdict.FAIL)
    receiver = YModemReceiver(sink)
    with pytest.raises(TransferCancelled) as err:
        run(YModemSender("bad", bytes(500)), receiver)
    assert receiver.outcome is Outcome.FAILED
    assert err.value.block == 3  # header, one data packet, EOT, then the end-of-batch header


def test_refused_packet_through_send_file_cancels_the_link() -> None:
    sink = Sink(verdicts={2: Verdict.REFUSE})
    receiver = YModemReceiver(sink)

    class Loop:
        def __init__(self) -> None:
            self.pending = bytearray()
            self.written = bytearray()

        def write(self, data: bytes) -> None:
            self.written += data
            self.pending += receiver.feed(data)

        def read(self, size: int, timeout: float) -> bytes:
            out = bytes(self.pending[:size])
            del self.pending[:size]
            return out

    loop = Loop()
    with pytest.raises(PacketRefused) as err:
        ymodem.send_file(loop, "x", bytes(4000), max_retries=2, wait_for_start=False, timeout=0.01)
    assert err.value.block == 2
    assert loop.written.endswith(bytes((CAN, CAN)))
    assert receiver.outcome is Outcome.SENDER_CANCELLED


def test_send_file_names_the_packet_when_the_link_drops() -> None:
    class Dropping:
        """Answers header and packet 1, then the port vanishes as packet 2 is written."""

        def __init__(self) -> None:
            self.writes = 0
            self.replies = bytearray((ACK, CRC_REQUEST, ACK))

        def write(self, data: bytes) -> None:
            self.writes += 1
            if self.writes == 3:
                raise DeviceDisconnected("gone")

        def read(self, size: int, timeout: float) -> bytes:
            out = bytes(self.replies[:size])
            del self.replies[:size]
            return out

    progress: list[tuple[int, int]] = []
    with pytest.raises(DeviceDisconnected) as err:
        ymodem.send_file(
            Dropping(),
            "x",
            bytes(4000),
            wait_for_start=False,
            wait_before_batch_end=False,
            progress=lambda d, t: progress.append((d, t)),
        )
    assert (err.value.block, err.value.address) == (2, 1024)
    assert progress[-1] == (1024, 4000)


def test_interrupted_sender_cancels_the_receiver() -> None:
    """Ctrl-C mid-transfer: the device hears CAN CAN at once instead of timing out."""
    sink = Sink()
    receiver = YModemReceiver(sink)

    class Loop:
        def __init__(self) -> None:
            self.pending = bytearray()

        def write(self, data: bytes) -> None:
            self.pending += receiver.feed(data)

        def read(self, size: int, timeout: float) -> bytes:
            out = bytes(self.pending[:size])
            del self.pending[:size]
            return out

    def interrupt(done: int, total: int) -> None:
        if done >= 2048:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ymodem.send_file(Loop(), "x", bytes(8000), wait_for_start=False, timeout=0.01, progress=interrupt)
    assert receiver.outcome is Outcome.SENDER_CANCELLED


@settings(max_examples=150, deadline=None)
@given(st.lists(st.binary(max_size=1100), max_size=6))
def test_receiver_survives_any_input(chunks: list[bytes]) -> None:
    receiver = YModemReceiver(Sink())
    for chunk in chunks:
        out = receiver.feed(chunk)
        assert set(out) <= {ACK, NAK, CAN, CRC_REQUEST}
        receiver.on_timeout()


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=64))
def test_sender_fails_only_with_device_errors(noise: bytes) -> None:
    sender = YModemSender("a", bytes(3000), wait_for_start=False)
    sender.start()
    try:
        sender.on_bytes(noise)
    except DeviceError:
        assert sender.state is ymodem.SenderState.FAILED
