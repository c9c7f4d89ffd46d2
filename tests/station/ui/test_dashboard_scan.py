"""The dashboard with scan = "required": a waiting board's tile says "scan the unit's label", and
what the scanner types (code + Enter) goes to the selected tile if it waits, else to the board
that began waiting last."""

from __future__ import annotations

import asyncio

from station.line.events import Attached, Identified, Scanned, ScanWanted
from station.ui.dashboard import Dashboard, DashboardInfo, SlotTile

DEV1, DEV2 = "e00fce68" + "1" * 16, "e00fce68" + "2" * 16


def test_the_tile_asks_for_a_scan_and_the_scanner_types_into_it() -> None:
    offered: list[tuple[str, str | None]] = []

    def submit(code: str, slot: str | None) -> tuple[str, str]:
        offered.append((code, slot))
        return slot or "1-1.2", code.split()[0]

    async def scenario() -> None:
        app = Dashboard(
            DashboardInfo(product="1234", version="7", bundle="b.fwpkg", station_id="line-1"), submit_scan=submit
        )
        async with app.run_test(size=(160, 40)) as pilot:
            for n, (slot, dev) in enumerate((("1-1.1", DEV1), ("1-1.2", DEV2))):
                label = f"A{n + 1}"
                app.sink(Attached(time=1.0, slot=slot, label=label, family="particle-dfu", mode="dfu"))
                app.sink(Identified(time=2.0, slot=slot, label=label, device_id=dev, platform="argon"))
                app.sink(ScanWanted(time=3.0, slot=slot, label=label, device_id=dev))
            for _ in range(100):
                await pilot.pause(0.05)
                tiles = {t.slot: t for t in app.query(SlotTile)}
                if len(tiles) == 2 and all(
                    "scan the unit's label" in str(t.query_one(".verdict").render()) for t in tiles.values()
                ):
                    break
            else:
                raise AssertionError("the tiles never asked for a scan")
            assert app.focused is not None and app.focused.id == "scan"  # the scanner's keys land there
            await pilot.press(*"SN-0002 SECRET", "enter")
            assert offered == [("SN-0002 SECRET", None)]  # the runner picks the board waiting last

            tiles["1-1.1"].focus()
            await pilot.pause(0.05)
            app.query_one("#scan").focus()
            await pilot.press(*"SN-0001", "enter")
            assert offered[-1] == ("SN-0001", "1-1.1")  # the selected tile waits: it gets the scan

            app.sink(Scanned(time=4.0, slot="1-1.1", label="A1", device_id=DEV1, serial="SN-0001"))
            for _ in range(100):
                await pilot.pause(0.05)
                if "serial SN-0001" in str(tiles["1-1.1"].query_one(".phase").render()):
                    break
            else:
                raise AssertionError("the tile never showed the serial number")
            assert "scan the unit's label" not in str(tiles["1-1.1"].query_one(".verdict").render())
            await pilot.press("escape")  # out of the scan field: the keys are the dashboard's again
            assert isinstance(app.focused, SlotTile)

    asyncio.run(scenario())
