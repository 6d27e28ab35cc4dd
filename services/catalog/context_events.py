"""Context events: what changed around a model (deploys, feature changes, drift alerts,
environment shifts), and which cases and groups came after them.

service.py re-exports the operations here; it stays the catalog's one entry point.

The rule of "preceded": an event precedes a case when the event's scope matches the case (each
scope part the event sets — model, version, data source, environment keys — equals the case's)
and the event occurred at or before the case, within the window (DEFAULT_WINDOW, 7 days, unless
the reader asks for another). `matches` and `preceding` are that rule; every reader (GraphQL
fields, the search document's `after_event`) uses them.

How an event reaches the search index: a case's document carries the kinds of the events that
preceded it (`after_event`) when it is built. Recording an event queues, in the same
transaction and with one INSERT ... SELECT, every case that occurred in the window after it in
its model/version/source scope; the indexer then rebuilds their documents (same revision: the
backends accept an equal revision, so the rebuilt document replaces the stored one). An event
with no model in its scope re-queues every case of its window: such events are meant to be
rare (a platform-wide shift). With several indexers, a batch read just before the event's
commit may land after the re-queued one and write the older kinds back at the same revision;
`failcat search verify` does not see that (the revisions agree) and `failcat reindex` repairs
it. The window of `after_event` is the default one: a query cannot choose it.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from services.catalog.ingest import pydantic_errors
from services.catalog.models import ContextEvent
from services.catalog.repository import CatalogRepository
from services.catalog.schemas import EVENT_CLOCK_SKEW, EVENT_DETAILS, ContextEventIn
from shared.audit import audit
from shared.db import shifted, utcnow
from shared.errors import BadUserInput, FieldError
from shared.ids import new_id
from shared.jsonutil import iso
from shared.security import Principal

DEFAULT_WINDOW = timedelta(days=7)
MAX_WINDOW = timedelta(days=366)
MAX_EVENTS_PER_REQUEST = 1000
EVENT_STATUSES = ("created", "duplicate", "invalid")


@dataclass(slots=True)
class EventResult:
    index: int
    status: str  # created | duplicate | invalid
    id: str | None = None
    errors: list[FieldError] | None = None

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"index": self.index, "status": self.status}
        if self.id is not None:
            out["id"] = self.id
        if self.errors:
            out["errors"] = [e.as_dict() for e in self.errors]
        return out


@dataclass(slots=True)
class StartedAfter:
    """A group's attribution: the event closest before its first case whose scope matches
    that case; how many of the group's cases (those the reader may see) came after it, and how
    many of them within the window after it (the burst the event may explain)."""

    event: ContextEvent
    cases_after: int
    cases_within_window: int


@dataclass(frozen=True, slots=True)
class CaseScope:
    """What the rule compares of a case."""

    occurred_at: datetime
    model: str
    version: str
    source: str
    environment: dict[str, str] | None

    @classmethod
    def of(cls, row: Any) -> CaseScope:
        return cls(row.occurred_at, row.model, row.version, row.source, row.environment)


# --- the rule ------------------------------------------------------------------------------
def check_window(window: timedelta | None) -> timedelta:
    if window is None:
        return DEFAULT_WINDOW
    if window <= timedelta(0) or window > MAX_WINDOW:
        raise BadUserInput(
            "window out of range",
            [FieldError("window", f"between 1 hour and {MAX_WINDOW.days} days")],
        )
    return window


def matches(event: ContextEvent, case: CaseScope) -> bool:
    """The event's scope covers the case: each part it sets equals the case's."""
    if event.model is not None and event.model != case.model:
        return False
    if event.model_version is not None and event.model_version != case.version:
        return False
    if event.data_source is not None and event.data_source != case.source:
        return False
    env = case.environment or {}
    return all(env.get(k) == v for k, v in (event.environment or {}).items())


class EventIndex:
    """Events bucketed by their (model, version) scope and sorted by time in each bucket: a
    case looks in the four buckets that can match it ((its model or any) x (its version or
    any)) and bisects each to its window, so matching a batch of cases to the batch's events
    costs no query and touches only the events of the case's own model and version."""

    def __init__(self, events: Iterable[ContextEvent]) -> None:
        buckets: dict[tuple[str | None, str | None], list[ContextEvent]] = {}
        for e in sorted(events, key=lambda e: (e.occurred_at, e.id)):
            buckets.setdefault((e.model, e.model_version), []).append(e)
        self.buckets = {k: (v, [e.occurred_at for e in v]) for k, v in buckets.items()}

    def preceding(self, case: CaseScope, window: timedelta) -> list[ContextEvent]:
        """Events that preceded `case` within `window`, newest first."""
        start = shifted(case.occurred_at, -window)
        found: list[ContextEvent] = []
        for key in (
            (case.model, case.version),
            (case.model, None),
            (None, case.version),
            (None, None),
        ):
            bucket = self.buckets.get(key)
            if bucket is None:
                continue
            events, times = bucket
            lo, hi = bisect_left(times, start), bisect_right(times, case.occurred_at)
            found += [e for e in events[lo:hi] if matches(e, case)]
        found.sort(key=lambda e: (e.occurred_at, e.id), reverse=True)
        return found


async def _index_for(
    repo: CatalogRepository, scopes: Sequence[CaseScope], window: timedelta
) -> EventIndex:
    """One query: every event that can precede any of `scopes`."""
    if not scopes:
        return EventIndex(())
    start = shifted(min(s.occurred_at for s in scopes), -window)
    end = max(s.occurred_at for s in scopes)
    return EventIndex(await repo.events_between({s.model for s in scopes}, start, end))


async def preceding_events(
    session: AsyncSession, case_ids: Sequence[str], window: timedelta | None = None
) -> dict[str, list[ContextEvent]]:
    """Per case id, the events that preceded it within `window` (default 7 days), newest
    first: two queries for any number of cases. Visibility is the caller's: pass ids of cases
    it may see (events themselves carry no team-sensitive data)."""
    window = check_window(window)
    repo = CatalogRepository(session)
    rows = await repo.case_scopes(case_ids)
    scopes = {r.id: CaseScope.of(r) for r in rows}
    index = await _index_for(repo, list(scopes.values()), window)
    return {cid: index.preceding(scope, window) for cid, scope in scopes.items()}


async def event_kinds_before(
    repo: CatalogRepository, scopes: dict[str, CaseScope]
) -> dict[str, list[str]]:
    """Per case id, the kinds of the events that preceded it within the default window: the
    search document's `after_event`. One query per batch of documents."""
    index = await _index_for(repo, list(scopes.values()), DEFAULT_WINDOW)
    return {
        cid: sorted({e.kind for e in index.preceding(scope, DEFAULT_WINDOW)})
        for cid, scope in scopes.items()
    }


async def started_after(
    session: AsyncSession,
    group_ids: Sequence[str],
    viewer: Principal,
    window: timedelta | None = None,
) -> dict[str, StartedAfter | None]:
    """Per group: the matching event closest before its first case (within `window`), and how
    many of its cases `viewer` may see came after it. Three queries for any number of groups."""
    window = check_window(window)
    repo = CatalogRepository(session)
    firsts = {r.group_id: CaseScope.of(r) for r in await repo.first_cases_of_groups(group_ids)}
    index = await _index_for(repo, list(firsts.values()), window)
    chosen: dict[str, ContextEvent] = {}
    for gid, scope in firsts.items():
        before = index.preceding(scope, window)
        if before:
            chosen[gid] = before[0]
    since = {gid: e.occurred_at for gid, e in chosen.items()}
    counts = await repo.group_cases_since(since, window, viewer)
    return {
        gid: StartedAfter(chosen[gid], *counts.get(gid, (0, 0))) if gid in chosen else None
        for gid in group_ids
    }


# --- recording -----------------------------------------------------------------------------
def validate_event(raw: Any, now: datetime) -> tuple[ContextEventIn, dict[str, Any]]:
    """The event and its kind's details, validated; BadUserInput naming every bad field."""
    if not isinstance(raw, dict):
        raise BadUserInput(
            "an event is a JSON object", [FieldError("$", f"got {type(raw).__name__}")]
        )
    try:
        event = ContextEventIn.model_validate(raw)
    except ValidationError as exc:
        errors = [
            FieldError(e.path, f"unknown kind: use one of {', '.join(EVENT_DETAILS)}")
            if e.path == "kind"
            else e
            for e in pydantic_errors(exc)
        ]
        raise BadUserInput(
            f"invalid event: {errors[0].path}: {errors[0].message}", errors
        ) from None
    errors = []
    try:
        details = (
            EVENT_DETAILS[event.kind]
            .model_validate(event.details)
            .model_dump(mode="json", exclude_none=True)
        )
    except ValidationError as exc:
        details = {}
        errors += pydantic_errors(exc, prefix="details.")
    said_what_changed = "new_definition" in details or "new_hash" in details
    if event.kind == "feature_change" and not errors and not said_what_changed:
        errors.append(
            FieldError("details.new_hash", "give new_hash or new_definition: what it became")
        )
    if event.kind == "deploy":
        for part in ("model", "version"):
            if getattr(event.scope, part) is None:
                errors.append(
                    FieldError(f"scope.{part}", "a deploy names the model version rolled out")
                )
    if event.occurred_at is not None and event.occurred_at > now + EVENT_CLOCK_SKEW:
        skew = int(EVENT_CLOCK_SKEW.total_seconds() // 60)
        errors.append(
            FieldError(
                "occurred_at", f"in the future by more than the allowed clock skew ({skew} min)"
            )
        )
    if errors:
        raise BadUserInput(f"invalid event: {errors[0].path}: {errors[0].message}", errors)
    return event, details


async def record_events(
    session: AsyncSession, items: list[Any], actor: Principal
) -> list[EventResult]:
    """Store a batch of events; one result per item, in order: created, duplicate (an
    external_id already stored: retries are harmless) or invalid with its errors. Then queue
    the cases each new event now precedes for re-indexing. Four statements per batch."""
    now = utcnow()
    results: list[EventResult] = []
    rows: list[dict[str, Any]] = []
    for i, raw in enumerate(items):
        try:
            event, details = validate_event(raw, now)
        except BadUserInput as exc:
            results.append(EventResult(i, "invalid", errors=exc.errors))
            continue
        row = {
            "id": new_id(),
            "kind": event.kind,
            "occurred_at": event.occurred_at or now,
            "recorded_at": now,
            "recorded_by": actor.subject,
            "model": event.scope.model,
            "model_version": event.scope.version,
            "data_source": event.scope.data_source,
            "environment": event.scope.environment,
            "link": event.link,
            "title": event.title,
            "details": details,
            "external_id": event.external_id,
        }
        rows.append(row)
        results.append(EventResult(i, "created", row["id"]))
    repo = CatalogRepository(session)
    keyed = [r["external_id"] for r in rows if r["external_id"] is not None]
    existing = await repo.events_by_external_id(keyed) if keyed else {}
    fresh: list[dict[str, Any]] = []
    by_index = {r.id: r for r in results if r.status == "created"}
    for row in rows:
        key = row["external_id"]
        result = by_index[row["id"]]
        if key is not None and key in existing:
            result.status, result.id = "duplicate", existing[key]
            continue
        if key is not None:
            existing[key] = row["id"]  # a repeat later in the same batch is a duplicate
        fresh.append(row)
    inserted = await repo.insert_events(fresh)
    raced = [r for r in fresh if r["id"] not in inserted]
    if raced:  # stored by a concurrent request between our read and our insert
        stored = await repo.events_by_external_id([r["external_id"] for r in raced])
        for row in raced:
            result = by_index[row["id"]]
            result.status, result.id = "duplicate", stored.get(row["external_id"])
    new = [r for r in fresh if r["id"] in inserted]
    await repo.requeue_cases_after(new, DEFAULT_WINDOW, now)
    counts = {k: sum(r.status == k for r in results) for k in ("created", "duplicate", "invalid")}
    audit(session, actor, "events.record", None, details={"counts": counts})
    return results


async def record_event(session: AsyncSession, item: Any, actor: Principal) -> ContextEvent:
    """One event (GraphQL): the stored event, also when its external_id was already stored."""
    [result] = await record_events(session, [item], actor)
    if result.status == "invalid":
        errors = result.errors or []
        raise BadUserInput(f"invalid event: {errors[0].path}: {errors[0].message}", errors)
    [event] = await CatalogRepository(session).get_events([result.id or ""])
    return event


async def list_events(
    session: AsyncSession,
    *,
    kinds: Sequence[str] | None = None,
    model: str | None = None,
    model_version: str | None = None,
    data_source: str | None = None,
    occurred_after: datetime | None = None,
    occurred_before: datetime | None = None,
    first: int,
    after: tuple[datetime, str] | None = None,
) -> list[ContextEvent]:
    return await CatalogRepository(session).list_events(
        kinds=kinds,
        model=model,
        model_version=model_version,
        data_source=data_source,
        occurred_after=occurred_after,
        occurred_before=occurred_before,
        first=first,
        after=after,
    )


async def events_by_id(session: AsyncSession, ids: list[str]) -> list[ContextEvent]:
    return await CatalogRepository(session).get_events(ids)


def event_json(event: ContextEvent) -> dict[str, Any]:
    """The wire format of a stored event (what REST answers)."""
    return {
        "id": event.id,
        "kind": event.kind,
        "occurred_at": iso(event.occurred_at),
        "recorded_at": iso(event.recorded_at),
        "recorded_by": event.recorded_by,
        "scope": {
            "model": event.model,
            "version": event.model_version,
            "data_source": event.data_source,
            "environment": event.environment,
        },
        "link": event.link,
        "title": event.title,
        "details": event.details,
        "external_id": event.external_id,
    }
