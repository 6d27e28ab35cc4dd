"""Queries of retention purges: the cases a policy makes due, and the set-based purges.

Which cases a policy covers and when is the governance service's rule; these queries only
find and clear catalog rows (services/governance/RETENTION.md)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, func, null, select, update

from services.catalog.models import CaseLink, CaseRevision, DataSource, FailureCase
from services.catalog.repository.base import RepositoryBase


class RetentionQueries(RepositoryBase):
    async def retention_candidates(
        self,
        *,
        data_source: str,
        sensitivity: str,
        received_before: datetime,
        received_since: datetime | None,
        whole: bool,
        after_id: str | None,
        limit: int,
    ) -> list[tuple[str, str]]:
        """(id, group id) of the source's cases at `sensitivity` received before
        `received_before` (and at or after `received_since`) not yet purged (whole, or their
        payload), in id order after `after_id`: a keyset page."""
        c = FailureCase
        source = select(DataSource.id).where(DataSource.name == data_source).scalar_subquery()
        stmt = select(c.id, c.group_id).where(
            c.data_source_id == source,
            c.sensitivity == sensitivity,
            c.purged_at.is_(None),
            c.received_at < received_before,
        )
        if not whole:
            stmt = stmt.where(c.payload_purged_at.is_(None))
        if received_since is not None:
            stmt = stmt.where(c.received_at >= received_since)
        if after_id is not None:
            stmt = stmt.where(c.id > after_id)
        rows = await self.session.execute(stmt.order_by(c.id).limit(limit))
        return [(r[0], r[1]) for r in rows]

    async def clear_cases(
        self, ids: Sequence[str], values: dict[str, Any], *, whole: bool
    ) -> list[tuple[str, int]]:
        """Set `values` (and the next revision) on the cases of `ids` not purged yet (whole,
        or their payload); returns (id, new revision) of those really changed, so a
        concurrent or repeated purge changes each case once."""
        if not ids:
            return []
        c = FailureCase
        stmt = update(c).where(self._in(c.id, ids), c.purged_at.is_(None))
        if not whole:
            stmt = stmt.where(c.payload_purged_at.is_(None))
        stmt = stmt.values(
            {
                **{k: null() if v is None else v for k, v in values.items()},
                "revision": c.revision + 1,
            }
        ).returning(c.id, c.revision)
        rows = await self.session.execute(stmt, execution_options={"synchronize_session": False})
        return [(r[0], r[1]) for r in rows]

    async def keep_payload_purge_time(self, ids: Sequence[str], now: datetime) -> None:
        """A whole purge also stamps the payload's purge time, unless it was purged before."""
        if ids:
            c = FailureCase
            await self.session.execute(
                update(c)
                .where(self._in(c.id, ids))
                .values(payload_purged_at=func.coalesce(c.payload_purged_at, now)),
                execution_options={"synchronize_session": False},
            )

    async def clear_revision_reasons(self, ids: Sequence[str]) -> None:
        """The curators' free-text reasons of the cases' revisions (who and when stay)."""
        if ids:
            r = CaseRevision
            await self.session.execute(
                update(r).where(self._in(r.case_id, ids)).values(reason=None),
                execution_options={"synchronize_session": False},
            )

    async def drop_restricted(self, ids: Sequence[str], roots: frozenset[str]) -> None:
        """Remove the raw values a keep_restricted policy kept under the fields `roots`
        (a value's path starts with its field: `input.customer.email`, `summary`)."""
        if not ids:
            return
        c = FailureCase
        rows = await self.session.execute(
            select(c.id, c.pii_restricted).where(self._in(c.id, ids), c.pii_restricted.is_not(None))
        )
        for case_id, kept in rows.all():
            left = [v for v in kept or () if _root(v.get("path", "")) not in roots]
            if len(left) != len(kept or ()):
                await self.session.execute(
                    update(c).where(c.id == case_id).values(pii_restricted=left or null()),
                    execution_options={"synchronize_session": False},
                )

    async def delete_links(self, ids: Sequence[str]) -> None:
        if ids:
            await self.session.execute(delete(CaseLink).where(self._in(CaseLink.case_id, ids)))

    async def rewrite_revision_changes(self, ids: Sequence[str], rewrite: Any) -> int:
        """Apply `rewrite(changes) -> changes | None` to every revision of the cases of `ids`;
        rows it answers None for stay as they are. Returns the rows rewritten."""
        if not ids:
            return 0
        r = CaseRevision
        rows = await self.session.execute(
            select(r.case_id, r.revision, r.changes).where(self._in(r.case_id, ids))
        )
        changed = []
        for case_id, revision, changes in rows:
            new = rewrite(changes or {})
            if new is not None:
                changed.append({"c": case_id, "r": revision, "ch": new})
        if changed:
            stmt = (
                update(r.__table__)
                .where(r.__table__.c.case_id == bindparam("c"))
                .where(r.__table__.c.revision == bindparam("r"))
                .values(changes=bindparam("ch"))
            )
            await self.session.execute(stmt, changed)
        return len(changed)


def _root(path: str) -> str:
    """The field a JSON path starts in: `input` of `input.a[0].b`."""
    return re.split(r"[.\[]", path, maxsplit=1)[0]
