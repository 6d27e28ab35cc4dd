"""Keyset cursors of the catalog's listings, newest first on (time, id), in the one cursor
encoding (shared/cursor.py). A case cursor cannot be replayed on groups, nor the reverse."""

from __future__ import annotations

from datetime import datetime

from shared.cursor import decode_cursor, encode_cursor
from shared.errors import BadUserInput, FieldError

CASES, GROUPS, EVENTS = "cases", "groups", "events"


def encode_keyset(kind: str, at: datetime, row_id: str) -> str:
    return encode_cursor(kind, [at.isoformat(), row_id])


def decode_keyset(kind: str, cursor: str) -> tuple[datetime, str]:
    values = decode_cursor(cursor, kind)
    try:
        at, row_id = values
        return datetime.fromisoformat(at), str(row_id)
    except (ValueError, TypeError):
        raise BadUserInput(
            "invalid cursor", [FieldError("after", "not a cursor this API issued")]
        ) from None
