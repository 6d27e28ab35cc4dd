"""The catalog's operations and rules: the only entry point other packages call.

Functions take the request's session and flush; the boundary (route, job) commits.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from services.catalog import limits as L
from services.catalog.capture_policies import (
    capture_policy_history,
    capture_policy_json,
    get_capture_policy,
    list_capture_policies,
    set_capture_policy,
)
from services.catalog.context_events import (
    DEFAULT_WINDOW,
    EVENT_STATUSES,
    MAX_EVENTS_PER_REQUEST,
    CaseScope,
    EventResult,
    StartedAfter,
    event_json,
    event_kinds_before,
    events_by_id,
    list_events,
    preceding_events,
    record_event,
    record_events,
    started_after,
)
from services.catalog.document import search_document as _document
from services.catalog.ingest import (
    CURATED_COLUMNS,
    ingest,
    pydantic_errors,
    unknown_mode_error,
)
from services.catalog.models import (
    CaseLink,
    CaseRevision,
    FailureCase,
    FailureGroup,
    FailureMode,
    Model,
    ModelVersion,
    SamplingRule,
    SeverityGrade,
    TaxonomyVersion,
)
from services.catalog.repository import CatalogRepository, visible_to
from services.catalog.repository import visible_case_ids as _visible_case_ids
from services.catalog.schemas import (
    INGEST_STATUSES,
    CaseFilter,
    CasePatch,
    GroupStatus,
    ItemResult,
    ModelVersionIn,
    Status,
)
from services.catalog.versions import version_key
from services.catalog.views import PageRelations, PastCase, case_json
from shared.audit import Staged, audit
from shared.db import as_utc, utcnow
from shared.errors import BadUserInput, Conflict, FieldError, Forbidden, NotFound
from shared.ids import new_id
from shared.security import SYSTEM, Principal
from shared.vocabulary import SEVERITIES

__all__ = [  # context events and capture policies live in their own modules
    "DEFAULT_WINDOW",
    "EVENT_STATUSES",
    "MAX_EVENTS_PER_REQUEST",
    "EventResult",
    "StartedAfter",
    "capture_policy_history",
    "capture_policy_json",
    "event_json",
    "events_by_id",
    "get_capture_policy",
    "list_capture_policies",
    "list_events",
    "preceding_events",
    "record_event",
    "record_events",
    "set_capture_policy",
    "started_after",
]

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
    results = await ingest(session, items, actor, rng)
    counts = dict.fromkeys(INGEST_STATUSES, 0)
    for r in results:
        counts[r.status] += 1
    audit(session, actor, "cases.ingest", None, details={"counts": counts})
    return results


# --- visibility, for every service that reads or refers to cases -----------------------
# Other services (annotations, audit, suites, exports) apply the one rule through these, never
# through the catalog's repository or models: a case the caller may not see is, to them, absent.
def visible_cases_clause(viewer: Principal) -> Any:
    """The rule as a SQLAlchemy condition on the case table, for a query joined to it."""
    [clause] = visible_to(viewer)
    return clause


def visible_case_ids(viewer: Principal) -> Any:
    """A subquery of the ids of cases `viewer` may see, e.g.
    `select(Annotation).where(Annotation.case_id.in_(service.visible_case_ids(viewer)))`."""
    return _visible_case_ids(viewer)


async def get_visible_case(
    session: AsyncSession,
    case_id: str,
    viewer: Principal,
    *,
    for_update: bool = False,
    tombstones: bool = False,
) -> FailureCase:
    """The case, or NotFound when it is missing or hidden from `viewer` (the same answer, so
    a hidden case's existence does not leak), or purged whole by retention: a tombstone is
    no live case (RETENTION.md); only its history reads it (`tombstones`)."""
    case = await CatalogRepository(session).visible_case(
        case_id, viewer, for_update=for_update, tombstones=tombstones
    )
    if case is None:
        raise NotFound(f"case {case_id} not found")
    return case


async def get_visible_case_and(
    session: AsyncSession,
    case_id: str,
    viewer: Principal,
    also: Callable[[Any], Any],
    params: dict[str, Any],
    read_entry: Staged | None = None,
) -> tuple[FailureCase, Model, Any]:
    """The visible case (NotFound as get_visible_case), its model, and the value of
    `also(case id column)` with `params` bound, all from one statement: a single case's read
    (GraphQL `case(id)`) with another service's per-case condition (the annotation service's
    blind-read flag) costs one query. `read_entry` (shared.audit.entry): the read's audit
    entry, recorded only when the case is found (on Postgres by that same statement)."""
    found = await CatalogRepository(session).visible_case_and(
        case_id, viewer, also(FailureCase.id), params, read_entry
    )
    if found is None:
        raise NotFound(f"case {case_id} not found")
    return found


async def get_visible_group(
    session: AsyncSession, group_id: str, viewer: Principal, *, for_update: bool = False
) -> FailureGroup:
    """The group, or NotFound unless `viewer` may see at least one of its cases."""
    group = await CatalogRepository(session).visible_group(group_id, viewer, for_update=for_update)
    if group is None:
        raise NotFound(f"group {group_id} not found")
    return group


# --- reads -------------------------------------------------------------------------------
async def get_case(session: AsyncSession, case_id: str, viewer: Principal) -> FailureCase:
    return await get_visible_case(session, case_id, viewer)


async def get_case_as_of(
    session: AsyncSession, case_id: str, viewer: Principal, as_of: datetime
) -> PastCase:
    """The case as it was at `as_of`: its curated fields and links then (captured facts never
    change). NotFound when hidden, missing, or not yet received at that time."""
    as_of = as_utc(as_of)
    case = await get_visible_case(session, case_id, viewer)
    if case.received_at > as_of:
        raise NotFound(f"case {case_id} did not exist at {as_of.isoformat()}")
    repo = CatalogRepository(session)
    later = await repo.revisions_after(case_id, as_of)
    links = [_link_dict(lk) for lk in await repo.links_of([case_id])]
    return case_as_of(case, links, later)


def case_as_of(
    case: FailureCase, links: list[dict[str, Any]], later: list[CaseRevision]
) -> PastCase:
    """A detached copy of the case as it was before `later` (newest first) were applied, with
    its links then: each revision records old values, so undoing them walks the history back."""
    state = _curated_values(case, links)
    for rev in later:
        for name, change in rev.changes.items():
            state[name] = change["old"]
    values = case.model_dump()
    values.update({k: state[k] for k in CURATED_COLUMNS})
    values["tags"] = state["tags"] or []
    if later:
        values["revision"] = later[-1].revision - 1
    return PastCase(FailureCase.model_validate(values), state["links"] or [])


async def case_history(
    session: AsyncSession, case_id: str, viewer: Principal
) -> list[CaseRevision]:
    """Every revision of a visible case, oldest first: a tombstone's too, ending with its
    purge."""
    await get_visible_case(session, case_id, viewer, tombstones=True)
    return await CatalogRepository(session).revisions([case_id])


async def get_cases(
    session: AsyncSession, ids: list[str], viewer: Principal, *, tombstones: bool = False
) -> list[FailureCase]:
    """The visible cases among `ids`. Cases retention purged whole are left out (they are no
    evidence, suite member or list entry) unless `tombstones`."""
    return await CatalogRepository(session).get_cases(ids, viewer, tombstones=tombstones)


async def list_cases(
    session: AsyncSession,
    f: CaseFilter,
    viewer: Principal,
    first: int,
    after: tuple[datetime, str] | None,
) -> list[FailureCase]:
    return await CatalogRepository(session).list_cases(f, viewer, first, after)


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


async def hidden_case_counts(
    session: AsyncSession, ids: list[str], viewer: Principal
) -> dict[str, int]:
    return await CatalogRepository(session).hidden_case_counts(ids, viewer)


async def versions_of_models(session: AsyncSession, model_ids: list[str]) -> list[ModelVersion]:
    return await CatalogRepository(session).versions_of_models(model_ids)


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
async def validate_patch(session: AsyncSession, values: dict[str, Any]) -> CasePatch:
    """A patch as sent, validated with every error at once: the schema's, and an unknown
    failure mode beside them (`update_case` checks the mode of a valid patch itself)."""
    try:
        return CasePatch.model_validate(values)
    except ValidationError as exc:
        errors = pydantic_errors(exc)
    mode = values.get("failure_mode")
    if isinstance(mode, str) and not any(e.path == "failure_mode" for e in errors):
        repo = CatalogRepository(session)
        modes = await repo.failure_modes(await repo.current_taxonomy_version())
        if mode not in modes:
            errors.append(unknown_mode_error(mode, modes))
    raise BadUserInput(f"invalid patch: {errors[0].path}: {errors[0].message}", errors)


async def update_case(
    session: AsyncSession,
    case_id: str,
    patch: CasePatch,
    expected_revision: int,
    actor: Principal,
    reason: str | None = None,
) -> FailureCase:
    repo = CatalogRepository(session)
    case = await get_visible_case(session, case_id, actor, for_update=True)
    if case.revision != expected_revision:
        raise Conflict(
            f"case {case_id} is at revision {case.revision}, not the expected {expected_revision}"
        )
    fields = patch.model_dump(mode="json", exclude_unset=True)
    values: dict[str, Any] = {}
    if fields.keys() & {"title", "summary", "impact", "writeup"}:
        # An edit's free text meets the source's redaction policy, as a captured case did.
        fields, found = await _redact_edit(repo, case, fields)
        if found:
            known = {(f["kind"], f["path"]) for f in case.pii_findings or ()}
            new = [f for f in found if (f["kind"], f["path"]) not in known]
            values["pii_findings"] = [*(case.pii_findings or ()), *new]
    if "status" in fields:
        _check_transition(case.status, fields["status"])
    if "sensitivity" in fields and not actor.can_see(None, fields["sensitivity"]):
        raise Forbidden("cannot raise sensitivity above your own clearance")
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


async def _redact_edit(
    repo: CatalogRepository, case: FailureCase, fields: dict[str, Any]
) -> tuple[dict[str, Any], list[dict[str, str]]]:
    from services.governance.redaction import service as redaction

    [source] = await repo.data_sources([case.data_source_id])
    redactor = await redaction.redactor_for(repo.session)
    return redaction.redact_edit(redactor, source.name, fields)


async def _write_revision(
    repo: CatalogRepository,
    case: FailureCase,
    fields: dict[str, Any],
    values: dict[str, Any],
    changes: dict[str, Any],
    actor: Principal,
    reason: str | None,
) -> FailureCase:
    if case.purged_at is not None:
        # A tombstone is not curated again: its content was purged on purpose.
        raise Conflict(f"case {case.id} was purged by retention at {case.purged_at.isoformat()}")
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
                "actor_name": actor.name,
                "created_at": now,
                "reason": reason,
                "changes": changes,
            }
        ],
    )
    await repo.add_outbox([(case.id, new_rev)], now)
    action = (
        "case.merge"
        if "merged_into_id" in changes
        else "case.status"
        if "status" in changes
        else "case.update"
    )
    status = changes.get("status")
    audit(
        repo.session,
        actor,
        action,
        f"case:{case.id}",
        details={"fields": sorted(changes), "revision": new_rev}
        | ({"from": status["old"], "to": status["new"]} if status else {}),
    )
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
    survivor = await get_visible_case(session, into_id, actor)
    if survivor.merged_into_id:
        raise BadUserInput(
            "the survivor is itself a duplicate",
            [FieldError("into", f"merge into {survivor.merged_into_id} instead")],
        )
    case = await get_visible_case(session, case_id, actor, for_update=True)
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
    # The same rule as `Query.group`: a group shows (and changes) only for a caller who may
    # see at least one of its cases.
    group = await get_visible_group(session, group_id, actor, for_update=True)
    versions = {v.version for v in await repo.versions_of_model(group.model_id)}
    if fixed_in_version not in versions:
        [model] = await repo.models([group.model_id])
        raise BadUserInput(
            f"unknown model version {fixed_in_version!r} of {model.name}",
            [
                FieldError(
                    "fixedInVersion",
                    f"known versions: {', '.join(sorted(versions, key=version_key))}; register "
                    f'a new one first with registerModelVersion(model: "{model.name}", '
                    f'version: "{fixed_in_version}", artifactUri: ...)',
                )
            ],
        )
    now = utcnow()
    await repo.update_group(
        group_id,
        {
            "status": GroupStatus.RESOLVED.value,
            "resolved_in_version": fixed_in_version,
            "resolved_at": now,
        },
    )
    await session.refresh(group)
    audit(
        session, actor, "group.resolve", f"group:{group_id}", details={"fixed_in": fixed_in_version}
    )
    return group


# A code is "<family>" or "<family>.<sub-mode>": letters, digits, "_" and "-" in each part.
CODE_PATTERN = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)?")
MAX_CODE, MAX_MODE_TITLE, MAX_NOTE = 120, 200, 2000


def _check_codes(codes: list[dict[str, str]], known: set[str]) -> list[FieldError]:
    """Every problem of every code at once, each named by its field."""
    errors: list[FieldError] = []
    # Codes by their lower-case form: search matches a mode in any case (services/search's
    # fold), so two codes differing only in case would be one mode there and two here.
    first_at: dict[str, int] = {}
    known_folded = {k.lower(): k for k in known}
    for i, c in enumerate(codes):
        code, path = c.get("code") or "", f"codes.{i}.code"
        if not code.strip():
            errors.append(FieldError(path, "must not be empty"))
            continue
        folded = code.lower()
        if len(code) > MAX_CODE:
            errors.append(FieldError(path, f"longer than the limit of {MAX_CODE} characters"))
        elif not CODE_PATTERN.fullmatch(code):
            errors.append(
                FieldError(
                    path,
                    f"{code!r} is not a code: use <family> or <family>.<sub_mode> "
                    "(letters, digits, _ and -)",
                )
            )
        elif folded in first_at:
            j = first_at[folded]
            same = codes[j].get("code") == code
            errors.append(
                FieldError(
                    path,
                    f"{code} is listed twice (also codes.{j})"
                    if same
                    else f"{code} differs from codes.{j} ({codes[j].get('code')}) only in case",
                )
            )
        elif folded in known_folded:
            existing = known_folded[folded]
            errors.append(
                FieldError(
                    path,
                    f"{code} already exists"
                    if existing == code
                    else f"{code} differs from the existing {existing} only in case",
                )
            )
        else:
            parent = code.split(".")[0] if "." in code else None
            if parent and parent not in known and parent not in {x.get("code") for x in codes}:
                errors.append(FieldError(path, f"parent {parent} does not exist"))
        first_at.setdefault(folded, i)
        if len(c.get("title") or "") > MAX_MODE_TITLE:
            errors.append(
                FieldError(f"codes.{i}.title", f"longer than the limit of {MAX_MODE_TITLE}")
            )
    return errors


REGISTERED_FIELDS = ("artifact_uri", "training_data_ref", "feature_config_hash")


async def register_model_version(session: AsyncSession, values: dict[str, Any]) -> ModelVersion:
    """Register a model version before (or after) its first case, with what describes it.

    Idempotent: registering the same description again answers the same version; a version
    that ingestion created bare gets its description; a different description of an already
    described version is a conflict (an artifact does not change under a version number)."""
    spec = ModelVersionIn.model_validate(values)
    repo = CatalogRepository(session)
    now = utcnow()
    model_id = (await repo.ensure_models({spec.model}, now))[spec.model]
    version_id = (await repo.ensure_versions({(model_id, spec.version)}, now))[
        (model_id, spec.version)
    ]
    row = await repo.model_version(version_id, for_update=True)
    wanted = {k: getattr(spec, k) for k in REGISTERED_FIELDS if getattr(spec, k) is not None}
    clash = [
        FieldError(k, f"already registered as {getattr(row, k)!r}")
        for k, v in wanted.items()
        if getattr(row, k) is not None and getattr(row, k) != v
    ]
    if clash:
        raise Conflict(
            f"{spec.model} {spec.version} is already registered with a different description",
            clash,
        )
    missing = {k: v for k, v in wanted.items() if getattr(row, k) is None}
    if missing:
        await repo.update_model_version(version_id, missing)
        await session.refresh(row)
    return row


async def resolved_groups(
    session: AsyncSession,
    viewer: Principal,
    since: datetime,
    until: datetime,
    model: str | None = None,
) -> list[tuple[str, str, str | None, datetime, datetime, str | None]]:
    """Groups resolved in [since, until) that `viewer` may see, for remediation metrics:
    (id, model, failure mode, first seen, resolved at, team of its visible cases; the first
    by name when they span teams)."""
    return await CatalogRepository(session).resolved_groups(viewer, since, until, model)


async def visible_among(session: AsyncSession, ids: list[str], viewer: Principal) -> set[str]:
    """The ids among `ids` (at most a few thousand) of cases `viewer` may see: only the ids
    are read, for services that keep their own copy of what they need (suite exports)."""
    return await CatalogRepository(session).visible_among(ids, viewer)


async def purged_among(session: AsyncSession, ids: list[str]) -> set[str]:
    """The ids among `ids` of cases retention purged whole (tombstones), whoever may see
    them: services that count their own copies of cases (a suite run's total) leave them
    out."""
    return await CatalogRepository(session).purged_among(ids)


async def unresolved_groups_at(
    session: AsyncSession,
    model_name: str,
    severities: list[str],
    viewer: Principal | None = None,
) -> list[tuple[str, str, str, int, str]]:
    """Open or regressed groups of a model with cases at `severities` (the release gate's
    blocking groups): (group id, status, worst severity, such cases, one such case id).
    `viewer` None counts every case: a gate decides on all of them, and shows a caller only
    the evidence it may see."""
    return await CatalogRepository(session).unresolved_groups_at(model_name, severities, viewer)


async def publish_taxonomy(
    session: AsyncSession, codes: list[dict[str, str]], actor: Principal, note: str | None = None
) -> int:
    """A new taxonomy version: the current codes plus `codes`; old cases keep their version."""
    repo = CatalogRepository(session)
    current = await repo.current_taxonomy_version()
    existing = await repo.taxonomy(current)
    errors = _check_codes(codes, {m.code for m in existing})
    if note is not None and len(note) > MAX_NOTE:
        errors.append(FieldError("note", f"longer than the limit of {MAX_NOTE} characters"))
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
            # A blank title, spaces only included, is no title: the code stands for it.
            title=(c.get("title") or "").strip() or c["code"],
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
    audit(session, actor, "taxonomy.publish", f"taxonomy:{version}", details={"added": len(codes)})
    return version


# --- retention purges (called by services/governance/retention) ---------------------------
# The raw captured payload: what a payload purge clears (a redacted summary stays: title,
# summary, failure mode, severity, model, version, status, team, sensitivity, numbers).
PAYLOAD_COLUMNS = ("environment", "input", "prediction", "expected", "signals")
# What a whole-case purge clears beside the payload (links too): the curated write-up and
# the capture's provenance. Ids, model, source, group, grading and visibility stay.
CONTENT_COLUMNS = ("title", "summary", "impact", "writeup", "tags", "provenance")
# Fields whose values a whole-case purge also clears from the case's earlier revisions (they
# keep who changed which field, when and why).
PURGED_HISTORY = frozenset({"title", "summary", "impact", "writeup", "tags", "links"})


async def retention_candidates(
    session: AsyncSession,
    *,
    data_source: str,
    sensitivity: str,
    received_before: datetime,
    received_since: datetime | None = None,
    whole: bool,
    after_id: str | None = None,
    limit: int = 500,
) -> list[tuple[str, str]]:
    """(id, group id) of cases of `data_source` at `sensitivity` received before
    `received_before` (and at or after `received_since`) whose payload (or, `whole`, the
    case) is not purged yet, in id order after `after_id`."""
    return await CatalogRepository(session).retention_candidates(
        data_source=data_source,
        sensitivity=sensitivity,
        received_before=received_before,
        received_since=received_since,
        whole=whole,
        after_id=after_id,
        limit=limit,
    )


async def purge_payloads(
    session: AsyncSession,
    case_ids: list[str],
    actor: Principal,
    reason: str,
    now: datetime | None = None,
) -> list[str]:
    """Clear the raw payload of these cases, each with a tombstone revision and an outbox
    row (the index drops the payload text); cases already purged are left alone. Returns
    the ids purged now."""
    now = now or utcnow()
    values: dict[str, Any] = {k: None for k in PAYLOAD_COLUMNS}
    values.update(payload_purged_at=now, updated_at=now)
    repo = CatalogRepository(session)
    done = await repo.clear_cases(case_ids, values, whole=False)
    # Raw values a keep_restricted policy kept from the payload are payload too.
    await repo.drop_restricted([cid for cid, _ in done], frozenset(PAYLOAD_COLUMNS))
    change = {"payload_purged_at": {"old": None, "new": now.isoformat()}}
    await _tombstones(repo, done, change, actor, reason, now)
    return [cid for cid, _ in done]


async def purge_cases(
    session: AsyncSession,
    case_ids: list[str],
    actor: Principal,
    reason: str,
    now: datetime | None = None,
) -> list[str]:
    """Purge these cases whole: payload, curated content, kept restricted values and links
    cleared (and their values and reasons in earlier revisions), a tombstone revision, and
    an outbox row that removes the search document. The row stays as the tombstone (other
    services refer to it). Cases already purged are left alone; returns the ids purged
    now."""
    now = now or utcnow()
    values: dict[str, Any] = {k: None for k in (*PAYLOAD_COLUMNS, *CONTENT_COLUMNS)}
    # pii_restricted: the raw values a keep_restricted policy kept (kinds and paths stay in
    # pii_findings).
    values.update(tags=[], pii_restricted=None, purged_at=now, updated_at=now)
    repo = CatalogRepository(session)
    done = await repo.clear_cases(case_ids, values, whole=True)
    ids = [cid for cid, _ in done]
    await repo.keep_payload_purge_time(ids, now)
    await repo.delete_links(ids)
    await repo.rewrite_revision_changes(ids, _scrub_history)
    await repo.clear_revision_reasons(ids)  # free text a curator wrote; before the tombstone
    change = {"purged_at": {"old": None, "new": now.isoformat()}}
    await _tombstones(repo, done, change, actor, reason, now)
    return ids


def _scrub_history(changes: dict[str, Any]) -> dict[str, Any] | None:
    purged = PURGED_HISTORY & changes.keys()
    if not purged:
        return None
    return {k: ({"old": None, "new": None} if k in purged else v) for k, v in changes.items()}


async def _tombstones(
    repo: CatalogRepository,
    done: list[tuple[str, int]],
    change: dict[str, Any],
    actor: Principal,
    reason: str,
    now: datetime,
) -> None:
    rows = [
        {
            "case_id": cid,
            "revision": rev,
            "actor": actor.subject,
            "actor_name": actor.name,
            "created_at": now,
            "reason": reason,
            "changes": change,
        }
        for cid, rev in done
    ]
    await repo.insert_rows(CaseRevision, rows)
    await repo.add_outbox(done, now)


# --- the outbox and search documents (called by the search service's indexer) -------------
async def outbox_batch(session: AsyncSession, limit: int) -> list[tuple[int, str, int]]:
    return await CatalogRepository(session).outbox_batch(limit)


async def outbox_ack(session: AsyncSession, ids: list[int]) -> None:
    await CatalogRepository(session).outbox_ack(ids)


async def search_documents(session: AsyncSession, case_ids: list[str]) -> list[dict[str, Any]]:
    repo = CatalogRepository(session)
    return await _documents(repo, await repo.document_rows(case_ids))


async def iter_search_documents(
    session: AsyncSession, after_id: str | None, limit: int
) -> list[dict[str, Any]]:
    repo = CatalogRepository(session)
    return await _documents(repo, await repo.document_rows_after(after_id, limit))


async def _documents(repo: CatalogRepository, rows: list[Any]) -> list[dict[str, Any]]:
    """Documents of a batch: its rows, plus one query for the context events before them."""
    scopes = {
        case.id: CaseScope(case.occurred_at, model, version, source, case.environment)
        for case, model, version, source in rows
    }
    kinds = await event_kinds_before(repo, scopes)
    from services.annotation import search_state  # annotation imports the catalog

    notes = await search_state.document_fields(repo.session, list(scopes))
    return [
        _document(*row, after_events=kinds[row[0].id], annotation=notes.get(row[0].id))
        for row in rows
    ]


async def requeue_for_search(session: AsyncSession, case_ids: list[str]) -> None:
    """Queue cases for re-indexing at their current revision: another service's part of their
    search documents changed (annotation state). The backends accept an equal revision."""
    repo = CatalogRepository(session)
    now = utcnow()
    for start in range(0, len(case_ids), 5000):
        cases = await repo.get_cases(case_ids[start : start + 5000], SYSTEM)
        await repo.add_outbox([(c.id, c.revision) for c in cases], now)


async def case_revisions(session: AsyncSession) -> list[tuple[str, int]]:
    return await CatalogRepository(session).case_revisions()


async def page_relations(session: AsyncSession, cases: list[FailureCase]) -> PageRelations:
    """Model, version, source names and links for a page: four queries, whatever its size."""
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
) -> SamplingRule:
    """Set the rule of (model, source) and return it as stored."""
    # Names as a case's model and data_source are read (schemas.Name): surrounding spaces
    # dropped, 1 to MAX_NAME characters. A blank name matched no case, and one with spaces
    # around never matched the stripped names cases carry.
    model_name, data_source = model_name.strip(), data_source.strip()
    errors = [
        FieldError(path, f"must be 1 to {L.MAX_NAME} characters, not only spaces")
        for path, value in (("modelName", model_name), ("dataSource", data_source))
        if not 0 < len(value) <= L.MAX_NAME
    ]
    if daily_cap < 1:
        errors.append(FieldError("dailyCap", "must be at least 1"))
    if keep_at_or_above not in SEVERITIES:
        errors.append(FieldError("keepAtOrAbove", f"one of {', '.join(SEVERITIES)}"))
    if errors:
        raise BadUserInput(f"invalid sampling rule: {errors[0].path}: {errors[0].message}", errors)
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
    audit(
        session,
        actor,
        "sampling_rule.set",
        f"sampling_rule:{model_name}/{data_source}",
        details={"daily_cap": daily_cap, "keep_at_or_above": keep_at_or_above, "enabled": enabled},
    )
    rules = await CatalogRepository(session).sampling_rules()
    return next(r for r in rules if (r.model_name, r.data_source) == (model_name, data_source))


async def sampling_rules(session: AsyncSession) -> list[Any]:
    return await CatalogRepository(session).sampling_rules()


async def cases_as_json(
    session: AsyncSession, ids: list[str], viewer: Principal
) -> dict[str, dict[str, Any]]:
    """Visible cases by id in the wire format (REST answers that embed cases)."""
    cases = await get_cases(session, ids, viewer)
    refs = await page_relations(session, cases)
    return {c.id: case_json(c, refs, viewer=viewer) for c in cases}


async def case_as_json(
    session: AsyncSession, case_id: str, viewer: Principal, as_of: datetime
) -> dict[str, Any]:
    """One visible case as it was at `as_of`, in the wire format, whole: the names of its
    model, version and data source and the links it had then. (The case as it is now comes
    from one statement: services/catalog/hydration.py.)"""
    past = await get_case_as_of(session, case_id, viewer, as_of)
    refs = await page_relations(session, [past.case])
    refs.links[past.case.id] = past.links
    return case_json(past.case, refs, viewer=viewer)
