"""Queries of context events: the batch insert, pages, the events around a set of cases, the
first cases of groups, and the re-queue of cases an event recorded late now precedes."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, func, insert, literal, or_, select

from services.catalog.models import (
    ContextEvent,
    DataSource,
    FailureCase,
    FailureGroup,
    Model,
    ModelVersion,
    Outbox,
)
from services.catalog.repository.base import RepositoryBase, newest_first
from services.catalog.repository.outbox import wrote_outbox
from services.catalog.repository.visibility import visible_to
from shared.chunks import chunks
from shared.db import shifted
from shared.security import Principal


class ContextEventQueries(RepositoryBase):
    async def events_by_external_id(self, external_ids: Sequence[str]) -> dict[str, str]:
        e = ContextEvent
        out: dict[str, str] = {}
        for chunk in chunks(list(external_ids)):
            rows = await self.session.execute(
                select(e.external_id, e.id).where(self._in(e.external_id, chunk))
            )
            out.update({r.external_id: r.id for r in rows})
        return out

    async def insert_events(self, rows: list[dict[str, Any]]) -> set[str]:
        """Insert, skipping an external_id stored meanwhile; the ids actually inserted."""
        if not rows:
            return set()
        table = ContextEvent.__table__
        inserted: set[str] = set()
        # One multi-row INSERT ... ON CONFLICT DO NOTHING RETURNING per 1000 events (13
        # columns each: well under SQLite's bound-variable limit).
        for chunk in chunks(rows, 1000):
            stmt = (
                self._insert(table)
                .values(list(chunk))
                .on_conflict_do_nothing()
                .returning(table.c.id)
            )
            inserted.update((await self.session.execute(stmt)).scalars())
        return inserted

    async def get_events(self, ids: Sequence[str]) -> list[ContextEvent]:
        rows = await self.session.execute(select(ContextEvent).where(ContextEvent.id.in_(ids)))
        return list(rows.scalars())

    async def list_events(
        self,
        *,
        kinds: Sequence[str] | None,
        model: str | None,
        model_version: str | None,
        data_source: str | None,
        occurred_after: datetime | None,
        occurred_before: datetime | None,
        first: int,
        after: tuple[datetime, str] | None,
    ) -> list[ContextEvent]:
        """Newest first. A scope filter also finds the events whose scope leaves it open (an
        event for every model concerns `model` too)."""
        e = ContextEvent
        stmt = select(e)
        if kinds:
            stmt = stmt.where(e.kind.in_(list(kinds)))
        for column, value in (
            (e.model, model),
            (e.model_version, model_version),
            (e.data_source, data_source),
        ):
            if value is not None:
                stmt = stmt.where(or_(column.is_(None), column == value))
        if occurred_after is not None:
            stmt = stmt.where(e.occurred_at >= occurred_after)
        if occurred_before is not None:
            stmt = stmt.where(e.occurred_at < occurred_before)
        stmt = newest_first(stmt, e.occurred_at, e.id, after, first)
        return list((await self.session.execute(stmt)).scalars())

    async def events_between(
        self, models: set[str], start: datetime, end: datetime
    ) -> list[ContextEvent]:
        """Every event in [start, end] scoped to one of `models` or to no model: one statement
        for a whole batch of cases, matched to each case in Python (services/catalog/
        context_events.py). Events are rare beside cases, so the span's events are few."""
        e = ContextEvent
        scope = e.model.is_(None)
        if models:
            scope = or_(scope, self._in(e.model, sorted(models)))
        stmt = (
            select(e)
            .where(e.occurred_at >= start, e.occurred_at <= end, scope)
            .order_by(e.occurred_at, e.id)
        )
        return list((await self.session.execute(stmt)).scalars())

    async def case_scopes(self, case_ids: Sequence[str]) -> list[Any]:
        """(id, occurred_at, environment, model, version, source) of cases: what matching
        them to events needs, without loading the cases."""
        c = FailureCase
        out: list[Any] = []
        for chunk in chunks(list(case_ids)):
            rows = await self.session.execute(
                select(
                    c.id,
                    c.occurred_at,
                    c.environment,
                    Model.name.label("model"),
                    ModelVersion.version.label("version"),
                    DataSource.name.label("source"),
                )
                .join(Model, Model.id == c.model_id)
                .join(ModelVersion, ModelVersion.id == c.model_version_id)
                .join(DataSource, DataSource.id == c.data_source_id)
                .where(self._in(c.id, chunk))
            )
            out.extend(rows)
        return out

    async def first_cases_of_groups(self, group_ids: Sequence[str]) -> list[Any]:
        """Per group, its earliest case (occurred at the group's first_seen), with its scope;
        ties broken by id. A group whose first case was evicted has none."""
        c, g = FailureCase, FailureGroup
        rows = await self.session.execute(
            select(
                c.group_id,
                c.id,
                c.occurred_at,
                c.environment,
                Model.name.label("model"),
                ModelVersion.version.label("version"),
                DataSource.name.label("source"),
            )
            .join(g, and_(g.id == c.group_id, g.first_seen == c.occurred_at))
            .join(Model, Model.id == c.model_id)
            .join(ModelVersion, ModelVersion.id == c.model_version_id)
            .join(DataSource, DataSource.id == c.data_source_id)
            .where(self._in(c.group_id, list(group_ids)))
            .order_by(c.group_id, c.id)
        )
        first: dict[str, Any] = {}
        for r in rows:
            first.setdefault(r.group_id, r)
        return list(first.values())

    async def group_cases_since(
        self, since: dict[str, datetime], window: timedelta, viewer: Principal
    ) -> dict[str, tuple[int, int]]:
        """Per group, how many of its cases `viewer` may see occurred at or after its time,
        and how many of those within `window` of it: one statement for every group."""
        if not since:
            return {}
        c = FailureCase
        within = case(
            *(
                (and_(c.group_id == g, c.occurred_at < shifted(at, window)), 1)
                for g, at in since.items()
            ),
            else_=0,
        )
        stmt = (
            select(c.group_id, func.count(), func.sum(within))
            .where(
                or_(*(and_(c.group_id == g, c.occurred_at >= at) for g, at in since.items())),
                *visible_to(viewer),
            )
            .group_by(c.group_id)
        )
        rows = (await self.session.execute(stmt)).all()
        return {g: (int(n), int(w or 0)) for g, n, w in rows}

    async def requeue_cases_after(
        self, events: list[dict[str, Any]], window: timedelta, now: datetime
    ) -> int:
        """Queue for re-indexing, in one INSERT ... SELECT, every case that occurred within
        `window` after one of `events` in its model/version/source scope. The environment
        part of a scope is not compared here: a case re-indexed for nothing costs one write,
        and the document it gets is right either way."""
        c = FailureCase
        conditions = []
        for ev in events:
            at = ev["occurred_at"]
            terms = [c.occurred_at >= at, c.occurred_at < shifted(at, window)]
            if ev.get("model") is not None:
                terms.append(Model.name == ev["model"])
            if ev.get("model_version") is not None:
                terms.append(ModelVersion.version == ev["model_version"])
            if ev.get("data_source") is not None:
                terms.append(DataSource.name == ev["data_source"])
            conditions.append(and_(*terms))
        if not conditions:
            return 0
        affected = (
            select(c.id, c.revision, literal(now, type_=Outbox.__table__.c.created_at.type))
            .join(Model, Model.id == c.model_id)
            .join(ModelVersion, ModelVersion.id == c.model_version_id)
            .join(DataSource, DataSource.id == c.data_source_id)
            .where(or_(*conditions))
        )
        result = await self.session.execute(
            insert(Outbox.__table__).from_select(["case_id", "revision", "created_at"], affected)
        )
        wrote_outbox(self.session)
        return result.rowcount or 0
