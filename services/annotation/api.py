"""REST routes of the annotation service: a case's annotations (blind-read rule applied, as in
GraphQL) and its review trail, and the taxonomies."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Depends

from services.annotation import service
from shared.security import Principal, Scope
from shared.web import Session, require

router = APIRouter(prefix="/annotation/v1")


def _annotation(row: Any) -> dict[str, Any]:
    return {
        k: getattr(row, k)
        for k in (
            "id",
            "case_id",
            "annotator",
            "taxonomy",
            "taxonomy_version",
            "values",
            "notes",
            "confidence",
            "status",
            "revision",
            "created_at",
            "updated_at",
            "submitted_at",
        )
    }


@router.get("/cases/{case_id}/annotations")
async def case_annotations(
    case_id: str,
    session: Session,
    taxonomy: str | None = None,
    principal: Principal = Depends(require(Scope.CASES_READ)),
) -> dict[str, Any]:
    """403 for an annotator of the case who has not submitted their own annotation."""
    rows = await service.case_annotations(session, case_id, principal, taxonomy)
    return {"case_id": case_id, "annotations": [_annotation(r) for r in rows]}


@router.get("/cases/{case_id}/review-trail")
async def review_trail(
    case_id: str, session: Session, principal: Principal = Depends(require(Scope.CASES_READ))
) -> dict[str, Any]:
    from services.catalog import service as catalog

    await catalog.get_case(session, case_id, principal)
    trail = (await service.review_trails(session, [case_id], principal))[case_id]
    return {"case_id": case_id, "entries": [asdict(e) for e in trail]}


@router.get("/taxonomies")
async def taxonomies(
    session: Session, principal: Principal = Depends(require(Scope.CASES_READ))
) -> dict[str, Any]:
    rows = await service.list_taxonomies(session)
    return {
        "taxonomies": [
            {"name": t.name, "version": t.version, "source": t.source, "fields": t.fields}
            for t in rows
        ]
    }
