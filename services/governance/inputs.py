"""Checks shared by the governance inputs (redaction, retention, escalation schemas)."""

from __future__ import annotations


def no_nul(value: str) -> str:
    """Postgres stores no U+0000 and ingest refuses it (the catalog's NUL_MESSAGE): text
    holding one failed on Postgres naming no field, and SQLite stored it."""
    if "\x00" in value:
        raise ValueError("contains U+0000 (NUL), which cannot be stored")
    return value
