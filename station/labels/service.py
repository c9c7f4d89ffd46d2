"""Printing a unit's label: queued in the registry first (so nothing is lost), then sent; a failed
send leaves it queued for ``station label reprint``."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime

from station.labels.model import UnitLabel
from station.labels.preview import render_png
from station.labels.printer import LabelConfig, LabelPrinterError, send
from station.labels.zpl import render_zpl
from station.store import Registry
from station.store.trace import LabelRecord


@dataclass(frozen=True)
class LabelOutcome:
    label_id: int
    device_id: str
    ok: bool
    message: str


class LabelService:
    def __init__(self, registry: Registry, config: LabelConfig) -> None:
        self.registry = registry
        self.config = config

    def unit_label(
        self, device_id: str, *, product: str, firmware: str, station: str, when: float | None = None
    ) -> UnitLabel:
        day = datetime.fromtimestamp(time.time() if when is None else when).strftime("%Y-%m-%d")
        serial = self.registry.trace.serial_of(device_id)
        return UnitLabel(device_id, serial, product, firmware, day, station)

    def print_new(self, label: UnitLabel, *, attempt_id: int | None) -> LabelOutcome:
        label_id = self.registry.trace.queue_label(
            label.device_id,
            attempt_id=attempt_id,
            payload=label.payload(),
            fields=label.fields(),
            printer=self.config.printer,
        )
        return self._send(label_id, label)

    def reprint(self, record: LabelRecord) -> LabelOutcome:
        return self._send(record.id, UnitLabel.from_fields(record.fields))

    def _send(self, label_id: int, label: UnitLabel) -> LabelOutcome:
        if self.config.preview_dir is not None:
            self.config.preview_dir.mkdir(parents=True, exist_ok=True)
            (self.config.preview_dir / f"{label.device_id}.png").write_bytes(render_png(label))
        try:
            send(self.config.printer, render_zpl(label, self.config.template), timeout=self.config.timeout)
        except LabelPrinterError as exc:
            self.registry.trace.label_sent(label_id, ok=False, error=exc.one_line())
            return LabelOutcome(label_id, label.device_id, False, exc.one_line())
        self.registry.trace.label_sent(label_id, ok=True)
        return LabelOutcome(label_id, label.device_id, True, f"printed on {self.config.printer}")
