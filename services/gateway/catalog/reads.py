"""Read-only queries the catalog service does not offer yet (listing groups, versions of many
models at once). Kept here, small and read-only, until services/catalog grows them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import and_, exists, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.catalog.models import (
    FailureCase,
    FailureGroup,
    Model,
    ModelVersion,
    TaxonomyVersion,
)
from services.catalog.repository import visible_to
from shared.security import Principal


def _has_visible_case(viewer: Principal) -> object:
    """A group shows only to callers who may see at least one of its cases."""
    return exists().where(FailureCase.group_id == FailureGroup.id, *visible_to(viewer))


async def versions_of_models(session: AsyncSession, model_ids: Sequence[str]) -> list[ModelVersion]:
    rows = await session.execute(
        select(ModelVersion)
        .where(ModelVersion.model_id.in_(model_ids))
        .order_by(ModelVersion.created_at, ModelVersion.version)
    )
    return list(rows.scalars())


async def visible_group(
    session: AsyncSession, group_id: str, viewer: Principal
) -> FailureGroup | None:
    stmt = select(FailureGroup).where(FailureGroup.id == group_id, _has_visible_case(viewer))
    return (await session.execute(stmt)).scalar_one_or_none()


async def list_groups(
    session: AsyncSession,
    viewer: Principal,
    *,
    model: str | None,
    status: str | None,
    first: int,
    after: tuple[datetime, str] | None,
) -> list[FailureGroup]:
    """Most recently seen first, keyset on (last_seen, id)."""
    stmt = select(FailureGroup).where(_has_visible_case(viewer))
    if model:
        stmt = stmt.where(
            FailureGroup.model_id == select(Model.id).where(Model.name == model).scalar_subquery()
        )
    if status:
        stmt = stmt.where(FailureGroup.status == status)
    if after is not None:
        at, gid = after
        stmt = stmt.where(
            or_(
                FailureGroup.last_seen < at,
                and_(FailureGroup.last_seen == at, FailureGroup.id < gid),
            )
        )
    stmt = stmt.order_by(FailureGroup.last_seen.desc(), FailureGroup.id.desc()).limit(first)
    return list((await session.execute(stmt)).scalars())


async def taxonomy_versions(session: AsyncSession) -> list[TaxonomyVersion]:
    rows = await session.execute(select(TaxonomyVersion).order_by(TaxonomyVersion.version))
    return list(rows.scalars())
