"""Catalog rows for the indexer tests: cases written with their outbox row in one transaction,
as the catalog service does (until its own builders exist, these write the tables directly)."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.catalog.models import (
    DataSource,
    FailureCase,
    FailureGroup,
    Model,
    ModelVersion,
    Outbox,
)
from shared.ids import new_id


async def _get_or_create(session: AsyncSession, cls: Any, where: Any, **values: Any) -> str:
    found = (await session.execute(select(cls.id).where(where))).scalar()
    if found:
        return found
    row = cls(id=new_id(), **values)
    session.add(row)
    await session.flush()
    return row.id


async def make_case(
    session: AsyncSession,
    *,
    title: str,
    summary: str | None = None,
    model: str = "fraud-detector",
    version: str = "3.2.0",
    source: str = "payments-stream",
    outbox: bool = True,
    **curated: Any,
) -> str:
    now = datetime.now(UTC)
    model_id = await _get_or_create(session, Model, Model.name == model, name=model, created_at=now)
    version_id = await _get_or_create(
        session,
        ModelVersion,
        (ModelVersion.model_id == model_id) & (ModelVersion.version == version),
        model_id=model_id,
        version=version,
        created_at=now,
    )
    source_id = await _get_or_create(
        session, DataSource, DataSource.name == source, name=source, created_at=now
    )
    fingerprint = secrets.token_hex(16)
    group = FailureGroup(
        id=new_id(),
        fingerprint=fingerprint,
        model_id=model_id,
        first_seen=now,
        last_seen=now,
        case_count=1,
    )
    session.add(group)
    await session.flush()
    case = FailureCase(
        id=new_id(),
        model_id=model_id,
        model_version_id=version_id,
        data_source_id=source_id,
        occurred_at=curated.pop("occurred_at", now),
        received_at=now,
        source_key=source,
        fingerprint=fingerprint,
        content_hash=secrets.token_hex(32),
        group_id=group.id,
        title=title,
        summary=summary,
        updated_at=now,
        revision=1,
        **curated,
    )
    session.add(case)
    await session.flush()
    if outbox:
        session.add(Outbox(case_id=case.id, revision=1, created_at=now))
    await session.flush()
    return case.id


async def update_case(session: AsyncSession, case_id: str, **changes: Any) -> int:
    """Change curated fields: a new revision and its outbox row, atomically."""
    revision = (
        await session.execute(select(FailureCase.revision).where(FailureCase.id == case_id))
    ).scalar_one() + 1
    await session.execute(
        update(FailureCase)
        .where(FailureCase.id == case_id)
        .values(revision=revision, updated_at=datetime.now(UTC), **changes)
    )
    session.add(Outbox(case_id=case_id, revision=revision, created_at=datetime.now(UTC)))
    await session.flush()
    return revision


async def remove_case(session: AsyncSession, case_id: str) -> None:
    await session.execute(delete(FailureCase).where(FailureCase.id == case_id))
    session.add(Outbox(case_id=case_id, revision=0, created_at=datetime.now(UTC)))
    await session.flush()


async def outbox_size(session: AsyncSession) -> int:
    return len((await session.execute(select(Outbox.id))).all())
