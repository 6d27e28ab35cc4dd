"""REST routes of the search service: the same search as GraphQL's Query.search."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncSession

from services.catalog import service as catalog
from services.catalog.hydration import case_answers
from services.search import openapi as doc
from services.search.request import FilterBase, filter_model
from services.search.service import SearchService, search_entry
from shared.audit import audit
from shared.errors import BadUserInput, FieldError
from shared.security import Principal, Scope
from shared.web import alongside, begin_early, db_session, json_response, problem_responses, require

router = APIRouter()


def _service(request: Request) -> SearchService:
    return request.app.state.search


def _split(values: list[str]) -> list[str]:
    """`facets=a,b` and `facets=a&facets=b` mean the same."""
    return [v.strip() for item in values for v in item.split(",") if v.strip()]


def _filter(raw: str | None, service: SearchService) -> FilterBase | None:
    if not raw:
        return None
    try:
        parsed = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise BadUserInput(
            "invalid filter",
            [
                FieldError(
                    "filter", f'expected a JSON object, e.g. {{"severity": ["S0"]}}: {exc.msg}'
                )
            ],
        ) from None
    return filter_model(service.backend.schema).read(parsed)


@router.get(
    "/search/v1/cases",
    summary="Search cases: full text, field filters, facets",
    response_model=None,
    responses={
        200: {
            "model": doc.SearchAnswer,
            "content": {"application/json": {"example": doc.SEARCH_ANSWER_EXAMPLE}},
        },
        **problem_responses(400, 403),
    },
)
async def search_cases(
    request: Request,
    q: str = Query(
        "",
        description="Query language: services/search/QUERY.md",
        examples=["refund severity:<=S2", 'model:fraud-detector -status:resolved "false positive"'],
    ),
    facets: list[str] = Query(
        [],
        description="Facet fields, comma-separated or repeated",
        examples=[["model,failure_mode"]],
    ),
    filter: str | None = Query(
        None,
        description='Facet selections as JSON: {"severity": ["S0"]}',
        examples=['{"severity": ["S0", "S1"]}'],
    ),
    first: int = 20,
    after: str | None = None,
    sort: str = "relevance",
    histogram: str | None = Query(None, description="hour, day, week or month"),
    heatmap: str | None = Query(None, description="Two facet fields: failure_mode,model_version"),
    principal: Principal = Depends(require(Scope.CASES_READ)),
    session: AsyncSession = Depends(db_session, scope="function"),
) -> Response:
    service = _service(request)
    selections = _filter(filter, service)  # a bad filter is refused before anything starts
    # The session connects and begins while the index answers, not after it.
    result = await alongside(
        begin_early(session),
        service.search(
            principal,
            q,
            filter=selections,
            facets=_split(facets),
            first=first,
            after=after,
            sort=sort,
            histogram=histogram,
            heatmap=_split([heatmap]) if heatmap else None,
        ),
    )
    body = result.as_json()
    audit(
        session,
        principal,
        "cases.search",
        None,
        details=search_entry(q, result),
        read=True,
    )
    # The same as GraphQL: each hit carries its case, loaded with the caller's visibility
    # (one query for the page: services/catalog/hydration.py).
    cases = await case_answers(session, [h["id"] for h in body["hits"]], principal)
    for hit in body["hits"]:
        hit["case"] = cases.get(hit["id"])
    return json_response(body)


@router.get(
    "/search/v1/cases/{case_id}/similar",
    summary="Cases whose text is like this case's",
    response_model=None,
    responses={200: {"model": doc.SimilarAnswer}, **problem_responses(400, 403, 404)},
)
async def similar_cases(
    request: Request,
    case_id: str,
    first: int = 10,
    principal: Principal = Depends(require(Scope.CASES_READ)),
    session: AsyncSession = Depends(db_session, scope="function"),
) -> dict[str, Any]:
    # Of a case the caller may see: an unknown or hidden one is 404, as on every case route
    # (GraphQL's FailureCase.similar hangs off such a case already).
    await catalog.get_visible_case(session, case_id, principal)
    hits = await _service(request).similar(principal, case_id, first)
    # As GraphQL's FailureCase.similar: which cases were named to whom (ids only).
    audit(
        session,
        principal,
        "cases.similar",
        f"case:{case_id}",
        details={"ids": [h.id for h in hits]},
        read=True,
    )
    return {"hits": [{"id": h.id, "score": h.score} for h in hits]}
