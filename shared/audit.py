"""The one audit append: stage entries in the unit of work, chain them at its commit.

Every service records what it audits with `audit(session, principal, action, target, ...)`.
The entries wait on the session and are written by the `before_commit` hook that
`shared.db.Database` installs, in the transaction of the change: a write is never stored
without its entry, and a rolled-back write leaves none. Chaining at commit keeps the head row
(the lock that makes `seq` gap-free) held for the last few statements of a transaction only.

Outcomes that roll their transaction back (refused tokens, authorization failures) are written
with `audit_now`, in a transaction of their own.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import text, update
from sqlalchemy.orm import Session

from shared.db import utcnow
from shared.logging import correlation_id

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from shared.db import Database
    from shared.security import Principal

GENESIS = "0" * 64
# session.info key: the entries this unit of work will append when it commits.
STAGED = "failcat.audit"


@dataclass(frozen=True, slots=True)
class Actor:
    """Who did it, as the audit trail keeps it (a Principal, or a system job by name)."""

    subject: str | None
    client: str | None = None
    team: str | None = None

    @classmethod
    def of(cls, principal: Principal | Actor | str | None) -> Actor:
        if principal is None:
            return cls(subject=None)
        if isinstance(principal, Actor):
            return principal
        if isinstance(principal, str):
            return cls(subject=principal)
        return cls(subject=principal.subject, client=principal.client_id, team=principal.team)


@dataclass(slots=True)
class Staged:
    at: datetime
    actor: Actor
    action: str
    target: str | None
    outcome: str
    correlation_id: str | None
    details: Mapping[str, Any] | None = field(default=None)
    read: bool = False


# The columns an entry's hash covers, in this order (everything but `hash`).
FIELDS = (
    "seq",
    "at",
    "actor_subject",
    "actor_client",
    "actor_team",
    "action",
    "target",
    "outcome",
    "correlation_id",
    "details",
)


def at_text(at: datetime | str) -> str:
    return at.isoformat(timespec="microseconds") if isinstance(at, datetime) else at


def canonical_values(values: tuple[Any, ...] | list[Any]) -> bytes:
    """The bytes an entry's hash covers, from its FIELDS values in order: a JSON array (so no
    key sorting at the top level), `at` in ISO 8601 UTC with microseconds, the keys of
    `details` sorted, so any reader recomputes them identically. Append and verify both go
    through here."""
    row = list(values)
    row[1] = at_text(row[1])
    return orjson.dumps(row, option=orjson.OPT_SORT_KEYS)


def canonical(entry: Mapping[str, Any]) -> bytes:
    return canonical_values([entry[name] for name in FIELDS])


def chain(previous: str, entry: Mapping[str, Any]) -> str:
    return hashlib.sha256(previous.encode() + canonical(entry)).hexdigest()


def chain_values(previous: str, values: tuple[Any, ...] | list[Any]) -> str:
    return hashlib.sha256(previous.encode() + canonical_values(values)).hexdigest()


def audit(
    session: AsyncSession | Session,
    principal: Principal | Actor | str | None,
    action: str,
    target: str | None = None,
    *,
    outcome: str = "ok",
    details: Mapping[str, Any] | None = None,
    read: bool = False,
) -> None:
    """Stage one entry; it is appended when `session` commits, and dropped if it rolls back.
    `details` must never carry payload values (they may be personal data): counts, ids, names
    of fields and kinds only. `read` marks the read of a case's details (dropped only where
    the Database was built with audit_reads=False, for the cost benchmark)."""
    entry = Staged(
        utcnow(),
        Actor.of(principal),
        action,
        target,
        outcome,
        correlation_id.get(),
        details,
        read,
    )
    session.info.setdefault(STAGED, []).append(entry)  # AsyncSession.info is its sync Session's


async def audit_now(
    db: Database,
    principal: Principal | Actor | str | None,
    action: str,
    target: str | None = None,
    *,
    outcome: str,
    details: Mapping[str, Any] | None = None,
) -> None:
    """Append one entry in a transaction of its own: for outcomes whose request rolls back."""
    async with db.transaction() as session:
        audit(session, principal, action, target, outcome=outcome, details=details)


def append_staged(session: Session) -> None:
    """The `before_commit` hook: chain and insert what the unit of work staged."""
    staged: list[Staged] | None = session.info.pop(STAGED, None)
    if staged and not getattr(session, "audit_reads", True):
        staged = [s for s in staged if not s.read]
    if not staged:
        return
    # Taking the head row first is the lock: on SQLite this UPDATE also starts the write
    # transaction (the driver begins lazily), so the head read below is the newest one.
    head_seq, prev = session.execute(
        text("UPDATE audit_head SET seq = seq + :n WHERE id = 1 RETURNING seq, hash"),
        {"n": len(staged)},
    ).one()
    from services.audit.models import AuditEntry  # the table; shared does not own it

    rows = []
    seq = head_seq - len(staged)
    for s in staged:
        seq += 1
        row = {
            "seq": seq,
            "at": s.at,
            "actor_subject": s.actor.subject,
            "actor_client": s.actor.client,
            "actor_team": s.actor.team,
            "action": s.action,
            "target": s.target,
            "outcome": s.outcome,
            "correlation_id": s.correlation_id,
            "details": dict(s.details) if s.details is not None else None,
        }
        prev = row["hash"] = chain(prev, row)
        rows.append(row)
    table = AuditEntry.__table__
    if session.get_bind().dialect.name == "postgresql":
        # One round trip for the rows and the head's new hash: a read's entry costs two
        # statements, not three (SQLite's statements are in-process calls, so it keeps two).
        appended = table.insert().values(rows).cte("appended")
        session.execute(
            update(_head_table()).where(_head_table().c.id == 1).values(hash=prev).add_cte(appended)
        )
        return
    session.execute(table.insert(), rows)
    session.execute(text("UPDATE audit_head SET hash = :h WHERE id = 1"), {"h": prev})


def _head_table() -> Any:
    from services.audit.models import AuditHead

    return AuditHead.__table__
