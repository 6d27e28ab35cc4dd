"""Ids: time-ordered UUIDv7 for records (keyset pages follow time), and name-derived UUIDv8
(RFC 9562) where every writer must agree on an id without asking the database."""

from __future__ import annotations

import hashlib
import os
import time

_VERSION = 0x7 << 76
_VARIANT = 0x2 << 62


def new_id() -> str:
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    # 48-bit time, version 7, 12 + 62 random bits with the RFC 4122 variant.
    value = (
        (ms << 80) | _VERSION | ((rand >> 62) & 0xFFF) << 64 | _VARIANT | (rand & ((1 << 62) - 1))
    )
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def stable_id(name: str) -> str:
    """The same UUID for the same name, on every process (SHA-256 based, version 8)."""
    value = int.from_bytes(hashlib.sha256(name.encode()).digest()[:16], "big")
    value = (value & ~(0xF << 76)) | (0x8 << 76)
    value = (value & ~(0x3 << 62)) | _VARIANT
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
