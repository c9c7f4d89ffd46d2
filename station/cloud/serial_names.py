"""The console name of a device: the serial number scanned for it (Particle's convention), else the
name the ``[cloud] device_names`` mapping file gives it. The import batches still carry device IDs."""

from __future__ import annotations

from typing import Protocol

from station.cloud.groups import DEVICE_NAME, DeviceNames
from station.store import Registry


class NameSource(Protocol):
    def name_for(self, device_id: str) -> str | None: ...


class SerialNames:
    """Looks each device up in the registry when the sync places it, so boards scanned during a
    shift get their names from the same background sync."""

    def __init__(self, registry: Registry, fallback: DeviceNames | None = None) -> None:
        self._registry = registry
        self._fallback = fallback

    def name_for(self, device_id: str) -> str | None:
        serial = self._registry.trace.serial_of(device_id)
        # A serial the console cannot take as a name (it allows letters, digits, - and _) is not used.
        if serial is not None and DEVICE_NAME.fullmatch(serial):
            return serial
        return self._fallback.name_for(device_id) if self._fallback is not None else None

    def __len__(self) -> int:
        return 1  # truthy: there may be names to give (the worker only asks when it has a source)
