"""The station's DFU code against an independently written simulated device (tests/station/independent_dfu.py)."""

from __future__ import annotations

import pytest

from station.devices.particle_dfu import find_dfu_devices
from station.protocols.dfu import DfuBlockRefused

from .discovery.images import particle_image
from .independent_dfu import DEVICE_ID, PAGE, IndependentBackend, IndependentBoron


def test_flash_verify_restart_against_an_independent_device() -> None:
    boron = IndependentBoron()
    boron.flash[0x10000:0x10010] = b"\x00" * 16  # old contents elsewhere stay as they are
    image = particle_image("boron", size=3 * 4096 + 100)
    (device,) = find_dfu_devices(backend=IndependentBackend(boron))
    assert device.identify().device_id == DEVICE_ID
    assert device.describe().port_path == "1-4"
    device.flash([image])
    device.verify([image])
    device.restart()
    device.close()

    assert bytes(boron.flash[image.address : image.address + image.size]) == image.data
    assert boron.flash[0x10000:0x10010] == b"\x00" * 16
    first, last = image.address // PAGE, (image.address + image.size - 1) // PAGE
    assert boron.erased == [p * PAGE for p in range(first, last + 1)]  # exactly the covered pages, once
    assert boron.reset_into_firmware  # the leave request manifested

    blocks = -(-image.size // 4096)
    downloads = [(value, n) for kind, value, n in boron.log if kind == "DNLOAD" and value >= 2]
    assert downloads[:blocks] == [(2 + i, min(4096, image.size - 4096 * i)) for i in range(blocks)]
    assert downloads[blocks:] == [(2, 0)]  # leave: a zero-length download, after every data block
    uploads = [value for kind, value, _ in boron.log if kind == "UPLOAD"]
    assert uploads == [2 + i for i in range(blocks)]
    # Every download is followed by status requests until the device is idle again.
    for i, entry in enumerate(boron.log):
        if entry[0] == "DNLOAD" and entry[2] > 0:
            assert boron.log[i + 1][0] == "GETSTATUS"


class RefusesOneBlock(IndependentBoron):
    """Stalls the second data block once (errSTALLEDPKT), then behaves."""

    refused = False

    def out(self, request: int, value: int, data: bytes) -> None:
        if request == 1 and value == 3 and not self.refused:
            self.refused = True
            self.log.append(("DNLOAD", value, len(data)))
            raise self._error(0x0F)
        super().out(request, value, data)


def test_a_refused_block_is_a_specific_error_and_the_device_takes_a_second_attempt() -> None:
    boron = RefusesOneBlock()
    image = particle_image("boron", size=3 * 4096)
    (device,) = find_dfu_devices(backend=IndependentBackend(boron))
    with pytest.raises(DfuBlockRefused) as caught:
        device.flash([image])
    assert caught.value.block == 1 and caught.value.address == image.address + 4096
    assert "errSTALLEDPKT" in caught.value.message
    assert boron.state == 2  # the host cleared the error: dfuIDLE
    device.flash([image])
    device.verify([image])
    assert bytes(boron.flash[image.address : image.address + image.size]) == image.data
