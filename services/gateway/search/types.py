"""GraphQL types of search results."""

from __future__ import annotations

import strawberry

from services.gateway.catalog.types import FailureCase, PageInfo


@strawberry.type
class Highlight:
    field: str
    snippets: list[str]


@strawberry.type
class SearchHit:
    case: FailureCase | None
    score: float | None
    highlights: list[Highlight]


@strawberry.type
class Bucket:
    value: str
    count: int


@strawberry.type
class Facet:
    field: str
    buckets: list[Bucket]


@strawberry.type
class HeatmapCell:
    x: str
    y: str
    count: int


@strawberry.type
class SearchResults:
    total: int
    total_is_lower_bound: bool
    hits: list[SearchHit]
    facets: list[Facet]
    histogram: list[Bucket]
    heatmap: list[HeatmapCell]
    page_info: PageInfo


@strawberry.input
class SearchFilterInput:
    model: list[str] | None = strawberry.UNSET
    model_version: list[str] | None = strawberry.UNSET
    data_source: list[str] | None = strawberry.UNSET
    failure_mode: list[str] | None = strawberry.UNSET
    failure_mode_parent: list[str] | None = strawberry.UNSET
    severity: list[str] | None = strawberry.UNSET
    status: list[str] | None = strawberry.UNSET
    team: list[str] | None = strawberry.UNSET
    tags: list[str] | None = strawberry.UNSET
    sensitivity: list[str] | None = strawberry.UNSET
    env: strawberry.scalars.JSON | None = strawberry.UNSET


@strawberry.input
class HeatmapInput:
    x: str
    y: str
    size: int = 20
