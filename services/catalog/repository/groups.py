"""Queries of failure groups: visible reads and pages, and the batch upsert of counts."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import and_, bindparam, func, not_, select, update

from services.catalog.models import FailureCase, FailureGroup, Model
from services.catalog.repository.base import RepositoryBase, newest_first, sqlite_records
from services.catalog.repository.visibility import has_visible_case, visible_to
from services.catalog.schemas import GroupStatus
from shared.chunks import chunks
from shared.db import driver_connection
from shared.security import Principal

# What ingestion writes of a group (its tally), in the order of the array upsert's columns.
GROUP_UPSERT_COLUMNS = (
    "id",
    "fingerprint",
    "model_id",
    "failure_mode",
    "first_seen",
    "last_seen",
    "case_count",
    "sampled_out_count",
    "status",
)

# groups_by_id on SQLite (RepositoryBase._sqlite_in), through the primary key.
_GROUPS_BY_ID = (
    "SELECT id, status, resolved_in_version FROM failure_group "
    "WHERE id IN (SELECT value FROM json_each(?))"
)


class _GroupState(NamedTuple):
    """What groups_by_id answers per group, as the Postgres path's rows do."""

    id: str
    status: str
    resolved_in_version: str | None


class GroupQueries(RepositoryBase):
    async def visible_group(
        self, group_id: str, viewer: Principal, *, for_update: bool = False
    ) -> FailureGroup | None:
        stmt = select(FailureGroup).where(FailureGroup.id == group_id, has_visible_case(viewer))
        if for_update and self.dialect == "postgresql":
            stmt = stmt.with_for_update(of=FailureGroup)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def list_groups(
        self,
        viewer: Principal,
        *,
        model: str | None,
        status: str | None,
        first: int,
        after: tuple[datetime, str] | None,
    ) -> list[FailureGroup]:
        """Most recently seen first, keyset on (last_seen, id)."""
        stmt = select(FailureGroup).where(has_visible_case(viewer))
        if model:
            stmt = stmt.where(
                FailureGroup.model_id
                == select(Model.id).where(Model.name == model).scalar_subquery()
            )
        if status:
            stmt = stmt.where(FailureGroup.status == status)
        stmt = newest_first(stmt, FailureGroup.last_seen, FailureGroup.id, after, first)
        return list((await self.session.execute(stmt)).scalars())

    async def hidden_case_counts(self, ids: Sequence[str], viewer: Principal) -> dict[str, int]:
        """Per group, how many of its cases `viewer` may not see (groups with none absent):
        a group's count as a reader sees it leaves them out, so it does not tell that cases
        of another team or above their clearance exist."""
        out: dict[str, int] = {}
        for chunk in chunks(list(ids)):
            stmt = (
                select(FailureCase.group_id, func.count())
                .where(self._in(FailureCase.group_id, chunk), not_(and_(*visible_to(viewer))))
                .group_by(FailureCase.group_id)
            )
            out.update(dict((await self.session.execute(stmt)).all()))
        return out

    async def get_groups(self, ids: Sequence[str]) -> list[FailureGroup]:
        rows = await self.session.execute(select(FailureGroup).where(FailureGroup.id.in_(ids)))
        return list(rows.scalars())

    async def groups_by_id(self, ids: Sequence[str]) -> dict[str, Any]:
        """What ingestion reads of existing groups (status, resolved_in_version), as plain
        rows by id: no ORM objects and no locks on the ingestion path."""
        g = FailureGroup
        out: dict[str, Any] = {}
        if self.dialect == "sqlite" and ids:
            rows = await self._sqlite_in(_GROUPS_BY_ID, ids)
            return {r[0]: _GroupState(*r) for r in rows}
        for chunk in chunks(list(ids)):
            rows = await self.session.execute(
                select(g.id, g.status, g.resolved_in_version).where(self._in(g.id, chunk))
            )
            out.update({r.id: r for r in rows})
        return out

    async def upsert_groups(self, rows: list[dict[str, Any]]) -> None:
        """Create the batch's new groups and add its counts to existing ones, in one
        statement at the end of the unit of work: concurrent batches sharing groups wait for
        each other only there. Rows go in id order, so their locks never deadlock."""
        if not rows:
            return
        rows = sorted(rows, key=lambda r: r["id"])
        if self.dialect == "postgresql":
            await self._upsert_groups_unnest(rows)
            return
        # SQLite: one executemany on the driver, the values converted as SQLAlchemy's insert
        # would (sqlite_records) without its per-row parameter processing. Its two-argument
        # min/max are scalar functions; times are stored as fixed-width text, so they
        # compare as times.
        statement, records = sqlite_records(FailureGroup.__table__, rows)
        statement += (
            " ON CONFLICT (id) DO UPDATE SET "
            "case_count = failure_group.case_count + excluded.case_count, "
            "sampled_out_count = failure_group.sampled_out_count + excluded.sampled_out_count, "
            "first_seen = min(failure_group.first_seen, excluded.first_seen), "
            "last_seen = max(failure_group.last_seen, excluded.last_seen)"
        )
        async with driver_connection(self.session) as raw:
            await (await raw.executemany(statement, records)).close()

    async def _upsert_groups_unnest(self, rows: list[dict[str, Any]]) -> None:
        """The same upsert as one statement over arrays: one row per execution (what an
        executemany does) costs Postgres a statement each, and this runs outside the
        ingest pipeline's overlap, at the end of every batch. ORDER BY keeps the id order
        the rows are locked in."""
        raw = await self._raw_connection()
        await raw.execute(
            f"INSERT INTO failure_group ({', '.join(GROUP_UPSERT_COLUMNS)}) "
            "SELECT * FROM unnest($1::varchar[], $2::varchar[], $3::varchar[], $4::varchar[], "
            "$5::timestamptz[], $6::timestamptz[], $7::bigint[], $8::bigint[], $9::varchar[]) "
            "ORDER BY 1 "
            "ON CONFLICT (id) DO UPDATE SET "
            "case_count = failure_group.case_count + excluded.case_count, "
            "sampled_out_count = failure_group.sampled_out_count + excluded.sampled_out_count, "
            "first_seen = least(failure_group.first_seen, excluded.first_seen), "
            "last_seen = greatest(failure_group.last_seen, excluded.last_seen)",
            *([r[c] for r in rows] for c in GROUP_UPSERT_COLUMNS),
        )

    async def count_evictions(self, per_group: dict[str, int]) -> None:
        if not per_group:
            return

        g = FailureGroup.__table__
        await self.session.execute(
            update(g)
            .where(g.c.id == bindparam("gid"))
            .values(
                case_count=g.c.case_count - bindparam("n"),
                sampled_out_count=g.c.sampled_out_count + bindparam("n"),
            ),
            [{"gid": k, "n": v} for k, v in per_group.items()],
            execution_options={"synchronize_session": False},
        )

    async def mark_regressed(self, group_id: str, version: str, at: datetime) -> None:
        await self.session.execute(
            update(FailureGroup)
            .where(FailureGroup.id == group_id)
            .values(
                status=GroupStatus.REGRESSED.value, regressed_at=at, regressed_in_version=version
            ),
            execution_options={"synchronize_session": False},
        )

    async def update_group(self, group_id: str, values: dict[str, Any]) -> None:
        await self.session.execute(
            update(FailureGroup).where(FailureGroup.id == group_id).values(**values),
            execution_options={"synchronize_session": False},
        )

    async def resolved_groups(
        self, viewer: Principal, since: datetime, until: datetime, model: str | None
    ) -> list[tuple[str, str, str | None, datetime, datetime, str | None]]:
        """Groups resolved in [since, until) with a case `viewer` may see: (id, model,
        failure mode, first seen, resolved at, team of its visible cases)."""
        c, g = FailureCase, FailureGroup
        stmt = (
            select(g.id, Model.name, g.failure_mode, g.first_seen, g.resolved_at, func.min(c.team))
            .join(Model, Model.id == g.model_id)
            .join(c, c.group_id == g.id)
            .where(
                g.resolved_at.is_not(None),
                g.resolved_at >= since,
                g.resolved_at < until,
                *visible_to(viewer),
            )
            .group_by(g.id, Model.name, g.failure_mode, g.first_seen, g.resolved_at)
        )
        if model:
            stmt = stmt.where(Model.name == model)
        return [tuple(r) for r in await self.session.execute(stmt)]  # type: ignore[misc]

    async def unresolved_groups_at(
        self, model: str, severities: Sequence[str], viewer: Principal | None
    ) -> list[tuple[str, str, str, int, str]]:
        """Open or regressed groups of `model` holding cases at one of `severities`, as
        (group id, status, worst severity, such cases, one such case id); one aggregate over
        the model's cases, counting only those `viewer` may see (every case when None)."""
        c, g = FailureCase, FailureGroup
        model_id = select(Model.id).where(Model.name == model).scalar_subquery()
        stmt = (
            select(g.id, g.status, func.min(c.severity), func.count(), func.min(c.id))
            .join(g, g.id == c.group_id)
            .where(
                c.model_id == model_id,
                c.severity.in_(list(severities)),
                g.status.in_(("open", "regressed")),
                *(visible_to(viewer) if viewer is not None else ()),
            )
            .group_by(g.id, g.status)
            .order_by(func.min(c.severity), g.id)
        )
        return [tuple(r) for r in await self.session.execute(stmt)]  # type: ignore[misc]
