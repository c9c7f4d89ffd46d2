"""What discovery hands the line: a candidate per attached device, keyed by its physical port path."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from station.devices.base import Device, DeviceDescription


@dataclass(frozen=True)
class Candidate:
    """A device seen on a port. ``open`` connects to it (and may raise a DeviceError)."""

    description: DeviceDescription
    open: Callable[[], Device]

    @property
    def slot(self) -> str:
        return self.description.port_path


class Source(Protocol):
    """One place devices come from: USB, serial ports, or a simulated bench."""

    def scan(self) -> Sequence[Candidate]:
        """Everything attached now. Must return quickly (no device I/O) and never raise for one bad port."""
        ...

    def close(self) -> None: ...


def scan_all(sources: Sequence[Source]) -> dict[str, Candidate]:
    """Candidates from every source by slot; the first source to claim a slot keeps it."""
    seen: dict[str, Candidate] = {}
    for source in sources:
        for candidate in source.scan():
            seen.setdefault(candidate.slot, candidate)
    return seen
