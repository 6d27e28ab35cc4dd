"""Every query of the escalation tables, and nothing else."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import String, and_, exists, func, select, update
from sqlalchemy.dialects.postgresql import array
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.governance.escalation.models import (
    EscalationAttempt,
    EscalationDelivery,
    EscalationFiring,
    EscalationMatch,
    EscalationRule,
    ReleaseBlock,
)
from services.governance.escalation.schemas import DeliveryStatus
from shared.visibility import Visibility


class EscalationRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.dialect = session.bind.dialect.name

    def _insert(self, table: Any) -> Any:
        return (pg_insert if self.dialect == "postgresql" else sqlite_insert)(table)

    async def add(self, *rows: Any) -> None:
        self.session.add_all(rows)
        await self.session.flush()

    # ---- rules ------------------------------------------------------------------------------

    async def rule_named(self, name: str) -> EscalationRule | None:
        stmt = select(EscalationRule).where(EscalationRule.name == name)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def rule_by_id(self, rule_id: str, *, for_update: bool = False) -> EscalationRule | None:
        stmt = select(EscalationRule).where(EscalationRule.id == rule_id)
        if for_update and self.dialect == "postgresql":
            stmt = stmt.with_for_update()
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def rules(self, visibility: Visibility | None = None) -> list[EscalationRule]:
        """Every rule, or those a caller may see (its team and clearance are the rule's)."""
        stmt = select(EscalationRule).order_by(EscalationRule.name)
        if visibility is not None:
            stmt = stmt.where(visibility.sqlalchemy(EscalationRule.team, EscalationRule.clearance))
        return list((await self.session.execute(stmt)).scalars())

    async def enabled_rules(self, kinds: Sequence[str]) -> list[EscalationRule]:
        stmt = select(EscalationRule).where(
            EscalationRule.enabled.is_(True), EscalationRule.kind.in_(list(kinds))
        )
        return list((await self.session.execute(stmt)).scalars())

    # ---- threshold matches ------------------------------------------------------------------

    async def add_matches(self, rows: list[dict[str, Any]]) -> None:
        """A case counts once per rule, whichever revision of it matched first."""
        if rows:
            stmt = self._insert(EscalationMatch.__table__).on_conflict_do_nothing()
            await self.session.execute(stmt, rows)

    async def open_matches(
        self, rule_id: str, since: datetime, until: datetime
    ) -> list[tuple[str, datetime]]:
        """Matches no firing has counted yet, occurred in [since, until], oldest first."""
        m = EscalationMatch
        stmt = (
            select(m.case_id, m.occurred_at)
            .where(
                m.rule_id == rule_id,
                m.firing_id.is_(None),
                m.occurred_at >= since,
                m.occurred_at <= until,
            )
            .order_by(m.occurred_at, m.case_id)
        )
        if self.dialect == "postgresql":
            # Two indexers firing the same rule at once: the second waits, then sees the
            # first one's consumption.
            stmt = stmt.with_for_update()
        return [(r.case_id, r.occurred_at) for r in await self.session.execute(stmt)]

    async def firings_naming(self, case_ids: Sequence[str]) -> list[EscalationFiring]:
        """The firings whose cases include any of `case_ids` (their frozen webhook body)."""
        f = EscalationFiring
        if self.dialect == "postgresql":
            # jsonb ?| text[]: does the array hold any of these strings.
            cond = f.case_ids.op("?|")(array(list(case_ids), type_=String))
        else:
            each = func.json_each(f.case_ids).table_valued("value")
            cond = exists(select(1).select_from(each).where(each.c.value.in_(list(case_ids))))
        return list((await self.session.execute(select(f).where(cond))).scalars())

    async def set_firing_payload(self, firing_id: str, payload: dict[str, Any]) -> None:
        f = EscalationFiring
        await self.session.execute(
            update(f).where(f.id == firing_id).values(payload=payload),
            execution_options={"synchronize_session": False},
        )

    async def consume(self, rule_id: str, case_ids: list[str], firing_id: str) -> None:
        m = EscalationMatch
        await self.session.execute(
            update(m)
            .where(m.rule_id == rule_id, m.case_id.in_(case_ids))
            .values(firing_id=firing_id),
            execution_options={"synchronize_session": False},
        )

    # ---- firings, deliveries, blocks --------------------------------------------------------

    async def add_firing(self, row: dict[str, Any]) -> bool:
        """False when the rule already fired for this key (another batch, another process)."""
        stmt = (
            self._insert(EscalationFiring.__table__)
            .values(**row)
            .on_conflict_do_nothing(index_elements=["rule_id", "key"])
            .returning(EscalationFiring.__table__.c.id)
        )
        return (await self.session.execute(stmt)).scalar_one_or_none() is not None

    async def fired_keys(self, rule_id: str, keys: Sequence[str]) -> set[str]:
        f = EscalationFiring
        rows = await self.session.execute(
            select(f.key).where(f.rule_id == rule_id, f.key.in_(list(keys)))
        )
        return set(rows.scalars())

    async def add_rows(self, model: Any, rows: list[dict[str, Any]]) -> None:
        if rows:
            await self.session.execute(model.__table__.insert(), rows)

    async def active_blocks(
        self, model: str, version: str, rule_id: str | None = None
    ) -> list[ReleaseBlock]:
        b = ReleaseBlock
        stmt = select(b).where(b.model == model, b.version == version, b.lifted_at.is_(None))
        if rule_id is not None:
            stmt = stmt.where(b.rule_id == rule_id)
        return list((await self.session.execute(stmt.order_by(b.created_at, b.id))).scalars())

    async def lift_blocks(self, ids: list[str], at: datetime, by: str, reason: str) -> None:
        b = ReleaseBlock
        await self.session.execute(
            update(b)
            .where(b.id.in_(ids), b.lifted_at.is_(None))
            .values(lifted_at=at, lifted_by=by, lift_reason=reason),
            execution_options={"synchronize_session": False},
        )

    async def rules_by_id(self, ids: Sequence[str]) -> dict[str, EscalationRule]:
        if not ids:
            return {}
        rows = await self.session.execute(
            select(EscalationRule).where(EscalationRule.id.in_(list(ids)))
        )
        return {r.id: r for r in rows.scalars()}

    # ---- the sender ---------------------------------------------------------------------------

    async def claim_due(self, now: datetime, limit: int, lease_until: datetime) -> list[Any]:
        """Due pending deliveries with what sending needs (body, secret), leased until
        `lease_until`: another sender skips them meanwhile, and a sender that died mid-request
        leaves them due again once the lease ends."""
        d, f, r = EscalationDelivery, EscalationFiring, EscalationRule
        due = (
            select(d.id)
            .where(d.status == DeliveryStatus.PENDING.value, d.next_attempt_at <= now)
            .order_by(d.next_attempt_at)
            .limit(limit)
        )
        if self.dialect == "postgresql":
            due = due.with_for_update(skip_locked=True)
        ids = list((await self.session.execute(due)).scalars())
        if not ids:
            return []
        await self.session.execute(
            update(d).where(d.id.in_(ids)).values(next_attempt_at=lease_until),
            execution_options={"synchronize_session": False},
        )
        stmt = (
            select(
                d.id,
                d.action,
                d.url,
                d.attempts,
                d.firing_id,
                f.payload,
                f.case_ids,
                r.secret,
                r.name,
            )
            .join(f, f.id == d.firing_id)
            .join(r, r.id == d.rule_id)
            .where(d.id.in_(ids))
        )
        return list(await self.session.execute(stmt))

    async def record_attempt(
        self, delivery_id: str, attempt: int, values: dict[str, Any], log: dict[str, Any]
    ) -> None:
        await self.session.execute(
            update(EscalationDelivery)
            .where(EscalationDelivery.id == delivery_id)
            .values(attempts=attempt, **values),
            execution_options={"synchronize_session": False},
        )
        await self.session.execute(
            EscalationAttempt.__table__.insert(),
            [{"delivery_id": delivery_id, "attempt": attempt, **log}],
        )

    async def set_ticket(self, delivery_id: str, url: str) -> None:
        await self.session.execute(
            update(EscalationDelivery)
            .where(EscalationDelivery.id == delivery_id)
            .values(ticket_url=url),
            execution_options={"synchronize_session": False},
        )

    # ---- reads ------------------------------------------------------------------------------

    async def deliveries(
        self, rule_id: str, first: int, after: tuple[datetime, str] | None
    ) -> list[EscalationDelivery]:
        """Newest first, keyset on (created_at, id)."""
        d = EscalationDelivery
        stmt = select(d).where(d.rule_id == rule_id)
        if after is not None:
            at, last = after
            stmt = stmt.where((d.created_at < at) | and_(d.created_at == at, d.id < last))
        stmt = stmt.order_by(d.created_at.desc(), d.id.desc()).limit(first)
        return list((await self.session.execute(stmt)).scalars())

    async def attempts_of(self, delivery_ids: Sequence[str]) -> list[EscalationAttempt]:
        if not delivery_ids:
            return []
        a = EscalationAttempt
        stmt = (
            select(a)
            .where(a.delivery_id.in_(list(delivery_ids)))
            .order_by(a.delivery_id, a.attempt)
        )
        return list((await self.session.execute(stmt)).scalars())

    async def firings_by_id(self, ids: Sequence[str]) -> dict[str, EscalationFiring]:
        if not ids:
            return {}
        rows = await self.session.execute(
            select(EscalationFiring).where(EscalationFiring.id.in_(list(ids)))
        )
        return {f.id: f for f in rows.scalars()}
