"""OpenAPI documentation of the search REST routes: the answer models and an example.

The routes return SearchAnswer.as_json() (plus each hit's case) as it is; these models only
describe that shape: GraphQL's Query.search in the REST surface's casing (snake_case).
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
    has_next_page: bool
    end_cursor: str | None = None


class Suggestion(BaseModel):
    field: str
    value: str
    closest: list[str] = Field(description="the nearest values visible cases have")


class SearchAnswer(BaseModel):
    model_config = ConfigDict(extra="allow")

    total: int
    total_is_lower_bound: bool
    hits: list[SearchHit]
    facets: list[Facet] = []
    histogram: list[Bucket] = []
    heatmap: list[HeatmapCell] = []
    suggestions: list[Suggestion] = Field(
        [], description="for a field filter that found nothing: the closest existing values"
    )
    page_info: PageInfo


SEARCH_ANSWER_EXAMPLE = {
    "total": 1,
    "total_is_lower_bound": False,
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
    "suggestions": [],
    "page_info": {"has_next_page": False, "end_cursor": None},
}


class SimilarHit(BaseModel):
    id: str
    score: float | None = None


class SimilarAnswer(BaseModel):
    hits: list[SimilarHit]
