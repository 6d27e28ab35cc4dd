"""What a search asks for and what it answers, independent of the backend."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict

from services.search.fields import (
    HISTOGRAM_INTERVALS,
    SENSITIVITIES,
    SEVERITIES,
    SORTS,
    facet_field,
    facet_names,
)
from services.search.query import Node
from shared.errors import BadUserInput, FieldError
from shared.visibility import Visibility

MAX_FIRST = 500
MAX_FACET_SIZE = 100
# Counts are exact up to here, then reported as a lower bound (OpenSearch track_total_hits).
TOTAL_EXACT_UP_TO = 10_000


class SearchFilter(BaseModel):
    """Facet selections: values OR-ed within a field, AND-ed across fields.

    Unlike the same condition written in the query, a field's own selection does not narrow
    that field's facet counts (multi-select faceting), so a UI can show the other choices.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: list[str] | None = None
    model_version: list[str] | None = None
    data_source: list[str] | None = None
    failure_mode: list[str] | None = None
    failure_mode_parent: list[str] | None = None
    severity: list[str] | None = None
    status: list[str] | None = None
    team: list[str] | None = None
    tags: list[str] | None = None
    sensitivity: list[str] | None = None
    env: dict[str, list[str]] | None = None

    def selections(self) -> dict[str, tuple[str, ...]]:
        out: dict[str, tuple[str, ...]] = {}
        for name, values in self.model_dump(exclude={"env"}, exclude_none=True).items():
            if values:
                out[name] = tuple(values)
        for key, values in (self.env or {}).items():
            if values:
                out[f"env.{key}"] = tuple(values)
        for bad in set(out.get("severity", ())) - set(SEVERITIES):
            raise BadUserInput(
                "invalid filter",
                [FieldError("filter.severity", f"'{bad}' is not one of {', '.join(SEVERITIES)}")],
            )
        for bad in set(out.get("sensitivity", ())) - set(SENSITIVITIES):
            raise BadUserInput(
                "invalid filter",
                [
                    FieldError(
                        "filter.sensitivity", f"'{bad}' is not one of {', '.join(SENSITIVITIES)}"
                    )
                ],
            )
        return out


@dataclass(frozen=True, slots=True)
class Heatmap:
    x: str
    y: str
    size: int = 20


@dataclass(frozen=True, slots=True)
class SearchRequest:
    visibility: Visibility  # required: there is no search without a caller's view
    query: Node
    selections: dict[str, tuple[str, ...]] = field(default_factory=dict)
    facets: tuple[str, ...] = ()
    facet_size: int = 20
    first: int = 20
    after: tuple[Any, ...] | None = None
    sort: str = "relevance"
    histogram: str | None = None
    heatmap: Heatmap | None = None
    highlight: bool = True


@dataclass(slots=True)
class Hit:
    id: str
    score: float | None
    highlights: dict[str, list[str]]
    sort_values: tuple[Any, ...] = ()


@dataclass(slots=True)
class Bucket:
    value: str
    count: int


@dataclass(slots=True)
class HeatmapCell:
    x: str
    y: str
    count: int


@dataclass(slots=True)
class SearchResult:
    hits: list[Hit]
    total: int
    total_is_lower_bound: bool
    facets: dict[str, list[Bucket]]
    histogram: list[Bucket] = field(default_factory=list)
    heatmap: list[HeatmapCell] = field(default_factory=list)
    next_cursor: str | None = None

    def as_json(self) -> dict[str, Any]:
        """The REST shape: the same names as GraphQL's Query.search."""
        return {
            "total": self.total,
            "totalIsLowerBound": self.total_is_lower_bound,
            "hits": [
                {
                    "id": h.id,
                    "score": h.score,
                    "highlights": [{"field": f, "snippets": s} for f, s in h.highlights.items()],
                }
                for h in self.hits
            ],
            "facets": [
                {"field": name, "buckets": [{"value": b.value, "count": b.count} for b in bs]}
                for name, bs in self.facets.items()
            ],
            "histogram": [{"value": b.value, "count": b.count} for b in self.histogram],
            "heatmap": [{"x": c.x, "y": c.y, "count": c.count} for c in self.heatmap],
            "pageInfo": {
                "hasNextPage": self.next_cursor is not None,
                "endCursor": self.next_cursor,
            },
        }


# ---- validation of the request's knobs ------------------------------------------------------


def _bad(path: str, message: str) -> BadUserInput:
    return BadUserInput(f"invalid search request: {path}: {message}", [FieldError(path, message)])


def check_facets(names: list[str]) -> tuple[str, ...]:
    out: list[str] = []
    for name in names:
        canonical = facet_field(name)
        if canonical is None:
            raise _bad(
                "facets", f"'{name}' is not a facet; valid facets: " + ", ".join(facet_names())
            )
        if canonical not in out:
            out.append(canonical)
    return tuple(out)


def check_sort(sort: str) -> str:
    if sort not in SORTS:
        raise _bad("sort", f"'{sort}' is not a sort; valid sorts: {', '.join(SORTS)}")
    return sort


def check_first(first: int) -> int:
    if not 1 <= first <= MAX_FIRST:
        raise _bad("first", f"must be between 1 and {MAX_FIRST} (the page size limit)")
    return first


def check_histogram(interval: str | None) -> str | None:
    if interval is not None and interval not in HISTOGRAM_INTERVALS:
        raise _bad(
            "histogram",
            f"'{interval}' is not an interval; valid: " + ", ".join(HISTOGRAM_INTERVALS),
        )
    return interval


def check_heatmap(pair: tuple[str, str] | list[str] | None) -> Heatmap | None:
    if not pair:
        return None
    if len(pair) != 2:
        raise _bad("heatmap", "expected two facet fields, for example failure_mode,model_version")
    x, y = check_facets([pair[0]]), check_facets([pair[1]])
    if "env" in (x[0], y[0]):
        raise _bad("heatmap", "'env' lists keys; use env.<key> in a heatmap")
    return Heatmap(x[0], y[0])


# ---- cursors --------------------------------------------------------------------------------


def encode_cursor(sort: str, values: tuple[Any, ...]) -> str:
    raw = json.dumps([sort, list(values)], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, sort: str) -> tuple[Any, ...]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        cursor_sort, values = json.loads(raw)
        if not isinstance(values, list):
            raise ValueError
    except (ValueError, binascii.Error, TypeError):
        raise _bad("after", "not a cursor returned by this search") from None
    if cursor_sort != sort:
        raise _bad("after", f"cursor was made for sort '{cursor_sort}', not '{sort}'")
    return tuple(values)
