"""Traceability on the bench: operators and their rights, PINs, the release floor (no silent downgrade)."""
