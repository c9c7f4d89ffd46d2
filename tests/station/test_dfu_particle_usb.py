"""Particle's USB identity table and its control-request (service) protocol, without USB."""

from __future__ import annotations

import contextlib
from collections import deque

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from station.errors import DeviceDisconnected, DeviceError, DeviceTimeout
from station.protocols.particle_usb import (
    DFU_MODE_REQUEST,
    ServiceReply,
    ServiceStatus,
    ServiceType,
    device_id_from_serial,
    platform_by_name,
    platform_for_usb,
    send_service_request,
)


def test_usb_ids_map_to_platforms() -> None:
    argon = platform_by_name("argon")
    assert argon is not None and (argon.dfu_pid, argon.normal_pid) == (0xD00C, 0xC00C)
    assert platform_for_usb(0x2B04, 0xD00C) == (argon, True)
    assert platform_for_usb(0x2B04, 0xC00C) == (argon, False)
    assert platform_for_usb(0x2B04, 0xD020)[0].name == "p2"  # type: ignore[index]
    assert platform_for_usb(0x1D50, 0x607F)[0].name == "core"  # type: ignore[index]
    assert platform_for_usb(0x2B04, 0xE00C) is None
    assert platform_for_usb(0x2B04, 0xD0FE) is None
    assert platform_for_usb(0x0483, 0xDF11) is None  # an STM32 ROM bootloader is not ours


def test_device_id_from_serial_number() -> None:
    assert device_id_from_serial("E00FCE681F2BBC3B2B5A1CD7") == "e00fce681f2bbc3b2b5a1cd7"
    assert device_id_from_serial("\x00e00fce681f2bbc3b2b5a1cd7\x00") == "e00fce681f2bbc3b2b5a1cd7"
    assert device_id_from_serial("PHOTON-3a001f000c47353136383631") == "3a001f000c47353136383631"
    assert device_id_from_serial("00000000001") is None


@settings(max_examples=150, deadline=None)
@given(
    status=st.integers(0, 0xFFFF),
    request_id=st.none() | st.integers(0, 0xFFFF),
    size=st.none() | st.integers(0, 0xFFFFFFFF),
    result=st.none() | st.integers(-(2**31), 2**31 - 1),
)
def test_service_reply_round_trips(status: int, request_id: int | None, size: int | None, result: int | None) -> None:
    reply = ServiceReply(status, request_id, size, result)
    assert ServiceReply.parse(reply.pack()) == reply


@settings(max_examples=150, deadline=None)
@given(data=st.binary(max_size=20))
def test_service_reply_parse_raises_device_error_on_garbage(data: bytes) -> None:
    with contextlib.suppress(DeviceError):
        ServiceReply.parse(data)


class Vendor:
    """Answers INIT, then CHECK from a queue."""

    def __init__(self, checks: list[ServiceReply | Exception], init: ServiceReply | None = None) -> None:
        self.init = init or ServiceReply(ServiceStatus.OK, request_id=7)
        self.checks: deque[ServiceReply | Exception] = deque(checks)
        self.requests: list[tuple[int, int, int]] = []

    def control_in(
        self, request_type: int, request: int, value: int, index: int, length: int, timeout_ms: int
    ) -> bytes:
        assert request_type == 0xC0 and length == 64
        self.requests.append((request, value, index))
        if request == ServiceType.INIT:
            return self.init.pack()
        item = self.checks.popleft()
        if isinstance(item, Exception):
            raise item
        return item.pack()

    def control_out(self, *args: object) -> None:
        raise AssertionError("no OUT request expected")

    def set_alt_setting(self, interface: int, alt: int) -> None:
        raise AssertionError("no alt setting expected")


def run(vendor: Vendor, **kw: object) -> int:
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    return send_service_request(vendor, DFU_MODE_REQUEST, clock=lambda: now[0], sleep=sleep, **kw)  # type: ignore[arg-type]


def test_request_polls_check_until_done() -> None:
    vendor = Vendor([ServiceReply(ServiceStatus.PENDING), ServiceReply(ServiceStatus.OK, result=0)])
    assert run(vendor) == 0
    assert vendor.requests == [
        (ServiceType.INIT, 0, DFU_MODE_REQUEST),
        (ServiceType.CHECK, 0, 7),
        (ServiceType.CHECK, 0, 7),
    ]


def test_request_that_resets_the_device_may_lose_its_answer() -> None:
    assert run(Vendor([DeviceDisconnected("gone")]), reset_ok=True) == 0
    with pytest.raises(DeviceDisconnected):
        run(Vendor([DeviceDisconnected("gone")]))


def test_request_failures() -> None:
    with pytest.raises(DeviceError, match="refused"):
        run(Vendor([], init=ServiceReply(ServiceStatus.BUSY)))
    with pytest.raises(DeviceError, match="failed"):
        run(Vendor([ServiceReply(ServiceStatus.NOT_FOUND)]))
    with pytest.raises(DeviceTimeout):
        run(Vendor([ServiceReply(ServiceStatus.PENDING)] * 100), timeout=2.0)
