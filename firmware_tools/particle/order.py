"""The order modules of one release are flashed in: bootloader, radio stack, system parts, application."""

from __future__ import annotations

from collections.abc import Sequence

from firmware_tools.particle.model import ModuleFunction, ParticleModule

_RANK: dict[int, int] = {
    ModuleFunction.BOOTLOADER: 0,
    ModuleFunction.RADIO_STACK: 1,
    ModuleFunction.NCP_FIRMWARE: 2,
    ModuleFunction.MONO_FIRMWARE: 3,
    ModuleFunction.SYSTEM_PART: 4,
    ModuleFunction.USER_PART: 5,
    ModuleFunction.ASSET: 6,
}
_OTHER_RANK = 7
# On the Electron the file "system-part1" is module 3, "part2" module 1 and "part3" module 2, and
# each depends on the one before it, so the chain runs 3 -> 1 -> 2.
_SYSTEM_PART_CHAIN: dict[int, dict[int, int]] = {10: {3: 0, 1: 1, 2: 2}}


def flash_order_key(module: ParticleModule) -> tuple[int, ...]:
    """Sort key: function rank, then position in the platform's system-part chain, then index."""
    function = int(module.function)
    rank = _RANK.get(function, _OTHER_RANK)
    position = module.prefix.index
    if function == ModuleFunction.SYSTEM_PART:
        position = _SYSTEM_PART_CHAIN.get(module.platform_id, {}).get(module.prefix.index, module.prefix.index)
    return (rank, position, module.prefix.index, module.prefix.module_version)


def flash_order(modules: Sequence[ParticleModule]) -> list[ParticleModule]:
    """``modules`` sorted by ``flash_order_key``, then moved so each comes after what it depends on."""
    pending = sorted(modules, key=flash_order_key)
    ordered: list[ParticleModule] = []
    while pending:
        for i, candidate in enumerate(pending):
            waits_for = [
                other
                for other in pending
                if other is not candidate
                and any(
                    d.function == int(other.function) and d.index == other.prefix.index
                    for d in candidate.all_dependencies
                )
            ]
            if not waits_for:
                ordered.append(pending.pop(i))
                break
        else:
            # A dependency cycle: keep the key order for what is left rather than loop forever.
            ordered.extend(pending)
            break
    return ordered
