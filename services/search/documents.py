"""The search document: the catalog's flat dict, normalized once for both backends.

Derived from the field table: empty strings become None, keyword lists a sorted set, dates
ISO UTC, numbers floats, so "has a value" and facet counts mean the same thing in OpenSearch
and SQLite.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from services.search.fields import SCHEMA, DocumentSchema, Kind


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def to_epoch_ms(value: Any) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, int | float):
        return int(value)
    if isinstance(value, datetime):
        t = value
    else:
        t = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    t = t if t.tzinfo else t.replace(tzinfo=UTC)
    return int(t.timestamp() * 1000)


def iso_utc(ms: int) -> str:
    # isoformat, not strftime: glibc's %Y does not pad years before 1000 ('273-09-29'), which
    # fromisoformat then refuses, and one such case stopped the indexer for good.
    t = datetime.fromtimestamp(ms / 1000, UTC)
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _keywords(values: Any) -> list[str]:
    if isinstance(values, str):
        values = [values]
    return sorted({t for t in (_text(v) for v in values or ()) if t})


def _map(value: Any) -> dict[str, str]:
    return {
        str(k): str(v)
        for k, v in (value or {}).items()
        if _text(k) and v is not None and str(v) != ""
    }


def _date(value: Any) -> str | None:
    ms = to_epoch_ms(value)
    return None if ms is None else iso_utc(ms)


def _number(value: Any) -> float | None:
    return None if value is None or value == "" else float(value)


def normalize(doc: dict[str, Any], schema: DocumentSchema = SCHEMA) -> dict[str, Any]:
    out: dict[str, Any] = {"id": str(doc["id"]), "revision": int(doc["revision"])}
    for f in schema.fields:
        if f.name == "id":
            continue
        value = doc.get(f.name)
        if f.kind is Kind.TEXT:
            out[f.name] = _text(value)
        elif f.kind is Kind.KEYWORD and f.many:
            out[f.name] = _keywords(value)
        elif f.kind is Kind.KEYWORD:
            out[f.name] = _text(value) or f.default
            if f.rank:
                v = out[f.name]
                out[f.rank] = f.values.index(v) if v in f.values else None
        elif f.kind is Kind.MAP:
            out[f.name] = _map(value)
        elif f.kind is Kind.DATE:
            out[f.name] = _date(value)
        else:
            out[f.name] = _number(value)
    return out
