"""The DfuSe client and its host state machine, against a scripted transport: no USB at all."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from station.errors import DeviceDisconnected, DeviceTimeout
from station.protocols.dfu import (
    DFU_IN,
    DFU_OUT,
    DfuBlockRefused,
    DfuProtocolError,
    DfuSeClient,
    DfuStatusError,
    FunctionalDescriptor,
    Poll,
    Recovery,
    Request,
    State,
    Status,
    StatusReply,
    UsbStall,
    find_functional_descriptor,
    poll_outcome,
    recovery_for,
)

Call = tuple[str, int, int, bytes | int]


class ScriptedTransport:
    """Records every request; answers GETSTATUS from a queue of replies (or exceptions)."""

    def __init__(self, statuses: list[StatusReply | Exception] | None = None) -> None:
        self.calls: list[Call] = []
        self.statuses: deque[StatusReply | Exception] = deque(statuses or [])
        self.on_out: Callable[[int, int, bytes], None] | None = None
        self.upload: bytes = b""

    def control_out(
        self, request_type: int, request: int, value: int, index: int, data: bytes, timeout_ms: int
    ) -> None:
        assert request_type == DFU_OUT and index == 0
        self.calls.append(("out", request, value, data))
        if self.on_out is not None:
            self.on_out(request, value, data)

    def control_in(
        self, request_type: int, request: int, value: int, index: int, length: int, timeout_ms: int
    ) -> bytes:
        assert request_type == DFU_IN and index == 0
        self.calls.append(("in", request, value, length))
        if request == Request.GETSTATUS:
            item = self.statuses.popleft()
            if isinstance(item, Exception):
                raise item
            return item.pack()
        if request == Request.UPLOAD:
            return self.upload[:length]
        return b"\x02"

    def set_alt_setting(self, interface: int, alt: int) -> None:
        self.calls.append(("alt", interface, alt, b""))


def status(state: State, code: Status = Status.OK, poll: int = 0) -> StatusReply:
    return StatusReply(code, poll, state, 0)


IDLE = status(State.DFU_IDLE)
BUSY = status(State.DFU_DNBUSY)
DN_IDLE = status(State.DFU_DNLOAD_IDLE)


def client(transport: ScriptedTransport, sleeps: list[float] | None = None, **kw: object) -> DfuSeClient:
    record = sleeps if sleeps is not None else []
    return DfuSeClient(transport, device="test", sleep=record.append, **kw)  # type: ignore[arg-type]


# ---- values


@settings(max_examples=150, deadline=None)
@given(
    code=st.sampled_from(list(Status)),
    state=st.sampled_from(list(State)),
    poll=st.integers(0, 0xFFFFFF),
    index=st.integers(0, 255),
)
def test_status_reply_round_trips(code: Status, state: State, poll: int, index: int) -> None:
    reply = StatusReply(code, poll, state, index)
    assert StatusReply.parse(reply.pack()) == reply


@settings(max_examples=150, deadline=None)
@given(data=st.binary(max_size=10))
def test_status_reply_parse_never_crashes(data: bytes) -> None:
    try:
        reply = StatusReply.parse(data)
    except DfuProtocolError:
        return
    assert len(data) == 6 and reply.pack() == data


def test_status_reply_layout() -> None:
    # bStatus, 24-bit LE poll timeout, bState, iString
    assert StatusReply.parse(bytes([0x06, 0x10, 0x27, 0x00, 0x0A, 0x00])) == StatusReply(
        Status.ERR_PROG, 10000, State.DFU_ERROR, 0
    )
    with pytest.raises(DfuProtocolError, match="does not define"):
        StatusReply.parse(bytes([0, 0, 0, 0, 0xF2, 0]))


def test_functional_descriptor_found_in_extra_bytes() -> None:
    particle = bytes.fromhex("09210bff0000101a01")
    found = find_functional_descriptor(particle)
    assert found == FunctionalDescriptor(0x0B, 255, 4096, 0x011A)
    assert found.is_dfuse and found.can_download and found.can_upload and found.will_detach
    assert not found.manifestation_tolerant
    assert found.pack() == particle
    # Another class descriptor first, then the DFU one.
    assert find_functional_descriptor(bytes.fromhex("0524001001") + particle) == found
    # DFU 1.0: 7 bytes, no version field.
    assert find_functional_descriptor(bytes.fromhex("0721030a000004")) == FunctionalDescriptor(3, 10, 1024, 0x0100)
    assert find_functional_descriptor(b"") is None
    assert find_functional_descriptor(b"\x00\x21") is None


@settings(max_examples=150, deadline=None)
@given(data=st.binary(max_size=40))
def test_functional_descriptor_search_never_crashes(data: bytes) -> None:
    find_functional_descriptor(data)


def test_recovery_table() -> None:
    assert recovery_for(IDLE) is Recovery.NONE
    assert recovery_for(status(State.DFU_IDLE, Status.ERR_WRITE)) is Recovery.CLRSTATUS
    assert recovery_for(status(State.DFU_ERROR, Status.ERR_PROG)) is Recovery.CLRSTATUS
    for state in (State.DFU_DNLOAD_IDLE, State.DFU_UPLOAD_IDLE, State.DFU_DNLOAD_SYNC, State.DFU_MANIFEST_SYNC):
        assert recovery_for(status(state)) is Recovery.ABORT
    for state in (State.APP_IDLE, State.APP_DETACH, State.DFU_MANIFEST, State.DFU_MANIFEST_WAIT_RESET):
        assert recovery_for(status(state)) is Recovery.FAIL
    assert recovery_for(BUSY) is Recovery.WAIT
    assert poll_outcome(BUSY) is Poll.WAIT
    assert poll_outcome(DN_IDLE) is Poll.DONE
    assert poll_outcome(status(State.DFU_ERROR, Status.ERR_PROG)) is Poll.ERROR
    assert poll_outcome(IDLE) is Poll.UNEXPECTED


# ---- client operations


def test_blocks_carry_consecutive_numbers_from_two() -> None:
    transport = ScriptedTransport([BUSY, DN_IDLE] * 3)
    dfu = client(transport)
    for block in range(3):
        dfu.download_block(block, bytes([block]) * 16, 0x1000 + block * 4096)
    downloads = [(value, data) for kind, request, value, data in transport.calls if request == Request.DNLOAD]
    assert downloads == [(2, b"\x00" * 16), (3, b"\x01" * 16), (4, b"\x02" * 16)]


def test_poll_timeout_is_honoured_between_status_requests() -> None:
    sleeps: list[float] = []
    transport = ScriptedTransport([status(State.DFU_DNBUSY, poll=120), status(State.DFU_DNBUSY, poll=45), DN_IDLE])
    client(transport, sleeps).download_block(0, b"x", 0)
    assert sleeps == [0.12, 0.045]
    assert [c[1] for c in transport.calls] == [Request.DNLOAD, Request.GETSTATUS, Request.GETSTATUS, Request.GETSTATUS]


def test_a_device_asking_to_wait_too_long_times_out_naming_the_block() -> None:
    transport = ScriptedTransport([status(State.DFU_DNBUSY, poll=30_000)])
    with pytest.raises(DeviceTimeout) as caught:
        client(transport, max_poll_wait=20.0).download_block(7, b"x", 0x80000, index=5)
    assert caught.value.block == 5 and caught.value.address == 0x80000
    assert "30.0 s" in str(caught.value)


def test_error_status_is_cleared_and_reported() -> None:
    transport = ScriptedTransport([BUSY, status(State.DFU_ERROR, Status.ERR_PROG)])
    with pytest.raises(DfuStatusError) as caught:
        client(transport).download_block(3, b"x", 0x3000)
    assert caught.value.status is Status.ERR_PROG
    assert caught.value.block == 3 and caught.value.address == 0x3000
    assert "errPROG" in str(caught.value)
    assert transport.calls[-1][:2] == ("out", Request.CLRSTATUS)


def test_dfuse_command_must_report_busy_first() -> None:
    transport = ScriptedTransport([DN_IDLE])
    with pytest.raises(DfuProtocolError, match="instead of dfuDNBUSY"):
        client(transport).set_address(0x08020000)
    transport = ScriptedTransport([BUSY, DN_IDLE])
    client(transport).erase_page(0x08020000)
    assert transport.calls[0] == ("out", Request.DNLOAD, 0, bytes([0x41, 0x00, 0x00, 0x02, 0x08]))


def test_stalled_block_is_refused_with_the_device_status() -> None:
    transport = ScriptedTransport([status(State.DFU_ERROR, Status.ERR_STALLEDPKT)])

    def stall(request: int, value: int, data: bytes) -> None:
        if request == Request.DNLOAD:
            raise UsbStall("stalled")

    transport.on_out = stall
    with pytest.raises(DfuBlockRefused, match="errSTALLEDPKT") as caught:
        client(transport).download_block(0, b"x", 0x100)
    assert caught.value.address == 0x100
    assert ("out", Request.CLRSTATUS, 0, b"") in transport.calls


def test_go_idle_clears_errors_and_aborts_transfers() -> None:
    transport = ScriptedTransport([status(State.DFU_ERROR, Status.ERR_ADDRESS), status(State.DFU_UPLOAD_IDLE), IDLE])
    assert client(transport).go_idle() == IDLE
    outs = [c[1] for c in transport.calls if c[0] == "out"]
    assert outs == [Request.CLRSTATUS, Request.ABORT]


def test_go_idle_refuses_run_time_mode() -> None:
    with pytest.raises(DfuProtocolError, match="run-time mode"):
        client(ScriptedTransport([status(State.APP_IDLE)])).go_idle()


def test_leave_sends_zero_length_download_and_accepts_a_vanishing_device() -> None:
    transport = ScriptedTransport([DeviceDisconnected("gone")])
    assert client(transport).leave() is True
    assert transport.calls[0] == ("out", Request.DNLOAD, 2, b"")
    # Gen3 reports dfuMANIFEST, Gen2 its DNLOAD-IDLE quirk: both are success.
    assert client(ScriptedTransport([status(State.DFU_MANIFEST)])).leave()
    assert client(ScriptedTransport([DN_IDLE])).leave()
    with pytest.raises(DfuStatusError):
        client(ScriptedTransport([status(State.DFU_ERROR, Status.ERR_FIRMWARE)])).leave()


def test_leave_accepts_a_device_that_re_enumerates_before_answering() -> None:
    # device-os 599 / particle-cli 434: the board resets into its firmware before it answers.
    no_answer = ScriptedTransport([DeviceTimeout("no answer")])
    assert client(no_answer).leave() is True

    class GoneWithTheRequest(ScriptedTransport):
        def control_out(
            self, request_type: int, request: int, value: int, index: int, data: bytes, timeout_ms: int
        ) -> None:
            super().control_out(request_type, request, value, index, data, timeout_ms)
            raise DeviceDisconnected("device is gone from the bus")

    gone = GoneWithTheRequest()
    assert client(gone).leave() is True
    assert gone.calls == [("out", Request.DNLOAD, 2, b"")]  # nothing asked of a device that left
    # A device that answers that it failed is still a failure.
    with pytest.raises(DfuStatusError):
        client(ScriptedTransport([status(State.DFU_ERROR, Status.ERR_VERIFY)])).leave()


def test_transport_errors_name_the_operation_and_block() -> None:
    transport = ScriptedTransport([DeviceTimeout("no answer")])
    with pytest.raises(DeviceTimeout) as caught:
        client(transport).download_block(4, b"x", 0x4000)
    assert caught.value.block == 4 and caught.value.address == 0x4000
    assert "write block" in str(caught.value)


def test_corrupt_status_reply_is_a_protocol_error_naming_the_block() -> None:
    class Corrupt(ScriptedTransport):
        def control_in(self, *args: int) -> bytes:
            self.calls.append(("in", args[1], args[2], args[4]))
            return bytes([0x5A, 0, 0, 0, 0xF4, 0])

    with pytest.raises(DfuProtocolError) as caught:
        client(Corrupt()).download_block(9, b"x", 0x9000)
    assert caught.value.block == 9


def test_upload_uses_block_numbers_from_two() -> None:
    transport = ScriptedTransport()
    transport.upload = b"abcdef"
    assert client(transport).upload_block(5, 4, 0) == b"abcd"
    assert transport.calls[-1] == ("in", Request.UPLOAD, 7, 4)


class Stuck(ScriptedTransport):
    """A device that answers the same status for ever."""

    def __init__(self, reply: StatusReply) -> None:
        super().__init__()
        self.reply = reply

    def control_in(
        self, request_type: int, request: int, value: int, index: int, length: int, timeout_ms: int
    ) -> bytes:
        self.calls.append(("in", request, value, length))
        return self.reply.pack()


def test_a_device_busy_for_ever_with_zero_poll_timeout_ends_in_a_timeout() -> None:
    transport = Stuck(BUSY)
    with pytest.raises(DeviceTimeout, match="still busy after 101 status requests"):
        client(transport, max_polls=100).download_block(0, b"x", 0)
    assert len(transport.calls) == 1 + 101


def test_wall_clock_bounds_the_wait_even_when_the_device_asks_for_none() -> None:
    now = [0.0]

    def clock() -> float:
        now[0] += 0.5  # every status request takes half a second
        return now[0]

    dfu = DfuSeClient(Stuck(BUSY), device="test", sleep=lambda _: None, clock=clock, max_poll_wait=5.0)
    with pytest.raises(DeviceTimeout):
        dfu.erase_page(0x1000)
    assert now[0] < 10.0


def test_a_device_stuck_in_manifest_sync_does_not_hang_leave() -> None:
    with pytest.raises(DeviceTimeout):
        client(Stuck(status(State.DFU_MANIFEST_SYNC)), max_polls=50).leave()
