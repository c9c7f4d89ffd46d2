"""Where `station run` finds boards: the real USB and serial buses, or a simulated bench."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from station.discovery.base import Source


def open_sources(
    simulate: str | None,
    *,
    timing: bool = True,
    esp_slots: Collection[str] = (),
    esp_options: Mapping[str, Any] | None = None,
) -> list[Source]:
    """Simulated devices only when ``simulate`` is given (``argon-dfu:2,esp32:1``), else the real buses
    (``esp_slots``: the profile's slots of an ESP line, see ``station.discovery.all_sources``).
    ``esp_options`` go to every ESP board's device (the profile's baud, connect attempts, the chip)."""
    if simulate:
        from station.demo.simulated_bench import bench_from_spec

        return [bench_from_spec(simulate, timing=timing, esp_options=esp_options)]
    from station.discovery import all_sources

    return list(all_sources(esp_slots=esp_slots, esp_options=esp_options))
