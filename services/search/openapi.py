"""OpenAPI documentation of the search REST routes: the answer models and an example.

The routes return SearchResult.as_json() (plus each hit's case) as it is; these models only
describe that shape, with the same names as GraphQL's Query.search.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from services.catalog.openapi import CASE_OUT_EXAMPLE, CaseOut


class Highlight(BaseModel):
    field: str
    snippets: list[str]


class SearchHit(BaseModel):
    id: str
    score: float | None = None
    highlights: list[Highlight] = []
    case: CaseOut | None = Field(None, description="null when the case is no longer visible")


class Bucket(BaseModel):
    value: Any
    count: int


class Facet(BaseModel):
    field: str
    buckets: list[Bucket]


class HeatmapCell(BaseModel):
    x: Any
    y: Any
    count: int


class PageInfo(BaseModel):
    # camelCase: the wire names of Query.search, which the REST answer shares.
    hasNextPage: bool
    endCursor: str | None = None


class SearchAnswer(BaseModel):
    model_config = ConfigDict(extra="allow")

    total: int
    totalIsLowerBound: bool
    hits: list[SearchHit]
    facets: list[Facet] = []
    histogram: list[Bucket] = []
    heatmap: list[HeatmapCell] = []
    pageInfo: PageInfo


SEARCH_ANSWER_EXAMPLE = {
    "total": 1,
    "totalIsLowerBound": False,
    "hits": [
        {
            "id": CASE_OUT_EXAMPLE["id"],
            "score": 7.31,
            "highlights": [{"field": "title", "snippets": ["scores a <em>refund</em> as fraud"]}],
            "case": CASE_OUT_EXAMPLE,
        }
    ],
    "facets": [{"field": "severity", "buckets": [{"value": "S2", "count": 1}]}],
    "histogram": [],
    "heatmap": [],
    "pageInfo": {"hasNextPage": False, "endCursor": None},
}


class SimilarHit(BaseModel):
    id: str
    score: float | None = None


class SimilarAnswer(BaseModel):
    hits: list[SimilarHit]
