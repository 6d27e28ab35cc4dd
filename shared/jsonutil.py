"""Canonical JSON and hashing, shared by ingestion, exports and the search documents."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

import orjson


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no whitespace: the same facts always give the same bytes."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def json_depth(value: Any, limit: int) -> int:
    """Depth of nested containers, stopping as soon as it passes `limit`."""

    def walk(node: Any, depth: int) -> int:
        if depth > limit:
            return depth
        if isinstance(node, dict):
            children = node.values()
        elif isinstance(node, list):
            children = node
        else:
            return depth - 1
        deepest = depth
        for child in children:
            if isinstance(child, (dict, list)):
                deepest = max(deepest, walk(child, depth + 1))
                if deepest > limit:
                    break
        return deepest

    return walk(value, 1)


def iso(value: datetime | None) -> str | None:
    """A timestamp as the wire format writes it: ISO 8601, UTC as "Z"."""
    return value.isoformat().replace("+00:00", "Z") if value is not None else None
