"""The factory bench: flash, verify and record every board plugged in, then sync the records to the cloud."""

from station.errors import StationError

__all__ = ["StationError"]
