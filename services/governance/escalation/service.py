"""The escalation service: rules, their evaluation as cases are indexed, firings (deliveries
queued, release blocks), the lifting of blocks, and the delivery log. The only entry point
other packages call. Functions flush; the boundary (request, indexer batch, job) commits.

A rule sees what its creator saw: its team and clearance are stored with it, so a rule
never matches, nor sends to a webhook, a case its creator could not read.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from services.catalog import service as catalog
from services.governance.escalation.matcher import Document, matches
from services.governance.escalation.models import (
    EscalationDelivery,
    EscalationFiring,
    EscalationRule,
    ReleaseBlock,
)
from services.governance.escalation.repository import EscalationRepository
from services.governance.escalation.schemas import Action, LiftIn, RuleIn, RuleKind
from services.search.query import parse
from shared.audit import Actor, audit
from shared.cursor import decode_cursor, encode_cursor
from shared.db import as_utc, shifted, utcnow
from shared.errors import BadUserInput, Conflict, FieldError, NotFound, validation_errors
from shared.ids import new_id
from shared.security import Principal, Scope, Sensitivity
from shared.visibility import Visibility

# Who fires rules, in the audit trail and in the revisions of ticket links.
ACTOR = Actor(subject="escalation", client="escalation")
MAX_PAGE = 100
DELIVERIES = "escalation-deliveries"


def validation_error(exc: ValidationError, prefix: str | None = "rule") -> BadUserInput:
    """Each error named by its input path: under `prefix` when the input is one argument
    (`rule.threshold`), bare when its fields are the mutation's own arguments (`reason`)."""
    errors = validation_errors(exc, prefix or "")
    return BadUserInput(f"invalid {prefix or 'input'}: {errors[0].message}", errors)


def rule_principal(rule: EscalationRule) -> Principal:
    """The rule as a reader: its creator's team and clearance, read access only."""
    return Principal(
        subject=f"escalation-rule:{rule.name}",
        client_id="escalation",
        scopes=frozenset({Scope.CASES_READ.value}),
        team=rule.team,
        clearance=Sensitivity(rule.clearance),
        name=f"escalation rule {rule.name}",
    )


def _sees(rule: EscalationRule, team: str | None, sensitivity: str | None) -> bool:
    return Visibility.of(rule_principal(rule)).allows(team, sensitivity)


# ---- rules ----------------------------------------------------------------------------------


async def create_rule(
    session: AsyncSession, values: dict[str, Any], actor: Principal
) -> tuple[EscalationRule, str]:
    """The rule and its signing secret (shown this once)."""
    try:
        data = RuleIn.model_validate(values)
    except ValidationError as exc:
        raise validation_error(exc) from None
    if missing := data.incomplete():
        errors = [FieldError(f"rule.{name}", message) for name, message in missing]
        raise BadUserInput(f"invalid rule: {errors[0].message}", errors)
    try:
        parse(data.query)  # a rule that cannot parse would fail at every batch
    except BadUserInput as exc:
        raise BadUserInput(exc.message, [FieldError("rule.query", exc.message)]) from None
    repo = EscalationRepository(session)
    if await repo.rule_named(data.name) is not None:
        raise Conflict(f"an escalation rule named {data.name} already exists")
    secret = data.secret or secrets.token_urlsafe(32)
    rule = EscalationRule(
        id=new_id(),
        name=data.name,
        kind=data.kind.value,
        query=data.query,
        threshold=data.threshold or 1,
        window_minutes=data.window_minutes,
        days=data.days,
        webhook_url=data.webhook_url,
        ticket_url=data.ticket_url,
        block_release=data.block_release,
        secret=secret,
        team=actor.team,
        clearance=actor.clearance.value,
        created_at=utcnow(),
        created_by=actor.subject,
    )
    await repo.add(rule)
    audit(
        session,
        actor,
        "escalation.rule_created",
        f"escalation_rule:{rule.id}",
        details={
            "kind": rule.kind,
            "webhook": bool(rule.webhook_url),
            "ticket": bool(rule.ticket_url),
            "block_release": rule.block_release,
        },
    )
    return rule, secret


async def list_rules(session: AsyncSession, viewer: Principal) -> list[EscalationRule]:
    return await EscalationRepository(session).rules(Visibility.of(viewer))


async def get_visible_rule(session: AsyncSession, name: str, viewer: Principal) -> EscalationRule:
    # No stored name holds a NUL (Postgres would refuse it as a parameter): absent.
    rule = None if "\x00" in name else await EscalationRepository(session).rule_named(name)
    if rule is None or not viewer.can_see(rule.team, rule.clearance):
        raise NotFound(f"escalation rule {name} not found")
    return rule


async def set_rule_enabled(
    session: AsyncSession, rule_id: str, enabled: bool, actor: Principal
) -> EscalationRule:
    """Disable a rule (it stops matching and firing at the next batch) or enable it again
    (it judges the cases indexed from then on: what was indexed while it was off is not
    replayed). Deliveries of earlier firings go on. Audited, even when nothing changes."""
    repo = EscalationRepository(session)
    rule = None if "\x00" in rule_id else await repo.rule_by_id(rule_id, for_update=True)
    if rule is None or not actor.can_see(rule.team, rule.clearance):
        raise NotFound(f"escalation rule {rule_id} not found")
    was = rule.enabled
    if was != enabled:
        rule.enabled = enabled
        await session.flush()
    audit(
        session,
        actor,
        "escalation.rule_enabled" if enabled else "escalation.rule_disabled",
        f"escalation_rule:{rule.id}",
        details={"enabled": enabled, "changed": was != enabled},
    )
    return rule


@dataclass
class DeliveryPage:
    nodes: list[EscalationDelivery]
    end_cursor: str | None
    has_next_page: bool


async def deliveries(
    session: AsyncSession, rule_name: str, viewer: Principal, first: int, after: str | None
) -> DeliveryPage:
    """A rule's delivery log, newest first."""
    if not 1 <= first <= MAX_PAGE:
        raise BadUserInput(
            "invalid page size", [FieldError("first", f"between 1 and {MAX_PAGE} (the limit)")]
        )
    rule = await get_visible_rule(session, rule_name, viewer)
    keyset = None
    if after:
        values = decode_cursor(after, DELIVERIES)
        try:
            # Only what deliveries() issues: [created_at in ISO 8601, delivery id]. Anything
            # else (another length, a NUL, a time in year 0 once in UTC) failed later as an
            # INTERNAL unpacking error or a database error naming no field.
            at, last = values
            if not isinstance(at, str) or not isinstance(last, str) or "\x00" in last:
                raise ValueError
            keyset = (as_utc(datetime.fromisoformat(at)), last)
        except (TypeError, ValueError, OverflowError):
            raise BadUserInput(
                "invalid cursor", [FieldError("after", "not a cursor this API issued")]
            ) from None
    rows = await EscalationRepository(session).deliveries(rule.id, first + 1, keyset)
    more, rows = len(rows) > first, rows[:first]
    cursor = (
        encode_cursor(DELIVERIES, [rows[-1].created_at.isoformat(), rows[-1].id]) if rows else None
    )
    return DeliveryPage(rows, cursor, more)


async def attempts_of(session: AsyncSession, delivery_ids: list[str]) -> list[Any]:
    return await EscalationRepository(session).attempts_of(delivery_ids)


async def firings_by_id(session: AsyncSession, ids: list[str]) -> dict[str, EscalationFiring]:
    return await EscalationRepository(session).firings_by_id(ids)


# ---- release blocks -------------------------------------------------------------------------


async def active_blocks(session: AsyncSession, model: str, version: str) -> list[ReleaseBlock]:
    """The blocks in force on a model version (the release gate refuses it while any is)."""
    if "\x00" in model + version:  # no stored model or version holds one
        return []
    return await EscalationRepository(session).active_blocks(model, version)


async def rules_by_id(session: AsyncSession, ids: list[str]) -> dict[str, EscalationRule]:
    return await EscalationRepository(session).rules_by_id(ids)


async def lift_release_block(
    session: AsyncSession, values: dict[str, Any], actor: Principal
) -> list[ReleaseBlock]:
    """Lift every block in force on the version; NotFound when there is none."""
    try:
        data = LiftIn.model_validate(values)
    except ValidationError as exc:
        # model, version and reason are liftReleaseBlock's own arguments: no `lift.` prefix
        raise validation_error(exc, None) from None
    repo = EscalationRepository(session)
    blocks = await active_blocks(session, data.model, data.version)
    if not blocks:
        raise NotFound(f"no release block in force on {data.model} {data.version}")
    now = utcnow()
    await repo.lift_blocks([b.id for b in blocks], now, actor.subject, data.reason)
    for b in blocks:
        b.lifted_at, b.lifted_by, b.lift_reason = now, actor.subject, data.reason
        audit(
            session,
            actor,
            "escalation.block_lifted",
            f"release_block:{b.id}",
            details={"rule_id": b.rule_id, "firing_id": b.firing_id},
        )
    return blocks


# ---- evaluation as cases are indexed --------------------------------------------------------

INDEXED_KINDS = (RuleKind.THRESHOLD.value, RuleKind.GROUP_REGRESSED.value)


async def on_indexed(session: AsyncSession, docs: list[dict[str, Any]]) -> int:
    """The indexer's hook: judge the batch it just indexed against every enabled rule, in
    its transaction, so a firing and its queued deliveries commit with the batch (and a
    failed batch, retried, fires nothing twice). Returns the firings made."""
    if not docs:
        return 0
    repo = EscalationRepository(session)
    rules = await repo.enabled_rules(INDEXED_KINDS)
    if not rules:
        return 0
    now = utcnow()
    batch = [Document(d) for d in docs]
    fired = 0
    for rule in rules:
        tree = parse(rule.query, now)  # per batch: `occurred:>now-1h` means now
        hits = [
            d
            for d in batch
            if _sees(rule, d.values.get("team"), d.values.get("sensitivity")) and matches(d, tree)
        ]
        if not hits:
            continue
        if rule.kind == RuleKind.THRESHOLD.value:
            fired += await _threshold(session, repo, rule, hits, now)
        else:
            fired += await _regressed(session, repo, rule, hits, now)
    return fired


def _at(doc: Document) -> datetime | None:
    value = doc.values.get("occurred_at")
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


async def _threshold(
    session: AsyncSession,
    repo: EscalationRepository,
    rule: EscalationRule,
    hits: list[Document],
    now: datetime,
) -> int:
    """N matching cases within M minutes of each other (by when they occurred). A firing
    consumes its N cases: the next firing needs N new ones. History older than the rule
    (by one window) is not replayed: a new rule does not fire for last year's bursts."""
    window = timedelta(minutes=rule.window_minutes or 0)
    horizon = shifted(rule.created_at, -window)
    rows = [
        {"rule_id": rule.id, "case_id": d.id, "occurred_at": at, "firing_id": None}
        for d in hits
        if (at := _at(d)) is not None and at >= horizon
    ]
    if not rows:
        return 0
    await repo.add_matches(rows)
    times = [r["occurred_at"] for r in rows]
    open_ = await repo.open_matches(
        rule.id, shifted(min(times), -window), shifted(max(times), window)
    )
    fired, i, n = 0, 0, rule.threshold
    while i + n <= len(open_):
        first, last = open_[i], open_[i + n - 1]
        if last[1] - first[1] <= window:
            ids = [case_id for case_id, _ in open_[i : i + n]]
            firing_id = new_id()
            key = f"threshold:{firing_id}"
            await _fire(session, repo, rule, key, ids, None, now, firing_id)
            await repo.consume(rule.id, ids, firing_id)
            fired += 1
            i += n
        else:
            i += 1
    return fired


async def _regressed(
    session: AsyncSession,
    repo: EscalationRepository,
    rule: EscalationRule,
    hits: list[Document],
    now: datetime,
) -> int:
    """Once per group and version it regressed in (the catalog marks a resolved group
    regressed when a case of a later version arrives)."""
    by_group: dict[str, list[str]] = {}
    for d in hits:
        if d.values.get("group_id"):
            by_group.setdefault(d.values["group_id"], []).append(d.id)
    if not by_group:
        return 0
    groups = await catalog.groups_by_id(session, sorted(by_group))
    fired = 0
    for group in groups:
        if group.status != "regressed" or not group.regressed_in_version:
            continue
        key = f"regressed:{group.id}:{group.regressed_in_version}"
        if await _fire(session, repo, rule, key, by_group[group.id], group.id, now):
            fired += 1
    return fired


async def check_left_confirmed(
    session: AsyncSession, search: Any, now: datetime | None = None
) -> int:
    """The `left_confirmed` rules: a periodic job, not an indexing hook (time passing
    indexes nothing). It reads only the cases in `confirmed` that match the rule, through
    the search index (`status:confirmed` is an indexed term; the rule's visibility is the
    search's), then their last change from the catalog. Returns the firings made."""
    now = now or utcnow()
    repo = EscalationRepository(session)
    fired = 0
    for rule in await repo.enabled_rules([RuleKind.LEFT_CONFIRMED.value]):
        query = f"status:confirmed ({rule.query})" if rule.query else "status:confirmed"
        since = now - timedelta(days=rule.days or 0)
        after = None
        while True:
            answer = await search.search(
                rule_principal(rule), query, first=500, after=after, sort="occurred_at"
            )
            ids = [h.id for h in answer.hits]
            if ids:
                cases = await catalog.get_cases(session, ids, rule_principal(rule))
                for case in cases:
                    # The search index may lag a status change by a moment: the catalog decides.
                    if case.status != "confirmed" or case.updated_at > since:
                        continue
                    key = f"confirmed:{case.id}:{case.revision}"
                    if await _fire(session, repo, rule, key, [case.id], case.group_id, now):
                        fired += 1
            if not answer.next_cursor:
                break
            after = answer.next_cursor
    return fired


# ---- retention -------------------------------------------------------------------------------


async def purge_cases(session: AsyncSession, case_ids: list[str]) -> int:
    """Retention purged these cases whole: the frozen webhook bodies naming them keep the
    ids and labels but lose their titles (a pending delivery no longer sends them).
    Returns the firings changed; idempotent."""
    gone = set(case_ids)
    repo = EscalationRepository(session)
    changed = 0
    for firing in await repo.firings_naming(case_ids):
        payload = dict(firing.payload)
        cases = [
            {**c, "title": None} if c.get("id") in gone and c.get("title") is not None else c
            for c in payload.get("cases", [])
        ]
        if cases != payload.get("cases", []):
            await repo.set_firing_payload(firing.id, {**payload, "cases": cases})
            changed += 1
        session.expunge(firing)
    return changed


# ---- firing ---------------------------------------------------------------------------------


def _summary(doc: dict[str, Any]) -> dict[str, Any]:
    """What a receiver learns of a case: ids and curated labels, no captured payload."""
    keys = (
        "id",
        "title",
        "model",
        "model_version",
        "severity",
        "status",
        "failure_mode",
        "group_id",
        "team",
        "occurred_at",
    )
    return {k: doc.get(k) for k in keys}


async def _fire(
    session: AsyncSession,
    repo: EscalationRepository,
    rule: EscalationRule,
    key: str,
    case_ids: list[str],
    group_id: str | None,
    now: datetime,
    firing_id: str | None = None,
) -> bool:
    """Record one firing (once per key), queue its deliveries and place its blocks."""
    firing_id = firing_id or new_id()
    docs = [Document(d).values for d in await catalog.search_documents(session, case_ids)]
    payload = {
        "event": "escalation.fired",
        "firing_id": firing_id,
        "fired_at": now.isoformat(),
        "rule": {"id": rule.id, "name": rule.name, "kind": rule.kind, "query": rule.query},
        "group_id": group_id,
        "cases": [_summary(d) for d in docs],
    }
    row = {
        "id": firing_id,
        "rule_id": rule.id,
        "key": key,
        "fired_at": now,
        "case_ids": case_ids,
        "group_id": group_id,
        "payload": payload,
    }
    if not await repo.add_firing(row):
        return False
    deliveries = [
        {
            "id": new_id(),
            "rule_id": rule.id,
            "firing_id": firing_id,
            "action": action.value,
            "url": url,
            "status": "pending",
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
        }
        for action, url in ((Action.WEBHOOK, rule.webhook_url), (Action.TICKET, rule.ticket_url))
        if url
    ]
    await repo.add_rows(EscalationDelivery, deliveries)
    blocks = []
    if rule.block_release:
        versions = sorted({(d["model"], d["model_version"]) for d in docs if d.get("model")})
        for model, version in versions:
            if await repo.active_blocks(model, version, rule.id):
                continue  # one block per rule and version is enough to refuse it
            blocks.append(
                {
                    "id": new_id(),
                    "model": model,
                    "version": version,
                    "rule_id": rule.id,
                    "firing_id": firing_id,
                    "reason": _reason(rule, len(case_ids), group_id),
                    "case_ids": case_ids,
                    "created_at": now,
                }
            )
        await repo.add_rows(ReleaseBlock, blocks)
    audit(
        session,
        ACTOR,
        "escalation.fired",
        f"escalation_rule:{rule.id}",
        details={
            "firing_id": firing_id,
            "cases": len(case_ids),
            "deliveries": len(deliveries),
            "blocks": len(blocks),
        },
    )
    return True


def _reason(rule: EscalationRule, cases: int, group_id: str | None) -> str:
    if rule.kind == RuleKind.THRESHOLD.value:
        what = f"{cases} cases within {rule.window_minutes} minutes"
    elif rule.kind == RuleKind.GROUP_REGRESSED.value:
        what = f"group {group_id} regressed"
    else:
        what = f"a case left in confirmed for {rule.days} days"
    query = f" matching `{rule.query}`" if rule.query else ""
    return f"escalation rule {rule.name}: {what}{query}"
