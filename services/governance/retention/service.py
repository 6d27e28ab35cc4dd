"""Retention: policies, legal holds and the purge job (RETENTION.md).

Policy and hold operations take the request's session and flush; the boundary commits. The
purge job (`run`) is a job boundary itself, like the search indexer: it commits a chunk at a
time, so a large purge neither holds one long transaction nor loses its progress when it is
stopped (the next run carries on; every purge is idempotent).

Cases are read and purged through the catalog service only: its purge operations write the
tombstone revision and the outbox row (the search index follows), this service decides what
is due, honours holds, and audits.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.annotation import service as annotation
from services.catalog import service as catalog
from services.governance.escalation import service as escalation
from services.governance.retention.models import LegalHold, RetentionPolicy
from services.governance.retention.repository import RetentionRepository
from services.governance.retention.schemas import (
    HoldKind,
    LegalHoldIn,
    PolicyRun,
    RetentionPolicyIn,
    RunReport,
)
from services.safeguards import service as safeguards
from services.sharing import service as sharing
from shared.audit import audit
from shared.db import Database, utcnow
from shared.errors import BadUserInput, FieldError, NotFound
from shared.security import SYSTEM, Principal

log = logging.getLogger("failcat.retention")

# The actor of purges: revisions and audit entries name the job, not a person.
RETENTION = dataclasses.replace(SYSTEM, subject="system:retention", name="retention job")
CHUNK = 500
# A chunk is one transaction: past this it is the long transaction chunks exist to avoid, and
# past 2^63 the drivers cannot even bind it as a LIMIT.
MAX_CHUNK = 50_000


def _days(n: int) -> str:
    return "1 day" if n == 1 else f"{n} days"  # the revision reason read "TTL of 1 days"


# --- policies ------------------------------------------------------------------------------
async def set_retention_policy(
    session: AsyncSession, values: dict[str, Any], actor: Principal
) -> RetentionPolicy:
    """Create, change or (both TTLs null) remove the policy of (data source, sensitivity)."""
    spec = RetentionPolicyIn.model_validate(values)
    p, c = spec.payload_ttl_days, spec.case_ttl_days
    if p is not None and c is not None and c < p:
        # A case purged whole takes its payload with it: a longer payload TTL would mislead.
        raise BadUserInput(
            "case TTL shorter than payload TTL",
            [
                FieldError(
                    "case_ttl_days",
                    # No argument names in the text: GraphQL spells them payloadTtlDays.
                    f"{_days(c)} is shorter than the payload TTL of {_days(p)}: a case purged "
                    "whole loses its payload too; make the payload TTL shorter or leave it null",
                )
            ],
        )
    repo = RetentionRepository(session)
    now = utcnow()
    row = {
        "data_source": spec.data_source,
        "sensitivity": spec.sensitivity.value,
        "payload_ttl_days": p,
        "case_ttl_days": c,
        "updated_at": now,
        "updated_by": actor.subject,
    }
    if p is None and c is None:
        removed = await repo.delete_policy(spec.data_source, spec.sensitivity.value)
        action = "retention.policy.remove" if removed else None
    else:
        await repo.upsert_policy(row)
        action = "retention.policy.set"
    if action is not None:
        audit(
            session,
            actor,
            action,
            f"retention_policy:{spec.data_source}/{spec.sensitivity.value}",
            details={"payload_ttl_days": p, "case_ttl_days": c},
        )
    return RetentionPolicy(**row)


async def retention_policies(session: AsyncSession) -> list[RetentionPolicy]:
    return await RetentionRepository(session).policies()


# --- legal holds ---------------------------------------------------------------------------
async def set_legal_hold(
    session: AsyncSession, values: dict[str, Any], actor: Principal
) -> LegalHold:
    """Put or lift a hold on a case or a group the caller may see (NOT_FOUND otherwise, as
    for an id that exists nowhere). Putting one again renews its reason; lifting one already
    lifted changes nothing and answers it as it was lifted; lifting where no hold was ever put
    is NOT_FOUND (there is no hold to answer)."""
    spec = LegalHoldIn.model_validate(values)
    reason = spec.reason.strip()
    if not reason:
        raise BadUserInput("a hold needs a reason", [FieldError("reason", "must say why")])
    if "\x00" in spec.target_id:  # no id holds one (Postgres refuses it as a parameter)
        raise NotFound(f"{spec.kind.value} {spec.target_id} not found")
    if spec.kind is HoldKind.CASE:
        await catalog.get_visible_case(session, spec.target_id, actor)
    else:
        await catalog.get_visible_group(session, spec.target_id, actor)
    repo = RetentionRepository(session)
    current = await repo.hold(spec.kind.value, spec.target_id, for_update=True)
    now = utcnow()
    if spec.hold:
        values = {
            "kind": spec.kind.value,
            "target_id": spec.target_id,
            "active": True,
            "reason": reason,
            "held_by": actor.subject,
            "held_at": now,
            "lifted_by": None,
            "lifted_at": None,
            "lift_reason": None,
        }
        action = "retention.legal_hold.set"
    elif current is not None and current.active:
        values = {
            **current.model_dump(),
            "active": False,
            "lifted_by": actor.subject,
            "lifted_at": now,
            "lift_reason": reason,
        }
        action = "retention.legal_hold.lift"
    elif current is not None:
        return current  # lifted already: answer it as it is, write nothing
    else:
        raise NotFound(f"no legal hold on {spec.kind.value} {spec.target_id} to lift")
    await repo.upsert_hold(values)
    audit(session, actor, action, f"{spec.kind.value}:{spec.target_id}", details={"reason": reason})
    if current is not None:
        session.expunge(current)  # the row changed under it; answer the new values
    return LegalHold(**values)


async def case_holds(
    session: AsyncSession, cases: list[tuple[str, str]]
) -> dict[str, LegalHold | None]:
    """The hold covering each (case id, group id): the case's own, else its group's."""
    holds = await RetentionRepository(session).active_holds(
        [c for c, _ in cases], [g for _, g in cases]
    )
    by = {(h.kind, h.target_id): h for h in holds}
    return {
        cid: by.get((HoldKind.CASE.value, cid)) or by.get((HoldKind.GROUP.value, gid))
        for cid, gid in cases
    }


async def group_holds(session: AsyncSession, group_ids: list[str]) -> dict[str, LegalHold]:
    holds = await RetentionRepository(session).active_holds([], group_ids)
    return {h.target_id: h for h in holds}


# --- the purge job -------------------------------------------------------------------------
Progress = Callable[[str], None]


async def run(
    db: Database,
    *,
    now: datetime | None = None,
    dry_run: bool = False,
    chunk: int = CHUNK,
    progress: Progress | None = None,
) -> RunReport:
    """Apply every policy as of `now`: purge whole the cases past their case TTL, then the
    payload of those past their payload TTL, skipping held cases. A dry run reads the same
    pages and writes nothing (no purge, no revision, no outbox row, no audit entry)."""
    now = now or utcnow()
    report = RunReport(now=now, dry_run=dry_run)
    async with db.transaction() as session:
        policies = await retention_policies(session)
    for policy in policies:
        result = PolicyRun(
            policy.data_source,
            policy.sensitivity,
            policy.payload_ttl_days,
            policy.case_ttl_days,
        )
        report.policies.append(result)
        case_ttl, payload_ttl = policy.case_ttl_days, policy.payload_ttl_days
        if case_ttl is not None:
            await _stage(db, policy, result, now, chunk, dry_run, progress, whole=True)
        if payload_ttl is not None:
            await _stage(db, policy, result, now, chunk, dry_run, progress, whole=False)
    if not dry_run and (report.payload_purged or report.cases_purged):
        async with db.transaction() as session:
            audit(
                session,
                RETENTION,
                "retention.run",
                None,
                details={
                    "payload_purged": report.payload_purged,
                    "cases_purged": report.cases_purged,
                    "held": report.held,
                    "policies": len(report.policies),
                },
            )
    return report


async def _stage(
    db: Database,
    policy: RetentionPolicy,
    result: PolicyRun,
    now: datetime,
    chunk: int,
    dry_run: bool,
    progress: Progress | None,
    *,
    whole: bool,
) -> None:
    """One TTL of one policy, a keyset page at a time, each page in its own transaction."""
    ttl = policy.case_ttl_days if whole else policy.payload_ttl_days
    assert ttl is not None
    before = now - timedelta(days=ttl)
    # The payload stage leaves out what the case stage purges whole (or would, in a dry run),
    # so a dry run counts exactly what a real run purges.
    since = (
        now - timedelta(days=policy.case_ttl_days)
        if not whole and policy.case_ttl_days is not None
        else None
    )
    what = "cases" if whole else "payloads"
    name = f"{policy.data_source}/{policy.sensitivity}"
    reason = (
        f"retention: {'case' if whole else 'payload'} TTL of {_days(ttl)} "
        f"(data source {policy.data_source}, sensitivity {policy.sensitivity})"
    )
    purged = result.cases_purged if whole else result.payload_purged
    after: str | None = None
    while True:
        async with db.transaction() as session:
            page = await catalog.retention_candidates(
                session,
                data_source=policy.data_source,
                sensitivity=policy.sensitivity,
                received_before=before,
                received_since=since,
                whole=whole,
                after_id=after,
                limit=chunk,
            )
            if not page:
                return
            after = page[-1][0]
            # Read in the purge's own transaction: a hold committed before it is honoured.
            holds = await case_holds(session, page)
            held = [cid for cid, hold in holds.items() if hold is not None]
            due = [cid for cid, hold in holds.items() if hold is None]
            if dry_run or not due:
                done = due
            elif whole:
                done = await catalog.purge_cases(session, due, RETENTION, reason, now)
                await _purge_elsewhere(session, done)
            else:
                done = await catalog.purge_payloads(session, due, RETENTION, reason, now)
                await safeguards.purge_case_copies(session, done)
            if not dry_run:
                for cid in done:
                    audit(
                        session,
                        RETENTION,
                        "retention.purge_case" if whole else "retention.purge_payload",
                        f"case:{cid}",
                        details={"policy": name, "ttl_days": ttl},
                    )
        result.held.update(held)
        purged.extend(done)
        if progress is not None:
            progress(
                f"retention {name}: {len(purged)} {what} "
                f"{'due' if dry_run else 'purged'}, {len(result.held)} held"
            )


async def _purge_elsewhere(session: AsyncSession, case_ids: list[str]) -> None:
    """What other services keep of cases purged whole, in the same transaction: what people
    wrote about them (annotations, reviews, agenda items, comments), the copies of their
    payload (suites, scenarios, run outcomes) and their titles in webhook bodies."""
    if not case_ids:
        return
    await annotation.purge_cases(session, case_ids)
    await sharing.purge_case_comments(session, case_ids)
    await safeguards.purge_case_copies(session, case_ids)
    await escalation.purge_cases(session, case_ids)


async def retention_loop(db: Database, interval_s: float) -> None:
    """The worker's scheduled job: a run every `interval_s` seconds (the first after one
    interval, so a restart loop does not purge in a burst). A failed run is logged and
    retried at the next tick; purges are idempotent."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            report = await run(db)
        except asyncio.CancelledError:
            raise
        except Exception:  # the job outlives one bad run
            log.exception("retention run failed; retrying at the next interval")
            continue
        if report.payload_purged or report.cases_purged:
            log.info(
                "retention: purged %d payloads and %d cases (%d held)",
                report.payload_purged,
                report.cases_purged,
                report.held,
            )
