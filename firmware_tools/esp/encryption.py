"""Telling a flash-encrypted ESP image from other non-images, so errors can say why it is refused.

Flash encryption (AES-XTS) covers the header too, so an encrypted image has no 0xE9 magic and reads
as uniformly random bytes; nothing in it can be parsed or edited.
"""

from __future__ import annotations

import math
from collections import Counter

from firmware_tools.esp import layout

# Ciphertext of 4 KiB scores about 7.95 bits per byte; code and data images stay well below 7.5.
_SAMPLE = 4096
_ENTROPY_THRESHOLD = 7.5
# Flash encryption works on 32-byte blocks; encrypted images are whole blocks.
_BLOCK = 32


def looks_flash_encrypted(data: bytes) -> bool:
    """True when ``data`` lacks the image magic and looks like ciphertext (a heuristic)."""
    if len(data) < _SAMPLE or len(data) % _BLOCK or data[0] == layout.IMAGE_MAGIC:
        return False
    return _entropy_bits_per_byte(data[:_SAMPLE]) >= _ENTROPY_THRESHOLD


def _entropy_bits_per_byte(sample: bytes) -> float:
    total = len(sample)
    return -sum(n / total * math.log2(n / total) for n in Counter(sample).values())
