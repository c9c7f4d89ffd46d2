"""Candidates that can also be looked at without side effects, for listings such as `station devices`.

``Candidate.open`` prepares a device for flashing (a Particle board in normal mode is switched into
DFU mode); ``peek`` only connects, so listing the bench never changes what a board is doing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from station.devices.base import Device
from station.discovery.base import Candidate


@dataclass(frozen=True)
class PeekableCandidate(Candidate):
    """A candidate with a second way in: ``peek`` connects without switching modes."""

    peek: Callable[[], Device] | None = None


def peek_device(candidate: Candidate) -> Device:
    """Connect to ``candidate`` for identification only: its ``peek`` when it has one, else ``open``."""
    peek = getattr(candidate, "peek", None)
    return peek() if peek is not None else candidate.open()
