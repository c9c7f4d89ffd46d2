"""The dashboard driven with Textual's pilot: tiles show PASS and FAIL, retry and quit keys work."""

from __future__ import annotations

import asyncio

from station.line.events import Attached, Failed, Identified, LineStatus, Passed, ProgressEvent
from station.ui.dashboard import Dashboard, DashboardInfo, SlotTile


def _feed(app: Dashboard) -> None:
    t = 1000.0
    app.sink(Attached(time=t, slot="1-1.1", label="A1", family="particle-dfu", mode="dfu"))
    app.sink(Attached(time=t, slot="1-1.2", label="A2", family="esp", mode="bootloader"))
    app.sink(Identified(time=t + 1, slot="1-1.1", label="A1", device_id="e00fce68" + "0" * 16, platform="argon"))
    app.sink(ProgressEvent(time=t + 2, slot="1-1.1", label="A1", device_id=None, phase="write", done=50, total=100))
    app.sink(Passed(time=t + 3, slot="1-1.1", label="A1", device_id="e00fce68" + "0" * 16, seconds=3.0))
    app.sink(
        Failed(
            time=t + 4,
            slot="1-1.2",
            label="A2",
            device_id="aabbccddeeff",
            reason="wrong-target",
            message="device is ESP32-C3, the bundle is for ESP32",
            seconds=0.5,
        )
    )
    app.sink(LineStatus(time=t + 5, slot="", label="", passed=1, failed=1, running=0, sync_backlog=4))


def test_tiles_show_pass_and_fail_and_summary() -> None:
    retried: list[str] = []
    stopped: list[bool] = []

    async def scenario() -> None:
        app = Dashboard(
            DashboardInfo(product="1234", version="7", bundle="acme-v7.fwpkg", station_id="line-1"),
            retry=lambda slot: retried.append(slot) or True,
            request_stop=lambda: stopped.append(True),
            is_idle=lambda: True,
        )
        async with app.run_test(size=(160, 40)) as pilot:
            _feed(app)
            # The screen drains its queue on a timer: wait for the last event to land (bounded).
            for _ in range(200):
                await pilot.pause(0.05)
                shown = {t.slot: t for t in app.query(SlotTile)}
                if "FAIL 1" in str(app.query_one("#summary").render()) and len(shown) == 2:
                    found = [t.query(".verdict") for t in shown.values()]
                    verdicts = [str(v.first().render()) for v in found if v]
                    if len(verdicts) == 2 and all(verdicts):
                        break
            tiles = {tile.slot: tile for tile in app.query(SlotTile)}
            assert set(tiles) == {"1-1.1", "1-1.2"}
            assert tiles["1-1.1"].has_class("pass")
            assert tiles["1-1.2"].has_class("fail")
            verdict = str(tiles["1-1.2"].query_one(".verdict").render())
            assert "FAIL" in verdict and "wrong-target" in verdict
            summary = str(app.query_one("#summary").render())
            assert "PASS 1" in summary and "FAIL 1" in summary and "yield 50.0%" in summary
            assert "sync backlog 4" in summary

            tiles["1-1.2"].focus()
            await pilot.press("r")
            assert retried == ["1-1.2"]
            await pilot.press("q")
            for _ in range(100):
                if stopped:
                    break
                await pilot.pause(0.05)
            assert stopped == [True]
        assert app.return_code in (0, None)

    asyncio.run(scenario())
