"""Particle Cloud API client and the sync worker that drains the outbox."""
