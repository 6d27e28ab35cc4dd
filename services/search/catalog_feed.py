"""Adapter: what the indexer reads from the catalog (outbox rows and search documents).

The catalog service owns these queries (services/catalog/service.py: outbox_batch,
outbox_ack, search_documents, iter_search_documents, case_revisions). Until all of them
exist there, the stand-ins below read the same tables, so search can be built and tested
now; `catalog_feed()` prefers the catalog's own functions as soon as they are importable.
"""

from __future__ import annotations

import importlib
from types import SimpleNamespace
from typing import Any, Protocol

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.catalog.models import DataSource, FailureCase, Model, ModelVersion, Outbox

FUNCTIONS = (
    "outbox_batch",
    "outbox_ack",
    "search_documents",
    "iter_search_documents",
    "case_revisions",
)


class CatalogFeed(Protocol):
    async def outbox_batch(
        self, session: AsyncSession, limit: int
    ) -> list[tuple[int, str, int]]: ...

    async def outbox_ack(self, session: AsyncSession, ids: list[int]) -> None: ...

    async def search_documents(
        self, session: AsyncSession, case_ids: list[str]
    ) -> list[dict[str, Any]]: ...

    async def iter_search_documents(
        self, session: AsyncSession, after_id: str | None, limit: int
    ) -> list[dict[str, Any]]: ...

    async def case_revisions(self, session: AsyncSession) -> list[tuple[str, int]]: ...


def catalog_feed() -> CatalogFeed:
    try:
        catalog = importlib.import_module("services.catalog.service")
    except ImportError:
        catalog = None
    if catalog is not None and all(hasattr(catalog, f) for f in FUNCTIONS):
        return catalog  # type: ignore[return-value]
    return SimpleNamespace(**{f: globals()[f"_{f}"] for f in FUNCTIONS})  # type: ignore[return-value]


# ---- stand-ins, until the catalog service provides them -------------------------------------


async def _outbox_batch(session: AsyncSession, limit: int) -> list[tuple[int, str, int]]:
    stmt = select(Outbox.id, Outbox.case_id, Outbox.revision).order_by(Outbox.id).limit(limit)
    if session.bind.dialect.name == "postgresql":
        # Several workers can drain one outbox without taking each other's rows.
        stmt = stmt.with_for_update(skip_locked=True)
    return [tuple(r) for r in (await session.execute(stmt)).all()]  # type: ignore[misc]


async def _outbox_ack(session: AsyncSession, ids: list[int]) -> None:
    if ids:
        await session.execute(delete(Outbox).where(Outbox.id.in_(ids)))  # type: ignore[union-attr]


def _document_query():  # type: ignore[no-untyped-def]
    return (
        select(FailureCase, Model.name, ModelVersion.version, DataSource.name)
        .join(Model, Model.id == FailureCase.model_id)
        .join(ModelVersion, ModelVersion.id == FailureCase.model_version_id)
        .join(DataSource, DataSource.id == FailureCase.data_source_id)
    )


def _as_document(case: FailureCase, model: str, version: str, source: str) -> dict[str, Any]:
    writeup = case.writeup or {}
    return {
        "id": case.id,
        "revision": case.revision,
        "title": case.title,
        "summary": case.summary,
        "impact": case.impact,
        "writeup_hypothesis": writeup.get("hypothesis"),
        "writeup_experiments": writeup.get("experiments"),
        "writeup_results": writeup.get("results"),
        "writeup_rationale": writeup.get("rationale"),
        "model": model,
        "model_version": version,
        "data_source": source,
        "failure_mode": case.failure_mode,
        "failure_mode_parent": case.failure_mode_parent,
        "severity": case.severity,
        "status": case.status,
        "team": case.team,
        "tags": list(case.tags or []),
        "sensitivity": case.sensitivity,
        "environment": dict(case.environment or {}),
        "occurred_at": case.occurred_at.isoformat() if case.occurred_at else None,
        "received_at": case.received_at.isoformat() if case.received_at else None,
        "confidence": case.confidence,
        "latency_ms": case.latency_ms,
        "group_id": case.group_id,
        "merged_into_id": case.merged_into_id,
    }


async def _search_documents(session: AsyncSession, case_ids: list[str]) -> list[dict[str, Any]]:
    if not case_ids:
        return []
    rows = await session.execute(_document_query().where(FailureCase.id.in_(case_ids)))  # type: ignore[attr-defined]
    return [_as_document(*row) for row in rows.all()]


async def _iter_search_documents(
    session: AsyncSession, after_id: str | None, limit: int
) -> list[dict[str, Any]]:
    stmt = _document_query().order_by(FailureCase.id).limit(limit)
    if after_id is not None:
        stmt = stmt.where(FailureCase.id > after_id)
    return [_as_document(*row) for row in (await session.execute(stmt)).all()]


async def _case_revisions(session: AsyncSession) -> list[tuple[str, int]]:
    rows = await session.execute(select(FailureCase.id, FailureCase.revision))
    return [tuple(r) for r in rows.all()]  # type: ignore[misc]
