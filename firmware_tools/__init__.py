"""Firmware formats for benchflash: Particle modules, ESP images, Intel HEX, keys and release bundles.

Bytes in, typed values or bytes out; nothing here knows about devices or the network.
"""

from firmware_tools.errors import FirmwareError

__all__ = ["FirmwareError"]
