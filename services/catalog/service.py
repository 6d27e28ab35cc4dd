"""The catalog's operations and rules: the only entry point other packages call.

Functions take the request's session and flush; the boundary (route, job) commits.
"""

from __future__ import annotations

import random
from datetime import datetime
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.catalog.ingest import CURATED_COLUMNS, ingest, unknown_mode_error
from services.catalog.models import (
    CaseLink,
    CaseRevision,
    FailureCase,
    FailureGroup,
    FailureMode,
    Model,
    ModelVersion,
    SeverityGrade,
    TaxonomyVersion,
)
from services.catalog.repository import CatalogRepository
from services.catalog.schemas import CaseFilter, CasePatch, ItemResult, Status
from shared.db import utcnow
from shared.errors import BadUserInput, Conflict, FieldError, Forbidden, NotFound
from shared.ids import new_id
from shared.security import Principal
from shared.visibility import Visibility
from shared.vocabulary import SEVERITIES

TRANSITIONS: dict[str, tuple[str, ...]] = {
    "new": ("triaged", "wont_fix"),
    "triaged": ("confirmed", "wont_fix"),
    "confirmed": ("in_remediation", "wont_fix"),
    "in_remediation": ("resolved", "wont_fix"),
    "resolved": ("triaged",),  # reopen
    "wont_fix": ("triaged",),
    "duplicate": (),
}


async def ingest_cases(
    session: AsyncSession, items: list[Any], actor: Principal, rng: random.Random | None = None
) -> list[ItemResult]:
    """Store a batch of captured cases; one result per item, in order."""
    return await ingest(session, items, actor, rng)


# --- reads -------------------------------------------------------------------------------
async def get_case(
    session: AsyncSession, case_id: str, viewer: Principal, as_of: datetime | None = None
) -> FailureCase:
    repo = CatalogRepository(session)
    case = await repo.get_case(case_id)
    if case is None or not viewer.can_see(case.team, case.sensitivity):
        raise NotFound(f"case {case_id} not found")
    if as_of is None:
        return case
    if case.received_at > as_of:
        raise NotFound(f"case {case_id} did not exist at {as_of.isoformat()}")
    later = await repo.revisions_after(case_id, as_of)
    links = [_link_dict(lk) for lk in await repo.links_of([case_id])]
    return case_as_of(case, links, later)


def case_as_of(
    case: FailureCase, links: list[dict[str, Any]], later: list[CaseRevision]
) -> FailureCase:
    """A detached copy of the case as it was before `later` (newest first) were applied:
    each revision records old values, so undoing them walks the history back."""
    state = _curated_values(case, links)
    for rev in later:
        for name, change in rev.changes.items():
            state[name] = change["old"]
    values = case.model_dump()
    values.update({k: state[k] for k in CURATED_COLUMNS})
    values["tags"] = state["tags"] or []
    if later:
        values["revision"] = later[-1].revision - 1
    copy = FailureCase.model_validate(values)
    copy.__dict__["as_of_links"] = state["links"] or []
    return copy


async def get_cases(session: AsyncSession, ids: list[str], viewer: Principal) -> list[FailureCase]:
    return await CatalogRepository(session).get_cases(ids, viewer)


async def list_cases(
    session: AsyncSession,
    f: CaseFilter,
    viewer: Principal,
    first: int,
    after: tuple[datetime, str] | None,
) -> list[FailureCase]:
    return await CatalogRepository(session).list_cases(f, viewer, first, after)


def visible_case_ids(viewer: Principal) -> Select:
    """The ids of the cases `viewer` may see, as a subquery other services filter their own
    rows with (`column.in_(visible_case_ids(viewer))`): the one visibility rule, in SQL."""
    return select(FailureCase.id).where(
        Visibility.of(viewer).sqlalchemy(FailureCase.team, FailureCase.sensitivity)
    )


async def links_of(session: AsyncSession, case_ids: list[str]) -> list[CaseLink]:
    return await CatalogRepository(session).links_of(case_ids)


async def revisions_of(session: AsyncSession, case_ids: list[str]) -> list[CaseRevision]:
    return await CatalogRepository(session).revisions(case_ids)


async def last_revisions_of(session: AsyncSession, case_ids: list[str]) -> list[CaseRevision]:
    return await CatalogRepository(session).last_revisions(case_ids)


async def models_by_id(session: AsyncSession, ids: list[str]) -> list[Model]:
    return await CatalogRepository(session).models(ids)


async def model_versions_by_id(session: AsyncSession, ids: list[str]) -> list[ModelVersion]:
    return await CatalogRepository(session).model_versions(ids)


async def data_sources_by_id(session: AsyncSession, ids: list[str]) -> list[Any]:
    return await CatalogRepository(session).data_sources(ids)


async def groups_by_id(session: AsyncSession, ids: list[str]) -> list[FailureGroup]:
    return await CatalogRepository(session).get_groups(ids)


async def versions_of_models(session: AsyncSession, model_ids: list[str]) -> list[ModelVersion]:
    return await CatalogRepository(session).versions_of_models(model_ids)


async def visible_group(
    session: AsyncSession, group_id: str, viewer: Principal
) -> FailureGroup | None:
    return await CatalogRepository(session).visible_group(group_id, viewer)


async def list_groups(
    session: AsyncSession,
    viewer: Principal,
    *,
    model: str | None = None,
    status: str | None = None,
    first: int,
    after: tuple[datetime, str] | None = None,
) -> list[FailureGroup]:
    return await CatalogRepository(session).list_groups(
        viewer, model=model, status=status, first=first, after=after
    )


async def taxonomy_versions(session: AsyncSession) -> list[TaxonomyVersion]:
    return await CatalogRepository(session).taxonomy_versions()


async def list_models(session: AsyncSession) -> list[Model]:
    return await CatalogRepository(session).list_models()


async def taxonomy(
    session: AsyncSession, version: int | None = None
) -> tuple[int, list[FailureMode]]:
    repo = CatalogRepository(session)
    v = version or await repo.current_taxonomy_version()
    return v, await repo.taxonomy(v)


async def rubric(session: AsyncSession) -> list[SeverityGrade]:
    return await CatalogRepository(session).rubric()


# --- curation ----------------------------------------------------------------------------
async def update_case(
    session: AsyncSession,
    case_id: str,
    patch: CasePatch,
    expected_revision: int,
    actor: Principal,
    reason: str | None = None,
) -> FailureCase:
    repo = CatalogRepository(session)
    case = await repo.get_case(case_id, for_update=True)
    if case is None or not actor.can_see(case.team, case.sensitivity):
        raise NotFound(f"case {case_id} not found")
    if case.revision != expected_revision:
        raise Conflict(
            f"case {case_id} is at revision {case.revision}, not the expected {expected_revision}"
        )
    fields = patch.model_dump(mode="json", exclude_unset=True)
    if "status" in fields:
        _check_transition(case.status, fields["status"])
    if "sensitivity" in fields and not actor.can_see(None, fields["sensitivity"]):
        raise Forbidden("cannot raise sensitivity above your own clearance")
    values: dict[str, Any] = {}
    if "failure_mode" in fields and fields["failure_mode"] is not None:
        version = await repo.current_taxonomy_version()
        modes = await repo.failure_modes(version)
        code = fields["failure_mode"]
        if code not in modes:
            raise BadUserInput("unknown failure mode", [unknown_mode_error(code, modes)])
        values["failure_mode_parent"] = modes[code] or code
        values["taxonomy_version"] = version
    elif "failure_mode" in fields:
        values["failure_mode_parent"] = None
        values["taxonomy_version"] = None
    before = _curated_values(case, [_link_dict(lk) for lk in await repo.links_of([case_id])])
    changes = {k: {"old": before.get(k), "new": v} for k, v in fields.items() if before.get(k) != v}
    if not changes:
        return case
    return await _write_revision(repo, case, fields, values, changes, actor, reason)


async def _write_revision(
    repo: CatalogRepository,
    case: FailureCase,
    fields: dict[str, Any],
    values: dict[str, Any],
    changes: dict[str, Any],
    actor: Principal,
    reason: str | None,
) -> FailureCase:
    now = utcnow()
    new_rev = case.revision + 1
    columns = {k: v for k, v in fields.items() if k != "links"}
    columns.update(values, revision=new_rev, updated_at=now)
    if not await repo.update_case_if_revision(case.id, case.revision, columns):
        raise Conflict(f"case {case.id} changed while updating; reload and retry")
    if "links" in fields:
        await repo.replace_links(case.id, fields["links"] or [])
    for k, v in columns.items():
        setattr(case, k, v)
    await repo.insert_rows(
        CaseRevision,
        [
            {
                "case_id": case.id,
                "revision": new_rev,
                "actor": actor.subject,
                "created_at": now,
                "reason": reason,
                "changes": changes,
            }
        ],
    )
    await repo.add_outbox([(case.id, new_rev)], now)
    return case


def _link_dict(link: CaseLink) -> dict[str, Any]:
    return {"kind": link.kind, "url": link.url, "title": link.title}


def _curated_values(case: FailureCase, links: list[dict[str, Any]]) -> dict[str, Any]:
    out = {k: getattr(case, k) for k in CURATED_COLUMNS}
    out["tags"] = case.tags or []
    out["links"] = links
    return out


def _check_transition(current: str, target: str) -> None:
    allowed = TRANSITIONS.get(current, ())
    if target != current and target not in allowed:
        hint = (
            ", ".join(allowed) or "none (use mergeCase for duplicates)"
            if current != "duplicate"
            else "none: a duplicate is final"
        )
        if target == Status.DUPLICATE.value:
            hint = "use mergeCase to mark a duplicate"
        raise BadUserInput(
            f"cannot move a case from {current} to {target}",
            [FieldError("status", f"allowed from {current}: {hint}")],
        )


async def merge_case(
    session: AsyncSession,
    case_id: str,
    into_id: str,
    expected_revision: int,
    actor: Principal,
    reason: str | None = None,
) -> FailureCase:
    """Mark `case_id` a duplicate of `into_id`; both keep their histories."""
    if case_id == into_id:
        raise BadUserInput("cannot merge a case into itself", [FieldError("into", "same case")])
    repo = CatalogRepository(session)
    survivor = await repo.get_case(into_id)
    if survivor is None or not actor.can_see(survivor.team, survivor.sensitivity):
        raise NotFound(f"case {into_id} not found")
    if survivor.merged_into_id:
        raise BadUserInput(
            "the survivor is itself a duplicate",
            [FieldError("into", f"merge into {survivor.merged_into_id} instead")],
        )
    case = await repo.get_case(case_id, for_update=True)
    if case is None or not actor.can_see(case.team, case.sensitivity):
        raise NotFound(f"case {case_id} not found")
    if case.revision != expected_revision:
        raise Conflict(
            f"case {case_id} is at revision {case.revision}, not the expected {expected_revision}"
        )
    if case.status == "duplicate":
        raise BadUserInput(
            "case is already a duplicate", [FieldError("id", f"merged into {case.merged_into_id}")]
        )
    fields = {"status": "duplicate", "merged_into_id": into_id}
    changes = {
        "status": {"old": case.status, "new": "duplicate"},
        "merged_into_id": {"old": None, "new": into_id},
    }
    return await _write_revision(
        repo, case, fields, {}, changes, actor, reason or f"merged into {into_id}"
    )


async def resolve_group(
    session: AsyncSession, group_id: str, fixed_in_version: str, actor: Principal
) -> FailureGroup:
    repo = CatalogRepository(session)
    group = await repo.get_group(group_id)
    if group is None:
        raise NotFound(f"group {group_id} not found")
    versions = {v.version for v in await repo.versions_of_model(group.model_id)}
    if fixed_in_version not in versions:
        raise BadUserInput(
            "unknown model version",
            [FieldError("fixedInVersion", f"known versions: {', '.join(sorted(versions))}")],
        )
    now = utcnow()
    await repo.update_group(
        group_id,
        {"status": "resolved", "resolved_in_version": fixed_in_version, "resolved_at": now},
    )
    await session.refresh(group)
    return group


async def publish_taxonomy(
    session: AsyncSession, codes: list[dict[str, str]], actor: Principal, note: str | None = None
) -> int:
    """A new taxonomy version: the current codes plus `codes`; old cases keep their version."""
    repo = CatalogRepository(session)
    current = await repo.current_taxonomy_version()
    existing = await repo.taxonomy(current)
    known = {m.code for m in existing}
    errors = []
    for i, c in enumerate(codes):
        parent = c["code"].split(".")[0] if "." in c["code"] else None
        if c["code"] in known:
            errors.append(FieldError(f"codes.{i}.code", f"{c['code']} already exists"))
        elif parent and parent not in known and parent not in {x["code"] for x in codes}:
            errors.append(FieldError(f"codes.{i}.code", f"parent {parent} does not exist"))
    if errors:
        raise BadUserInput(f"invalid taxonomy codes: {errors[0].message}", errors)
    version = current + 1
    modes = [
        FailureMode(
            taxonomy_version=version,
            code=m.code,
            parent=m.parent,
            title=m.title,
            description=m.description,
        )
        for m in existing
    ]
    modes += [
        FailureMode(
            taxonomy_version=version,
            code=c["code"],
            parent=c["code"].split(".")[0] if "." in c["code"] else None,
            title=c.get("title") or c["code"],
            description=c.get("description", ""),
        )
        for c in codes
    ]
    await repo.publish_taxonomy(
        TaxonomyVersion(
            version=version, published_at=utcnow(), published_by=actor.subject, note=note
        ),
        modes,
    )
    return version


# --- the outbox and search documents (called by the search service's indexer) -------------
async def outbox_batch(session: AsyncSession, limit: int) -> list[tuple[int, str, int]]:
    return await CatalogRepository(session).outbox_batch(limit)


async def outbox_ack(session: AsyncSession, ids: list[int]) -> None:
    await CatalogRepository(session).outbox_ack(ids)


async def search_documents(session: AsyncSession, case_ids: list[str]) -> list[dict[str, Any]]:
    return [_document(*row) for row in await CatalogRepository(session).document_rows(case_ids)]


async def iter_search_documents(
    session: AsyncSession, after_id: str | None, limit: int
) -> list[dict[str, Any]]:
    rows = await CatalogRepository(session).document_rows_after(after_id, limit)
    return [_document(*row) for row in rows]


async def case_revisions(session: AsyncSession) -> list[tuple[str, int]]:
    return await CatalogRepository(session).case_revisions()


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def _document(case: FailureCase, model: str, version: str, source: str) -> dict[str, Any]:
    writeup = case.writeup or {}
    return {
        "id": case.id,
        "revision": case.revision,
        "title": case.title,
        "summary": case.summary,
        "impact": case.impact,
        **{
            f"writeup_{k}": writeup.get(k)
            for k in ("hypothesis", "experiments", "results", "rationale")
        },
        "model": model,
        "model_version": version,
        "data_source": source,
        "failure_mode": case.failure_mode,
        "failure_mode_parent": case.failure_mode_parent,
        "severity": case.severity,
        "severity_rank": SEVERITIES.index(case.severity) if case.severity else None,
        "status": case.status,
        "team": case.team,
        "tags": case.tags or [],
        "sensitivity": case.sensitivity,
        "environment": case.environment or {},
        "occurred_at": _iso(case.occurred_at),
        "received_at": _iso(case.received_at),
        "confidence": case.confidence,
        "latency_ms": case.latency_ms,
        "group_id": case.group_id,
        "merged_into_id": case.merged_into_id,
    }


async def page_relations(session: AsyncSession, cases: list[FailureCase]) -> Any:
    """Model, version, source names and links for a page: four queries, whatever its size."""
    from services.catalog.views import PageRelations

    if not cases:
        return PageRelations()
    repo = CatalogRepository(session)
    refs = PageRelations()
    refs.models = {m.id: m.name for m in await repo.models(list({c.model_id for c in cases}))}
    refs.versions = {
        v.id: v.version
        for v in await repo.model_versions(list({c.model_version_id for c in cases}))
    }
    refs.sources = {
        s.id: s.name for s in await repo.data_sources(list({c.data_source_id for c in cases}))
    }
    for link in await repo.links_of([c.id for c in cases]):
        refs.links.setdefault(link.case_id, []).append(_link_dict(link))
    return refs


# --- sampling rules ----------------------------------------------------------------------
async def set_sampling_rule(
    session: AsyncSession,
    *,
    model_name: str,
    data_source: str,
    daily_cap: int,
    keep_at_or_above: str = "S1",
    enabled: bool = True,
    actor: Principal,
) -> None:
    errors = []
    if daily_cap < 1:
        errors.append(FieldError("dailyCap", "must be at least 1"))
    if keep_at_or_above not in SEVERITIES:
        errors.append(FieldError("keepAtOrAbove", f"one of {', '.join(SEVERITIES)}"))
    if errors:
        raise BadUserInput(f"invalid sampling rule: {errors[0].message}", errors)
    await CatalogRepository(session).upsert_sampling_rule(
        {
            "id": new_id(),
            "model_name": model_name,
            "data_source": data_source,
            "keep_at_or_above": keep_at_or_above,
            "daily_cap": daily_cap,
            "enabled": enabled,
            "updated_at": utcnow(),
            "updated_by": actor.subject,
        }
    )


async def sampling_rules(session: AsyncSession) -> list[Any]:
    return await CatalogRepository(session).sampling_rules()


async def cases_as_json(
    session: AsyncSession, ids: list[str], viewer: Principal
) -> dict[str, dict[str, Any]]:
    """Visible cases by id in the wire format (REST answers that embed cases)."""
    from services.catalog.views import case_json

    cases = await get_cases(session, ids, viewer)
    refs = await page_relations(session, cases)
    return {c.id: case_json(c, refs) for c in cases}
