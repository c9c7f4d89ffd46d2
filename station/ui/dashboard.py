"""The technician's screen: a tile per slot, readable from a metre away, and the line's totals.

Events arrive from worker threads into a queue; the app drains it on a timer, so a burst of
progress never blocks a worker and the screen never shows a half-applied event.
"""

from __future__ import annotations

import queue
from collections.abc import Callable
from dataclasses import dataclass

from textual import events as textual_events
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Vertical
from textual.widgets import Footer, Input, ProgressBar, Static

from station.line.events import Event
from station.ui.board import Board, SlotView, TileState

REFRESH_SECONDS = 0.1


@dataclass(frozen=True)
class DashboardInfo:
    """What the header says about the run."""

    product: str
    version: str
    bundle: str
    station_id: str
    operator: str | None = None


class SlotTile(Vertical, can_focus=True):
    """One slot: label, device, phase with a progress bar, and a big PASS / FAIL."""

    DEFAULT_CSS = """
    SlotTile { border: heavy $panel-lighten-2; height: 12; padding: 0 1; }
    SlotTile:focus { border: heavy $accent; }
    SlotTile.pass { background: $success-darken-1; }
    SlotTile.fail { background: $error-darken-1; }
    SlotTile.empty { background: $panel-darken-2; color: $text-muted; }
    SlotTile .label { text-style: bold; }
    SlotTile .verdict { text-style: bold; content-align: center middle; height: 3; }
    """

    def __init__(self, view: SlotView) -> None:
        # The state's colour is set now, not on mount, so the tile never shows a stale colour.
        super().__init__(id=_tile_id(view.slot), classes=_STATE_CLASS.get(view.state, ""))
        self.slot = view.slot
        self._view = view

    def compose(self) -> ComposeResult:
        yield Static(classes="label")
        yield Static(classes="device")
        yield Static(classes="phase")
        yield ProgressBar(total=100, show_eta=False)
        yield Static(classes="verdict")

    def on_mount(self) -> None:
        self.show(self._view)

    def show(self, view: SlotView) -> None:
        self._view = view
        for state, name in _STATE_CLASS.items():
            self.set_class(view.state is state, name)
        removed = "" if view.attached else "  [b]removed[/b]"
        self.query_one(".label", Static).update(f"{view.label}  [dim]{view.slot}[/dim]{removed}")
        device = view.device_id or "identifying..."
        if view.platform:
            device += f"  {view.platform}"
        self.query_one(".device", Static).update(device)
        finished = view.state in (TileState.PASS, TileState.FAIL) and view.seconds is not None
        self.query_one(".phase", Static).update(f"done in {view.seconds:.1f} s" if finished else view.phase or "")
        bar = self.query_one(ProgressBar)
        bar.update(total=100, progress=100 if view.state is TileState.PASS else round(view.fraction * 100))
        verdict = {
            TileState.PASS: "PASS",
            TileState.FAIL: f"FAIL  {view.reason}\n{view.message or ''}",
            TileState.WORKING: "working",
            TileState.EMPTY: "empty",
        }[view.state]
        if view.awaiting_scan:
            verdict = SCAN_PROMPT_TEXT
        self.query_one(".verdict", Static).update(verdict)


_STATE_CLASS = {TileState.PASS: "pass", TileState.FAIL: "fail", TileState.EMPTY: "empty"}

# -- serial-number scan (profile scan = "required"): a scanner types the code and Enter -----------
SCAN_PROMPT_TEXT = "scan the unit's label"
ScanSubmit = Callable[[str, str | None], tuple[str, str]]  # (code, slot or None) -> (slot, serial)


def _tile_id(slot: str) -> str:
    return "slot-" + "".join(c if c.isalnum() else "_" for c in slot)


class Dashboard(App[None]):
    """Full-screen live view of the line; `r` retries the selected slot, `q` quits when jobs end."""

    TITLE = "benchflash station"
    CSS = """
    #summary { height: 3; background: $boost; padding: 0 1; text-style: bold; }
    #tiles { grid-size: 4; grid-rows: 12; grid-gutter: 1; padding: 1; height: auto; }
    """
    BINDINGS = [
        Binding("r", "retry", "Retry slot"),
        Binding("q", "quit_line", "Quit (running jobs finish first)"),
        Binding("escape", "leave_scan", "Leave the scan field", show=False),
    ]

    def __init__(
        self,
        info: DashboardInfo,
        *,
        retry: Callable[[str], bool] = lambda slot: False,
        request_stop: Callable[[], None] = lambda: None,
        is_idle: Callable[[], bool] = lambda: True,
        events: queue.SimpleQueue[Event] | None = None,
        submit_scan: ScanSubmit | None = None,
    ) -> None:
        super().__init__()
        self._submit_scan = submit_scan
        self._selected_slot: str | None = None  # the tile last selected: a scan goes there if it waits
        self.info = info
        self.board = Board()
        # The line may be started before the app, writing into this queue from the first event.
        self.events: queue.SimpleQueue[Event] = events if events is not None else queue.SimpleQueue()
        self._retry = retry
        self._request_stop = request_stop
        self._is_idle = is_idle
        self._stopping = False

    # Called from worker threads.
    def sink(self, event: Event) -> None:
        self.events.put(event)

    def compose(self) -> ComposeResult:
        yield Static(id="summary")
        yield Grid(id="tiles")
        if self._submit_scan is not None:
            yield Input(placeholder=f"{SCAN_PROMPT_TEXT} (the scanner types here)", id="scan")
        yield Footer()

    def on_mount(self) -> None:
        self._render_summary()
        self.set_interval(REFRESH_SECONDS, self._drain)

    def _drain(self) -> None:
        changed: set[str] = set()
        while True:
            try:
                event = self.events.get_nowait()
            except queue.Empty:
                break
            self.board.apply(event)
            if event.slot:
                changed.add(event.slot)
        grid = self.query_one("#tiles", Grid)
        for slot in changed:
            view = self.board.slot(slot)
            if view is None:
                continue
            tiles = grid.query(f"#{_tile_id(slot)}")
            if tiles:
                tiles.first(SlotTile).show(view)
            else:
                grid.mount(SlotTile(view))
            if view.awaiting_scan:
                self._focus_scan()
        self._render_summary()
        if self._stopping and self._is_idle() and self.events.empty():
            self.exit()

    def _render_summary(self) -> None:
        t = self.board.totals
        i = self.info
        yield_text = f"{t.yield_percent:.1f}%" if t.yield_percent is not None else "-"
        rate = f"{t.per_hour:.0f}/h" if t.per_hour is not None else "-"
        backlog = str(t.sync_backlog) if t.sync_backlog is not None else "off"
        line1 = f"product {i.product}  v{i.version}  bundle {i.bundle}  station {i.station_id}"
        if i.operator:
            line1 += f"  operator {i.operator}"
        line2 = (
            f"PASS {t.passed}   FAIL {t.failed}   running {t.running}   yield {yield_text}   "
            f"{rate}   sync backlog {backlog}"
        )
        if self._stopping:
            line2 += "   — finishing running jobs, then quitting"
        self.query_one("#summary", Static).update(f"{line1}\n{line2}")

    def action_retry(self) -> None:
        focused = self.focused
        if isinstance(focused, SlotTile):
            if self._retry(focused.slot):
                self.notify(f"retrying {focused.slot}")
            else:
                self.notify("only a failed board that is still plugged in can be retried", severity="warning")

    def _focus_scan(self) -> None:
        """A board waits for its label: the scanner's keystrokes must land in the scan field."""
        for field in self.query("#scan"):
            if self.focused is not field:
                field.focus()

    def action_leave_scan(self) -> None:
        """Escape: back to the tiles, where r and q work (the scan field takes every key it gets)."""
        tiles = list(self.query(SlotTile))
        if tiles:
            tiles[0].focus()
        else:
            self.set_focus(None)

    def on_descendant_focus(self, event: textual_events.DescendantFocus) -> None:
        if isinstance(event.widget, SlotTile):
            self._selected_slot = event.widget.slot

    def on_input_submitted(self, event: Input.Submitted) -> None:
        """A scan: to the selected tile if it waits for one, else to the board that began waiting last."""
        if event.input.id != "scan" or self._submit_scan is None:
            return
        code = event.value
        event.input.value = ""
        if not code.strip():
            return
        selected = self._selected_slot
        view = self.board.slot(selected) if selected is not None else None
        slot = selected if view is not None and view.awaiting_scan else None
        try:
            target, serial = self._submit_scan(code, slot)
        except Exception as exc:  # a refused scan is news for the technician, never a crash
            self.notify(getattr(exc, "message", str(exc)), severity="warning")
            return
        self.notify(f"{target}: serial {serial}")

    def action_quit_line(self) -> None:
        if not self._stopping:
            self._stopping = True
            self._request_stop()
            self._render_summary()
