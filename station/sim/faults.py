"""Fault injection shared by the simulators: what goes wrong, and when.

A fault is written ``KIND[@N]`` (``disconnect@12``, ``corrupt-reply@3``, ``stall``); several are
joined with commas. ``N`` counts the simulator's own unit: a DFU block, a YModem packet, an ESP
flash block. Each simulator documents which kinds it honours.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class FaultKind(StrEnum):
    DISCONNECT = "disconnect"  # the device vanishes (USB gone, serial port closed)
    STALL = "stall"  # the device stops answering (a wait must time out)
    CORRUPT_REPLY = "corrupt-reply"  # one answer comes back with damaged bytes
    ERROR_STATUS = "error-status"  # the device reports an error status for the block
    REFUSE_BLOCK = "refuse-block"  # the device NAKs / rejects the block every time
    SLOW_POLL = "slow-poll"  # the device asks for long poll intervals


@dataclass(frozen=True)
class Fault:
    kind: FaultKind
    at: int | None = None  # the unit number it strikes at; None = the first chance
    once: bool = True  # a re-flash after the fault succeeds, as a re-plugged board would

    def __str__(self) -> str:
        return self.kind.value if self.at is None else f"{self.kind.value}@{self.at}"


def parse_faults(spec: str) -> tuple[Fault, ...]:
    """Parse ``"disconnect@12,stall"``; an unknown kind is a ValueError naming the known ones."""
    faults: list[Fault] = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, _, at = part.partition("@")
        try:
            kind = FaultKind(name)
        except ValueError:
            known = ", ".join(k.value for k in FaultKind)
            raise ValueError(f"unknown fault {name!r}; known: {known}") from None
        faults.append(Fault(kind, int(at, 0) if at else None))
    return tuple(faults)


class FaultPlan:
    """The faults one simulated device still has to inject; each fires once unless told otherwise."""

    def __init__(self, faults: tuple[Fault, ...] = ()) -> None:
        self._pending = list(faults)

    def take(self, kind: FaultKind, unit: int) -> Fault | None:
        """The fault of ``kind`` due at ``unit`` (or at any unit if it has none), consumed if one-shot."""
        for fault in self._pending:
            if fault.kind is kind and (fault.at is None or fault.at == unit):
                if fault.once:
                    self._pending.remove(fault)
                return fault
        return None

    def has(self, kind: FaultKind) -> bool:
        return any(f.kind is kind for f in self._pending)

    def add(self, fault: Fault) -> None:
        self._pending.append(fault)
