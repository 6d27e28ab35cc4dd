"""GraphQL types of search results: every one is read under cases:read."""

from __future__ import annotations

from typing import Any

import strawberry

from services.gateway.catalog.types import FailureCase, PageInfo
from services.gateway.permissions import read_with
from services.search.fields import SCHEMA
from shared.security import Scope


@read_with(Scope.CASES_READ)
@strawberry.type
class Highlight:
    field: str
    snippets: list[str]


@read_with(Scope.CASES_READ)
@strawberry.type
class SearchHit:
    case: FailureCase | None
    score: float | None
    highlights: list[Highlight]


@read_with(Scope.CASES_READ)
@strawberry.type
class Bucket:
    value: str
    count: int


@read_with(Scope.CASES_READ)
@strawberry.type
class Facet:
    field: str
    buckets: list[Bucket]


@read_with(Scope.CASES_READ)
@strawberry.type
class HeatmapCell:
    x: str
    y: str
    count: int


@read_with(Scope.CASES_READ)
@strawberry.type
class SearchSuggestion:
    """A keyword value the search asked for that no visible case has, and the closest
    values that exist (for an answer with no hits)."""

    field: str
    value: str
    closest: list[str]


@read_with(Scope.CASES_READ)
@strawberry.type
class SearchResults:
    total: int
    total_is_lower_bound: bool
    hits: list[SearchHit]
    facets: list[Facet]
    histogram: list[Bucket]
    heatmap: list[HeatmapCell]
    page_info: PageInfo
    suggestions: list[SearchSuggestion] = strawberry.field(default_factory=list)


def _filter_input() -> type:
    """SearchFilterInput: a list of values per facetable field of the search field table
    (services/search/fields.py), and the environment map, as the REST filter has."""
    annotations: dict[str, Any] = {f.name: list[str] | None for f in SCHEMA.fields if f.facet}
    if SCHEMA.map is not None:
        annotations[SCHEMA.map_prefix] = strawberry.scalars.JSON | None
    namespace = {name: strawberry.UNSET for name in annotations}
    cls = type("SearchFilterInput", (), {"__annotations__": annotations, **namespace})
    return strawberry.input(cls)


SearchFilterInput = _filter_input()


@strawberry.input
class HeatmapInput:
    x: str
    y: str
    size: int = 20
