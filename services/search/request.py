"""What a search asks for and what it answers, independent of the backend."""

from __future__ import annotations

import base64
import binascii
import json
import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from services.search.fields import HISTOGRAM_INTERVALS, SCHEMA, DocumentSchema, Kind, fold
from services.search.query import Node
from shared.errors import BadUserInput, FieldError, validation_errors
from shared.visibility import Visibility

MAX_FIRST = 500
MAX_FACET_SIZE = 100
# Counts are exact up to here, then reported as a lower bound (OpenSearch track_total_hits).
TOTAL_EXACT_UP_TO = 10_000


class FilterBase(BaseModel):
    """Facet selections: values OR-ed within a field, AND-ed across fields.

    Unlike the same condition written in the query, a field's own selection does not narrow
    that field's facet counts (multi-select faceting), so a UI can show the other choices.
    The fields are the table's facetable ones (filter_model derives them).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    document: ClassVar[DocumentSchema] = SCHEMA

    @classmethod
    def read(cls, raw: Any) -> FilterBase:
        """The filter from its JSON (REST's `filter=`, GraphQL's `filter:`), refused naming
        `filter.<field>` as both APIs call it."""
        if not isinstance(raw, dict):
            example = 'a JSON object of selections, e.g. {"severity": ["S0"]}'
            raise BadUserInput("invalid filter", [FieldError("filter", f"expected {example}")])
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            raise BadUserInput(
                "invalid filter",
                validation_errors(exc, "filter"),
            ) from None

    def selections(self) -> dict[str, tuple[str, ...]]:
        schema = self.document
        out: dict[str, tuple[str, ...]] = {}
        for name, values in self.model_dump(exclude_none=True).items():
            field = schema.by_name[name]
            if field.kind is Kind.MAP:
                for key, vs in values.items():
                    if vs:
                        out[f"{schema.map_prefix}.{key}"] = tuple(fold(v) for v in vs)
                continue
            if not values:
                continue
            # As in the query: a closed set's values in any case, other values folded.
            matched = [field.match_value(v) for v in values]
            for bad, got in zip(values, matched, strict=True):
                if got is None:
                    message = f"'{bad}' is not one of {', '.join(field.values)}"
                    raise BadUserInput("invalid filter", [FieldError(f"filter.{name}", message)])
            out[name] = tuple(dict.fromkeys(matched))  # type: ignore[arg-type]
        return out


@lru_cache
def filter_model(schema: DocumentSchema) -> type[FilterBase]:
    """The filter type of `schema`: a list of values per facetable field, and per map key."""
    fields: dict[str, Any] = {f.name: (list[str] | None, None) for f in schema.fields if f.facet}
    if schema.map is not None:
        fields[schema.map_prefix] = (dict[str, list[str]] | None, None)
    model = create_model("SearchFilter", __base__=FilterBase, **fields)
    model.document = schema
    return model


SearchFilter = filter_model(SCHEMA)


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
    """What a backend answers: hits carry their raw sort values, and `has_more` says whether
    a page follows the last hit."""

    hits: list[Hit]
    total: int
    total_is_lower_bound: bool
    facets: dict[str, list[Bucket]]
    histogram: list[Bucket] = field(default_factory=list)
    heatmap: list[HeatmapCell] = field(default_factory=list)
    has_more: bool = False


@dataclass(slots=True)
class Suggestion:
    """A keyword value asked for that no visible case has, and the closest ones that exist."""

    field: str
    value: str
    closest: list[str]


@dataclass(slots=True)
class SearchAnswer(SearchResult):
    """What the service answers: the backend's result with the cursor of the next page, and
    for an empty answer the closest existing values of the keywords it asked for."""

    next_cursor: str | None = None
    suggestions: list[Suggestion] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """The REST shape: GraphQL's Query.search in the REST surface's one casing, snake_case
        (GraphQL stays camelCase: one casing per surface)."""
        return {
            "total": self.total,
            "total_is_lower_bound": self.total_is_lower_bound,
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
            "suggestions": [
                {"field": s.field, "value": s.value, "closest": s.closest} for s in self.suggestions
            ],
            "page_info": {
                "has_next_page": self.next_cursor is not None,
                "end_cursor": self.next_cursor,
            },
        }


# ---- validation of the request's knobs ------------------------------------------------------


def _bad(path: str, message: str) -> BadUserInput:
    return BadUserInput(f"invalid search request: {path}: {message}", [FieldError(path, message)])


def check_facets(names: list[str], schema: DocumentSchema = SCHEMA) -> tuple[str, ...]:
    out: list[str] = []
    for name in names:
        canonical = schema.facet_field(name)
        if canonical is None:
            raise _bad(
                "facets",
                f"'{name}' is not a facet; valid facets: " + ", ".join(schema.facet_names()),
            )
        if canonical not in out:
            out.append(canonical)
    return tuple(out)


def check_sort(sort: str, schema: DocumentSchema = SCHEMA) -> str:
    if sort not in schema.sorts:
        raise _bad("sort", f"'{sort}' is not a sort; valid sorts: {', '.join(schema.sorts)}")
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


def check_heatmap(
    pair: tuple[str, str] | list[str] | None, schema: DocumentSchema = SCHEMA
) -> Heatmap | None:
    if not pair:
        return None
    if len(pair) != 2:
        raise _bad("heatmap", "expected two facet fields, for example failure_mode,model_version")
    x, y = check_facets([pair[0]], schema), check_facets([pair[1]], schema)
    if schema.map is not None and schema.map_prefix in (x[0], y[0]):
        prefix = schema.map_prefix
        raise _bad("heatmap", f"'{prefix}' lists keys; use {prefix}.<key> in a heatmap")
    return Heatmap(x[0], y[0])


# ---- cursors --------------------------------------------------------------------------------


def encode_cursor(sort: str, values: tuple[Any, ...]) -> str:
    raw = json.dumps([sort, list(values)], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _sortable_number(value: Any) -> bool:
    """A number a backend can compare: an int of 64 bits or a finite float. An edited cursor
    holding 1e400 or 2**70 failed in SQLite ("Python int too large", a 500)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return -(2**63) <= value < 2**63
    return isinstance(value, float) and math.isfinite(value)


def decode_cursor(cursor: str, sort: str, schema: DocumentSchema = SCHEMA) -> tuple[Any, ...]:
    """The sort values after which the page starts; their number and types are checked here,
    so a backend receives only a cursor of its sort's shape."""
    keys = schema.sorts[sort]
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        cursor_sort, values = json.loads(raw)
        if not isinstance(values, list):
            raise ValueError
    except (ValueError, binascii.Error, TypeError):
        raise _bad("after", "not a cursor returned by this search") from None
    if cursor_sort != sort:
        raise _bad("after", f"cursor was made for sort '{cursor_sort}', not '{sort}'")
    # Every key but the last (the id, a string) is a number, or null where a backend
    # sorts by a constant.
    numbers = all(v is None or _sortable_number(v) for v in values[:-1])
    if len(values) != len(keys) or not numbers or not isinstance(values[-1], str):
        raise _bad("after", "not a cursor returned by this search")
    return tuple(values)
