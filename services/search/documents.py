"""The search document: the catalog's flat dict, normalized once for both backends.

Empty strings become None and tags a sorted set, so "has a value" and facet counts mean the
same thing in OpenSearch and SQLite.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from services.search.fields import TEXT_FIELDS
from shared.vocabulary import SEVERITIES

KEYWORDS = (
    "id",
    "model",
    "model_version",
    "data_source",
    "failure_mode",
    "failure_mode_parent",
    "severity",
    "status",
    "team",
    "sensitivity",
    "group_id",
    "merged_into_id",
)
DATES = ("occurred_at", "received_at")
NUMBERS = ("confidence", "latency_ms")


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


def normalize(doc: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"id": str(doc["id"]), "revision": int(doc["revision"])}
    for name in (*TEXT_FIELDS, *KEYWORDS[1:]):
        out[name] = _text(doc.get(name))
    severity = out["severity"]
    out["severity_rank"] = SEVERITIES.index(severity) if severity in SEVERITIES else None
    out["sensitivity"] = out["sensitivity"] or "internal"
    out["tags"] = sorted({t for t in (_text(t) for t in doc.get("tags") or []) if t})
    env = doc.get("environment") or {}
    out["environment"] = {
        str(k): str(v) for k, v in env.items() if _text(k) and v is not None and str(v) != ""
    }
    for name in DATES:
        ms = to_epoch_ms(doc.get(name))
        out[name] = None if ms is None else iso_utc(ms)
    for name in NUMBERS:
        value = doc.get(name)
        out[name] = None if value is None else float(value)
    return out
