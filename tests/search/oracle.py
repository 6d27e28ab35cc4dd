"""A plain-Python model of what a search must return, to check both backends against.

Structured conditions are evaluated exactly; full text only as far as the planted documents
need (words found nowhere else), so the oracle never has to agree with a stemmer.
"""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from services.search.documents import normalize, to_epoch_ms
from services.search.fields import SCHEMA, fold
from services.search.query import And, Exists, MatchAll, Node, Not, Or, Prefix, Range, Term, Text
from services.search.request import Visibility


def prepare(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for d in docs:
        n = normalize(d)
        n["occurred_ms"] = to_epoch_ms(n["occurred_at"])
        n["received_ms"] = to_epoch_ms(n["received_at"])
        out.append(n)
    return out


def values_of(doc: dict[str, Any], field: str, any_case: bool = False) -> list[Any]:
    """The document's values of `field`; `any_case`: an env key matched in any case, as a
    query's is (facets name the key as stored)."""
    if field == "tags":
        return doc["tags"]
    if field == "env":
        return list(doc["environment"])
    if field.startswith("env."):
        key = field[4:]
        return [
            v
            for k, v in doc["environment"].items()
            if (fold(k) == fold(key) if any_case else k == key)
        ]
    if field in ("occurred_at", "received_at"):
        v = doc[field.replace("_at", "_ms")]
    else:
        v = doc.get(field)
    return [] if v is None else [v]


def _text_match(doc: dict[str, Any], node: Text) -> bool:
    fields = [node.field] if node.field else SCHEMA.text_fields
    words = node.value.lower().split()
    for f in fields:
        tokens = re.findall(r"\w+", (doc.get(f) or "").lower())
        if node.prefix:
            if any(t.startswith(words[0]) for t in tokens):
                return True
        elif node.phrase:
            if " ".join(words) in " ".join(tokens):
                return True
        elif any(t.startswith(words[0]) for t in tokens):
            return True
    return False


def matches(doc: dict[str, Any], node: Node) -> bool:
    if isinstance(node, MatchAll):
        return True
    if isinstance(node, Text):
        return _text_match(doc, node)
    if isinstance(node, And):
        return all(matches(doc, c) for c in node.children)
    if isinstance(node, Or):
        return any(matches(doc, c) for c in node.children)
    if isinstance(node, Not):
        return not matches(doc, node.child)
    if isinstance(node, Term):
        # Keywords match in any case (a closed set's values are spelt one way).
        wanted = {fold(v) for v in node.values}
        return any(fold(str(v)) in wanted for v in values_of(doc, node.field, True))
    if isinstance(node, Prefix):
        return any(fold(str(v)).startswith(node.value) for v in values_of(doc, node.field, True))
    if isinstance(node, Exists):
        return bool(values_of(doc, node.field, True))
    if isinstance(node, Range):
        vs = values_of(doc, node.field)
        if not vs:
            return False
        v = vs[0]
        return (
            (node.gte is None or v >= node.gte)
            and (node.gt is None or v > node.gt)
            and (node.lte is None or v <= node.lte)
            and (node.lt is None or v < node.lt)
        )
    raise TypeError(node)


def visible(doc: dict[str, Any], vis: Visibility) -> bool:
    if doc["sensitivity"] not in vis.sensitivities:
        return False
    return vis.team is None or doc["team"] is None or doc["team"] == vis.team


def selected(
    doc: dict[str, Any], selections: dict[str, tuple[str, ...]], skip: str | None = None
) -> bool:
    return all(matches(doc, Term(f, vs)) for f, vs in selections.items() if f != skip)


def search_ids(docs, vis, node, selections=None) -> set[str]:
    return {
        d["id"]
        for d in docs
        if visible(d, vis) and matches(d, node) and selected(d, selections or {})
    }


def facet(docs, vis, node, field, selections=None, size=20) -> list[tuple[str, int]]:
    counts: Counter[str] = Counter()
    for d in docs:
        if visible(d, vis) and matches(d, node) and selected(d, selections or {}, skip=field):
            counts.update(str(v) for v in values_of(d, field))
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:size]


def histogram_days(docs, vis, node) -> list[tuple[str, int]]:
    return _histogram(docs, vis, node, "%Y-%m-%d")


def histogram_months(docs, vis, node) -> list[tuple[str, int]]:
    return _histogram(docs, vis, node, "%Y-%m-01")


def _histogram(docs, vis, node, bucket: str) -> list[tuple[str, int]]:
    """Bucket starts (ISO, midnight UTC) by `bucket`, the strftime of a bucket's first day."""
    counts: Counter[str] = Counter()
    for d in docs:
        if visible(d, vis) and matches(d, node) and d["occurred_ms"] is not None:
            start = datetime.fromtimestamp(d["occurred_ms"] / 1000, UTC).strftime(bucket)
            counts[f"{start}T00:00:00.000Z"] += 1
    return sorted(counts.items())


def heatmap(docs, vis, node, x, y, size=20) -> list[tuple[str, str, int]]:
    rows = [d for d in docs if visible(d, vis) and matches(d, node)]
    xs = Counter(str(v) for d in rows for v in values_of(d, x))
    top = sorted(xs.items(), key=lambda kv: (-kv[1], kv[0]))[:size]
    out = []
    for xv, _ in top:
        ys = Counter(
            str(v) for d in rows if xv in map(str, values_of(d, x)) for v in values_of(d, y)
        )
        for yv, c in sorted(ys.items(), key=lambda kv: (-kv[1], kv[0]))[:size]:
            out.append((xv, yv, c))
    return out
