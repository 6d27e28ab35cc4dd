"""Annotation state in the search document, and the blind-read rule inside search.

The catalog's producer (services/catalog/document.py) asks `document_fields` for the
annotation fields of a batch of cases; every annotation write queues its cases for
re-indexing through the catalog's outbox (`requeue`). The search service asks `guard` to
narrow a request: a caller blinded on a case (services/annotation/service.py's rule) must
not learn the others' labels through what a search matches, counts or sorts.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.annotation.repository import AnnotationRepository
from services.annotation.schemas import COMPARABLE_TYPES, TaxonomyField, is_empty
from services.annotation.taxonomies import IMPACT_AREAS, IMPACT_LEVELS

if TYPE_CHECKING:
    from services.search.request import SearchRequest
    from shared.security import Principal

SUBMITTED = "submitted"
# The document field listing who may not read the case's annotation state yet.
BLINDED = "blinded"
# What a search may not touch on a case the caller is blinded on: the others' agreement and
# the fields adjudication writes (failcat's values become the curated ones). Touching means a
# condition, a facet selection or count, a sort or a chart axis on the field.
SENSITIVE = frozenset(
    {
        "agreement",
        "disagreement",
        "failure_mode",
        "failure_mode_parent",
        "severity",
        "severity_rank",
        "impact",
    }
)
# A free-text word of these reaches the adjudicated impact text ("safety=high; ...").
_IMPACT_WORDS = frozenset({*IMPACT_LEVELS, *IMPACT_AREAS})


# --- the producer's side -------------------------------------------------------------------
def _agreement(fields: list[TaxonomyField], given: list[dict[str, Any]]) -> tuple[float, set[str]]:
    """Share of the comparable fields on which every submitter agrees, and those they do not."""
    compared, differ = 0, set()
    for f in fields:
        if f.type not in COMPARABLE_TYPES:
            continue
        values = [v.get(f.name) for v in given]
        present = [v for v in values if not is_empty(v)]
        if not present:
            continue
        compared += 1
        if len(present) != len(values) or any(v != present[0] for v in present):
            differ.add(f.name)
    return (1.0 - len(differ) / compared if compared else 1.0), differ


async def document_fields(session: AsyncSession, case_ids: Sequence[str]) -> dict[str, dict]:
    """Per case: `annotated_by` (annotators who submitted), `annotation_status` (none |
    in_progress | submitted | adjudicated), `agreement` (the lowest, over taxonomies with two
    or more submissions, share of fields all agree on), `disagreement` (those fields) and
    `blinded` (annotators who may not read the others' labels yet). Four queries a batch."""
    repo = AnnotationRepository(session)
    rows = await repo.state_rows(case_ids)
    assigned: dict[str, set[str]] = defaultdict(set)
    for a in await repo.assignments_of(case_ids):
        assigned[a.case_id].add(a.annotator)
    decided = await repo.last_adjudications(case_ids)
    by_case: dict[str, list[Any]] = defaultdict(list)
    for row in rows:
        by_case[row.case_id].append(row)
    taxonomies: dict[str, list[TaxonomyField]] = {}
    for name in {r.taxonomy for r in rows}:
        found = await repo.latest_taxonomy(name)
        stored = found.fields if found else []
        taxonomies[name] = [TaxonomyField.model_validate(f) for f in stored]
    out: dict[str, dict] = {}
    for cid in case_ids:
        mine = by_case.get(cid, [])
        submitted: dict[str, list[Any]] = defaultdict(list)
        for r in mine:
            if r.status == SUBMITTED:
                submitted[r.taxonomy].append(r)
        agreement: float | None = None
        differ: set[str] = set()
        for tax, done in submitted.items():
            if len(done) < 2:
                continue
            share, fields = _agreement(taxonomies[tax], [r.values for r in done])
            agreement = share if agreement is None else min(agreement, share)
            differ |= fields
        adjudicated = [t for (c, t) in decided if c == cid]
        newer = any(
            r.submitted_at is not None and r.submitted_at > decided[(cid, t)]
            for t in adjudicated
            for r in submitted.get(t, [])
        )
        if adjudicated and not newer:
            status = "adjudicated"
        elif submitted:
            status = "submitted"
        elif mine or assigned.get(cid):
            status = "in_progress"
        else:
            status = "none"
        # The blind-read rule, per annotator: in a taxonomy where someone else annotated or a
        # decision was made, an annotator who has not submitted their own may not read.
        people = assigned.get(cid, set()) | {r.annotator for r in mine}
        blinded = []
        for person in people:
            own = {r.taxonomy for r in mine if r.annotator == person and r.status == SUBMITTED}
            hidden = {r.taxonomy for r in mine if r.annotator != person} | set(adjudicated)
            if hidden - own:
                blinded.append(person)
        out[cid] = {
            "annotated_by": len({r.annotator for t in submitted.values() for r in t}),
            "annotation_status": status,
            "agreement": agreement,
            "disagreement": sorted(differ),
            BLINDED: sorted(blinded),
        }
    return out


async def requeue(session: AsyncSession, case_ids: Sequence[str]) -> None:
    """Queue the cases' search documents for rebuilding: their annotation state changed."""
    from services.catalog import service as catalog

    await catalog.requeue_for_search(session, list(dict.fromkeys(case_ids)))


# --- the search's side ---------------------------------------------------------------------
def _touched(request: SearchRequest) -> set[str]:
    from services.search.query import Text, walk

    names: set[str] = set()
    for node in walk(request.query):
        field = getattr(node, "field", None)
        if field is not None:
            names.add(field)
        elif isinstance(node, Text) and node.value.lower().strip() in _IMPACT_WORDS:
            names.add("impact")
    names |= set(request.selections) | set(request.facets)
    names.add(request.sort.lstrip("-"))
    if request.heatmap is not None:
        names |= {request.heatmap.x, request.heatmap.y}
    return names


def guard(principal: Principal, request: SearchRequest) -> SearchRequest:
    """The request, narrowed to the cases `principal` is not blinded on when it touches a
    field that would reveal the others' labels there; untouched otherwise, so an annotator
    still finds their assigned cases by title, model or status."""
    from services.search.fields import fold
    from services.search.query import Not, Term, and_of

    if not _touched(request) & SENSITIVE:
        return request
    hide = Not(Term(BLINDED, (fold(principal.subject),)))
    return dataclasses.replace(request, query=and_of([request.query, hide]))
