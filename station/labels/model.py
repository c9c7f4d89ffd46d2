"""One unit's label: its fields as text, and the payload its QR code carries."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

# The QR payload: one line, fixed keys in a fixed order, so a reader (or a person) can parse it.
PAYLOAD_KEYS = ("DEV", "SN", "PRD", "FW", "DATE", "STN")


@dataclass(frozen=True)
class UnitLabel:
    device_id: str
    serial: str | None
    product: str
    firmware: str
    date: str  # YYYY-MM-DD, the day the board passed
    station: str

    def fields(self) -> dict[str, str]:
        return {
            "device_id": self.device_id,
            "serial": self.serial or "",
            "product": self.product,
            "firmware": self.firmware,
            "date": self.date,
            "station": self.station,
        }

    def payload(self) -> str:
        values = (self.device_id, self.serial or "", self.product, self.firmware, self.date, self.station)
        # ';' and '=' separate the fields, so they are taken out of the values (printable text stays).
        clean = [v.replace(";", ",").replace("=", "-").replace("\n", " ") for v in values]
        return ";".join(f"{k}={v}" for k, v in zip(PAYLOAD_KEYS, clean, strict=True))

    @classmethod
    def from_fields(cls, fields: Mapping[str, str]) -> UnitLabel:
        return cls(
            device_id=fields["device_id"],
            serial=fields.get("serial") or None,
            product=fields["product"],
            firmware=fields["firmware"],
            date=fields["date"],
            station=fields["station"],
        )


def parse_payload(text: str) -> dict[str, str]:
    """The payload's fields by key (for readers and tests)."""
    return dict(part.split("=", 1) for part in text.split(";"))
