"""Query.search: the search service finds ids; the catalog loads the cases (visibility again)."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import strawberry
from strawberry.types import Info

from services.catalog.hydration import hit_cases
from services.gateway.annotation.loaders import loaders as annotation_loaders
from services.gateway.catalog.inputs import to_plain
from services.gateway.catalog.loaders import prefetch_case_relations, selected_under
from services.gateway.catalog.types import PageInfo
from services.gateway.permissions import scoped
from services.gateway.search.types import (
    Bucket,
    Facet,
    HeatmapCell,
    HeatmapInput,
    Highlight,
    SearchFilterInput,
    SearchHit,
    SearchResults,
    SearchSuggestion,
)
from services.search.request import Heatmap, SearchFilter
from services.search.service import search_entry
from shared.audit import audit
from shared.errors import BadUserInput, FieldError
from shared.security import Scope
from shared.web import alongside, begin_early

# The service's one heatmap size (values per axis).
DEFAULT_HEATMAP_SIZE = next(f.default for f in fields(Heatmap) if f.name == "size")


def _heatmap_fields(heatmap: HeatmapInput | None) -> tuple[str, str] | None:
    """The service takes the two facet fields, as REST's `heatmap=x,y` gives them. Its cell
    count is fixed (top 20 values per axis): another `size` is refused rather than ignored."""
    if heatmap is None:
        return None
    if heatmap.size != DEFAULT_HEATMAP_SIZE:
        raise BadUserInput(
            "invalid search request: heatmap.size",
            [FieldError("heatmap.size", f"only {DEFAULT_HEATMAP_SIZE} values per axis")],
        )
    return (heatmap.x, heatmap.y)


async def _hit_cases(info: Info, ids: list[str]) -> list[Any]:
    ctx = info.context
    links = "links" in selected_under(info, ("hits", "case"))
    found = await hit_cases(await ctx.session(), ids, ctx.principal, links=links)
    loaders = ctx.loaders
    for case_id in ids:
        hit = found.get(case_id)
        loaders.case.prime(case_id, hit.case if hit else None)
    blind = annotation_loaders(ctx).curated_hidden  # the curated fields' blind-read flag
    for hit in found.values():
        blind.prime(hit.case.id, hit.blinded)
        loaders.model.prime(hit.model.id, hit.model)
        loaders.model_version.prime(hit.version.id, hit.version)
        loaders.data_source.prime(hit.source.id, hit.source)
        if links:
            loaders.links.prime(hit.case.id, hit.links)
    return [found[i].case if i in found else None for i in ids]


@strawberry.type
class SearchQuery:
    @strawberry.field(permission_classes=scoped(Scope.CASES_READ))
    async def search(
        self,
        info: Info,
        query: str = "",
        filter: SearchFilterInput | None = None,
        facets: list[str] | None = None,
        first: int = 20,
        after: str | None = None,
        sort: str = "relevance",
        histogram: str | None = None,
        heatmap: HeatmapInput | None = None,
    ) -> SearchResults:
        ctx = info.context
        searching = ctx.search.search(
            ctx.principal,
            query,
            filter=SearchFilter.read(to_plain(filter)) if filter else None,
            facets=facets or [],
            first=first,
            after=after,
            sort=sort,
            histogram=histogram,
            heatmap=_heatmap_fields(heatmap),
        )
        # The request's session connects and begins while the index answers (as in REST).
        result = await alongside(begin_early(ctx.session()), searching)
        audit(
            await ctx.session(),
            ctx.principal,
            "cases.search",
            None,
            details=search_entry(query, result),
            read=True,
        )
        # One query for every hit's case (visibility applied again) with its model, version,
        # source (and links, if selected): the loaders are primed with them, so the relations
        # the query selects cost no further query (prefetch loads only what is left).
        cases = await _hit_cases(info, [h.id for h in result.hits])
        await prefetch_case_relations(info, [c for c in cases if c is not None], ("hits", "case"))
        hits = [
            SearchHit(
                case=case,
                score=h.score,
                highlights=[Highlight(field=f, snippets=s) for f, s in h.highlights.items()],
            )
            for h, case in zip(result.hits, cases, strict=True)
        ]
        return SearchResults(
            total=result.total,
            total_is_lower_bound=result.total_is_lower_bound,
            hits=hits,
            facets=[
                Facet(field=name, buckets=[Bucket(value=b.value, count=b.count) for b in bs])
                for name, bs in result.facets.items()
            ],
            histogram=[Bucket(value=b.value, count=b.count) for b in result.histogram],
            heatmap=[HeatmapCell(x=c.x, y=c.y, count=c.count) for c in result.heatmap],
            page_info=PageInfo(
                has_next_page=result.next_cursor is not None, end_cursor=result.next_cursor
            ),
            suggestions=[
                SearchSuggestion(field=s.field, value=s.value, closest=s.closest)
                for s in result.suggestions
            ],
        )
