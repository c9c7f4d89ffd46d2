"""The one place that calls esptool's image loader: imported lazily, kept quiet, errors translated.

esptool raises whatever its parsing trips over (FatalError, RuntimeError, struct.error, TypeError...);
only FormatError leaves this module.
"""

from __future__ import annotations

import contextlib
import io
import logging
import threading
from collections.abc import Iterator
from typing import Any

from firmware_tools.errors import FormatError

_log = logging.getLogger(__name__)
# Redirecting sys.stdout is process-wide: two threads interleaving their redirects could leave
# stdout pointing at a dead buffer, so esptool calls take turns.
_STREAMS_LOCK = threading.Lock()


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Capture what esptool prints while it loads or saves an image; passed on as debug logging only."""
    sink = io.StringIO()
    with _STREAMS_LOCK:
        try:
            with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
                yield
        finally:
            if sink.getvalue().strip():
                _log.debug("esptool said: %s", sink.getvalue().strip())


def load_image(chip_key: str, data: bytes, *, name: str | None = None) -> Any:
    """esptool's parsed image object (an ``ESP32FirmwareImage`` subclass) for ``data``."""
    from esptool.bin_image import LoadFirmwareImage

    try:
        with quiet():
            return LoadFirmwareImage(chip_key, bytes(data))
    # esptool reports malformed input through many exception types; all mean "not a valid image".
    except Exception as exc:
        raise FormatError(f"esptool cannot load the image: {_describe(exc)}", file=name) from exc


def new_image(chip_key: str) -> Any:
    """An empty esptool image object for ``chip_key``, to fill with segments and save."""
    from esptool import bin_image

    classes: dict[str, Any] = {
        "esp32": bin_image.ESP32FirmwareImage,
        "esp32s2": bin_image.ESP32S2FirmwareImage,
        "esp32s3": bin_image.ESP32S3FirmwareImage,
        "esp32c3": bin_image.ESP32C3FirmwareImage,
        "esp32c2": bin_image.ESP32C2FirmwareImage,
        "esp32c6": bin_image.ESP32C6FirmwareImage,
        "esp32c61": bin_image.ESP32C61FirmwareImage,
        "esp32c5": bin_image.ESP32C5FirmwareImage,
        "esp32e22": bin_image.ESP32E22FirmwareImage,
        "esp32h2": bin_image.ESP32H2FirmwareImage,
        "esp32h21": bin_image.ESP32H21FirmwareImage,
        "esp32p4": bin_image.ESP32P4FirmwareImage,
        "esp32h4": bin_image.ESP32H4FirmwareImage,
        "esp32s31": bin_image.ESP32S31FirmwareImage,
    }
    return classes[chip_key]()


def image_section(name: str, load_address: int, data: bytes) -> Any:
    """A named section as esptool's writer expects them (it names padding after them)."""
    from esptool.bin_image import ELFSection

    return ELFSection(name.encode("ascii"), load_address, data, flags=0)


def _describe(exc: Exception) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
