"""Persistence: PostgreSQL is the source of truth, Redis holds hot lookups."""
