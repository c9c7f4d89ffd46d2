"""What is attached now, keyed by physical port path (the slot); hotplug."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from station.discovery.base import Source


def all_sources(
    *,
    usb_backend: object | None = None,
    esp_slots: Collection[str] = (),
    esp_options: Mapping[str, Any] | None = None,
) -> list[Source]:
    """Every real source, USB first: a Particle board seen both on USB and as a serial port is
    flashed over DFU (the first source to claim a slot keeps it). Each keeps a vanished slot for
    ``DEFAULT_LINGER`` seconds, so a board re-enumerating after a reset is not taken for a new one.
    ``esp_slots``: serial slots the profile names for an ESP line, probed even behind a bridge
    whose USB IDs the family table does not know."""
    from station.discovery.linger import DEFAULT_LINGER
    from station.discovery.serial_ports import SerialPortSource
    from station.discovery.usb_dfu import UsbParticleSource

    return [
        UsbParticleSource(backend=usb_backend, linger=DEFAULT_LINGER),
        SerialPortSource(linger=DEFAULT_LINGER, esp_slots=esp_slots, esp_options=esp_options),
    ]
