"""The Particle module format as ``fwtool`` sees it: how sure content is a module, inspect, validate."""

from __future__ import annotations

from firmware_tools.checks import Expectations, ValidationReport
from firmware_tools.errors import FormatError
from firmware_tools.particle.constants import PLATFORMS
from firmware_tools.particle.layout import CRC, KNOWN_PREFIX_OFFSETS, MIN_PARSEABLE_SIZE, PREFIX
from firmware_tools.particle.model import ModuleFlags, ModuleFunction
from firmware_tools.particle.parse import FULL_SCORE, find_prefix_offset, parse_module, split_combined
from firmware_tools.particle.report import FORMAT_NAME, module_json, summary_lines
from firmware_tools.particle.seal import file_crc32
from firmware_tools.particle.validate import validate_module


class ParticleModuleFormat:
    """Particle Device OS module binaries (.bin), plain, compressed or combined."""

    name = FORMAT_NAME

    def sniff(self, data: bytes) -> int:
        """90: CRC and prefix both check out; 85: a combined file; 70: CRC ok; 40: a plausible prefix, bad CRC."""
        if len(data) < MIN_PARSEABLE_SIZE:
            return 0
        offset, score = find_prefix_offset(data)
        if score == 0:
            return 0
        crc_ok = CRC.unpack_from(data, len(data) - CRC.size)[0] == file_crc32(data)
        if crc_ok:
            return 90 if score >= FULL_SCORE else 70
        if offset in KNOWN_PREFIX_OFFSETS and score >= FULL_SCORE - 1:
            # A combined file fails the whole-file CRC by construction; its parts carry their own.
            if data[offset + 9] & ModuleFlags.COMBINED:
                try:
                    split_combined(data)
                except FormatError:
                    return 40
                return 85
            return 40
        return 0

    def near_miss(self, data: bytes) -> str | None:
        """Why bytes that sniff as nothing may still be a module: one cut short."""
        for offset in sorted(KNOWN_PREFIX_OFFSETS):
            if offset + PREFIX.size > len(data):
                continue
            start, end, _r, _f, _v, platform, function = PREFIX.unpack_from(data, offset)[:7]
            claimed = end - start + CRC.size
            if platform in PLATFORMS and 0 < function <= max(ModuleFunction) and len(data) < claimed <= (1 << 24):
                return (
                    f"it looks like a Particle module for {PLATFORMS[platform]} cut short: its prefix says "
                    f"{claimed} bytes, the file has {len(data)}"
                )
        return None

    def inspect(self, data: bytes) -> dict[str, object]:
        return module_json(parse_module(data))

    def summary(self, data: bytes) -> list[str]:
        return summary_lines(parse_module(data))

    def validate(self, data: bytes, expect: Expectations) -> ValidationReport:
        return validate_module(data, expect)


FORMAT = ParticleModuleFormat()

__all__ = ["FORMAT", "ParticleModuleFormat"]
