"""The registry: SQLite with devices, attempts (every transition committed) and the sync outbox."""
