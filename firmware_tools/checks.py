"""Named checks with verdicts, shared by every format's validate and by bundle verification."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Check:
    """One named check: ``ok`` with the reason it passed or failed.

    ``ok`` is None when the check does not apply to this input (reported, never counted as failed).
    """

    name: str
    ok: bool | None
    reason: str

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "ok": self.ok, "reason": self.reason}


@dataclass(frozen=True)
class Expectations:
    """What the caller expects an image to be; ``None`` means "not asked"."""

    platform: int | None = None
    product_id: int | None = None
    product_version: int | None = None
    chip: str | None = None
    version: str | None = None


@dataclass(frozen=True)
class ValidationReport:
    """Every check run on one input."""

    checks: tuple[Check, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return all(c.ok is not False for c in self.checks)

    @property
    def failed(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if c.ok is False)

    def to_json(self) -> list[dict[str, object]]:
        return [c.to_json() for c in self.checks]
