"""The one module that reaches under esptool's public API: what it relies on is there, and works.

If an esptool release removes or changes an internal the adapter patches, the first test fails with
the adapter's own description of what is gone; the others show each patch doing its job through a
real esptool against the simulator (no mocks of esptool).
"""

from __future__ import annotations

import sys
import threading
from types import FrameType
from typing import Any

import esptool.loader
import pytest

from firmware_tools.esp import build_app_image
from station.devices import esptool_adapter
from station.devices.base import FlashImage
from station.devices.esp import EspDevice
from station.sim.esp_loader import SimulatedEsp
from station.sim.timing import TimingModel


def test_every_esptool_internal_the_adapter_uses_is_there() -> None:
    problems = esptool_adapter.internals_problems()
    assert not problems, "esptool changed underneath station/devices/esptool_adapter.py:\n" + "\n".join(problems)


def test_the_check_notices_a_missing_internal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(esptool.loader.ESPLoader, "WRITE_FLASH_ATTEMPTS")
    monkeypatch.setattr(esptool.cmds, "zlib", object())
    problems = "\n".join(esptool_adapter.internals_problems())
    assert "WRITE_FLASH_ATTEMPTS" in problems
    assert "zlib" in problems


def test_no_hex_dump_is_built_while_the_station_flashes() -> None:
    """esptool formats a hex dump of every frame inside an f-string, tracing on or off: counted at the
    functions that do the work, on the flashing thread, over a whole connect + write + verify."""
    original_str = esptool_adapter._OriginalHex.__str__
    hexify = esptool.loader.hexify
    seen: list[str] = []
    flashing = threading.get_ident()

    def profile(frame: FrameType, event: str, _arg: Any) -> None:
        if event == "call" and threading.get_ident() == flashing:
            code = frame.f_code
            caller = frame.f_back.f_code if frame.f_back is not None else None
            # hexify also renders the stub's 16-byte MD5 answer; only the dumps count.
            if code is original_str.__code__ or (code is hexify.__code__ and caller is original_str.__code__):
                seen.append(code.co_name)

    image = FlashImage("app.bin", build_app_image(payload_size=70000, seed=4), 0x10000, "app")
    with SimulatedEsp("esp32", unsupported_reply="echo", timing=TimingModel(enabled=False)) as sim:
        url = sim.serve_tcp()
        sys.setprofile(profile)
        try:
            with EspDevice(url) as device:
                device.flash([image])
                device.verify([image])
        finally:
            sys.setprofile(None)
        assert sim.read_flash(image.address, image.size) == image.data
    assert seen == []
    # Outside a station call (esptool's own --trace in this process) the dump is still there.
    two = bytes([1, 2])
    assert "0102" in f"{esptool.loader.HexFormatter(two)}".replace(" ", "")


def test_an_image_asked_for_by_many_threads_at_once_is_compressed_once() -> None:
    cache = esptool_adapter.CompressionCache()
    data = build_app_image(payload_size=200000, seed=9)
    results: list[bytes] = []
    start = threading.Barrier(8)

    def board() -> None:
        start.wait()
        results.append(cache.compress(data, 9))

    threads = [threading.Thread(target=board) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert cache.compressions == 1 and cache.hits == 7
    assert len(set(results)) == 1
    import zlib

    assert zlib.decompress(results[0]) == data
    assert cache.compress(data, 6) != results[0] and cache.compressions == 2  # the level is part of the key


def test_precompressed_images_are_what_write_flash_finds_in_the_cache() -> None:
    esptool_adapter.COMPRESSION_CACHE.clear()
    data = build_app_image(payload_size=50001, seed=21)  # not a multiple of 4: esptool pads it
    esptool_adapter.precompress([data]).join()
    assert esptool_adapter.COMPRESSION_CACHE.compressions == 1
    image = FlashImage("app.bin", data, 0x10000, "app")
    with SimulatedEsp("esp32", unsupported_reply="echo", timing=TimingModel(enabled=False)) as sim:
        with EspDevice(sim.serve_tcp()) as device:
            device.flash([image])
        assert sim.read_flash(image.address, image.size) == image.data
    assert esptool_adapter.COMPRESSION_CACHE.compressions == 1 and esptool_adapter.COMPRESSION_CACHE.hits == 1
