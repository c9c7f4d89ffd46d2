"""The registry's errors: one line saying what failed with the database file and what to do."""

from __future__ import annotations

from station.errors import Reason, StationError


class RegistryError(StationError):
    """Something went wrong reading or writing the registry database."""

    reason = Reason.INTERNAL


class RegistryUnavailable(RegistryError):
    """The registry file cannot be opened or created where it was asked for (usage: exit 2)."""

    exit_code = 2
    reason = Reason.PERMISSION


class RegistryMissing(RegistryError):
    """A report was asked of a registry file that does not exist (usage: exit 2)."""

    exit_code = 2
    reason = Reason.NOT_FOUND


class RegistryCorrupt(RegistryError):
    """The file is not a registry this station can read (not SQLite, or a newer schema)."""

    exit_code = 2
    reason = Reason.BAD_INPUT


class AttemptStateError(RegistryError):
    """A transition the attempt cannot take: unknown id, finished twice, PASS without a device."""


class InvalidRecord(RegistryError):
    """A value handed to the registry that it must not store (an ID with spaces, an empty station)."""

    exit_code = 2
    reason = Reason.BAD_INPUT
