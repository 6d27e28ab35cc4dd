"""Opaque keyset cursors over (occurred_at, id)."""

from __future__ import annotations

import base64
from datetime import datetime

from shared.errors import BadUserInput, FieldError


def encode_cursor(at: datetime, case_id: str) -> str:
    return base64.urlsafe_b64encode(f"{at.isoformat()}|{case_id}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        at, case_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|", 1)
        return datetime.fromisoformat(at), case_id
    except (ValueError, UnicodeDecodeError):
        raise BadUserInput(
            "invalid cursor", [FieldError("after", "not a cursor this API issued")]
        ) from None
