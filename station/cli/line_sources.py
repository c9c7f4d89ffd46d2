"""Where `station run` finds boards: the real USB and serial buses, or a simulated bench."""

from __future__ import annotations

from station.discovery.base import Source


def open_sources(simulate: str | None, *, timing: bool = True) -> list[Source]:
    """Simulated devices only when ``simulate`` is given (``argon-dfu:2,esp32:1``), else the real buses."""
    if simulate:
        from station.demo.simulated_bench import bench_from_spec

        return [bench_from_spec(simulate, timing=timing)]
    from station.discovery import all_sources

    return list(all_sources())
