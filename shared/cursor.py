"""One opaque cursor encoding for every keyset page (cases, groups, search hits).

A cursor is the unpadded URL-safe base64 of the JSON `[kind, values]`: `kind` names what it
pages (a listing, or a search's sort), so one cannot be replayed where another is expected.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from shared.errors import BadUserInput, FieldError


def encode_cursor(kind: str, values: list[Any]) -> str:
    raw = json.dumps([kind, values], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, kind: str, field: str = "after") -> list[Any]:
    """The values of a cursor made for `kind`; BadUserInput naming `field` otherwise."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        made_for, values = json.loads(raw)
        if not isinstance(values, list):
            raise ValueError
    except (ValueError, binascii.Error, TypeError, UnicodeDecodeError):
        raise BadUserInput(
            "invalid cursor", [FieldError(field, "not a cursor this API issued")]
        ) from None
    if made_for != kind:
        raise BadUserInput(
            "invalid cursor", [FieldError(field, f"a cursor of {made_for!r}, not of {kind!r}")]
        )
    return values
