"""The registry: SQLite with devices, attempts (every transition committed) and the sync outbox."""

from station.store.errors import (
    AttemptStateError,
    InvalidRecord,
    RegistryCorrupt,
    RegistryError,
    RegistryMissing,
    RegistryUnavailable,
)
from station.store.export import ExportFormat, render, write_export
from station.store.models import (
    AttemptRecord,
    AttemptResult,
    DeviceRecord,
    ImageDigest,
    LineCount,
    PhaseTiming,
    ReasonCount,
    RunContext,
    Slot,
    Stats,
)
from station.store.outbox import Outbox, OutboxEntry, OutboxState
from station.store.paths import DB_ENV, default_db_path, resolve_db_path
from station.store.registry import Registry

__all__ = [
    "DB_ENV",
    "AttemptRecord",
    "AttemptResult",
    "AttemptStateError",
    "DeviceRecord",
    "ExportFormat",
    "ImageDigest",
    "InvalidRecord",
    "LineCount",
    "Outbox",
    "OutboxEntry",
    "OutboxState",
    "PhaseTiming",
    "ReasonCount",
    "Registry",
    "RegistryCorrupt",
    "RegistryError",
    "RegistryMissing",
    "RegistryUnavailable",
    "RunContext",
    "Slot",
    "Stats",
    "default_db_path",
    "render",
    "resolve_db_path",
    "write_export",
]
