"""The annotation service's operations and rules: the only entry point other packages call.

Functions take the request's session and flush; the boundary (route, job) commits. Cases are
read through the catalog's service (and its visibility rule), never its tables.
"""

from __future__ import annotations

import base64
import binascii
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import compress
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from services.annotation import agreement as stats
from services.annotation.models import (
    Annotation,
    AnnotationAssignment,
    AnnotationChange,
    AnnotationReview,
    AnnotationTaxonomy,
)
from services.annotation.repository import (
    AnnotationRepository,
    blind_params,
    curated_blind_condition,
)
from services.annotation.schemas import (
    COMPARABLE_TYPES,
    SET_TYPES,
    AnnotationStatus,
    FieldType,
    TaxonomyField,
    check_confidence,
    is_empty,
    validate_values,
)
from services.annotation.search_state import requeue
from services.annotation.taxonomies import FAILCAT, curated_patch, failcat_fields
from services.auth import service as auth
from services.catalog import service as catalog
from services.catalog.schemas import CasePatch
from services.governance.redaction import service as redaction
from services.governance.redaction.service import Redactor
from shared import redaction as reader_rule
from shared.audit import audit
from shared.db import utcnow
from shared.errors import BadUserInput, Conflict, FieldError, Forbidden, NotFound
from shared.ids import new_id
from shared.security import Principal
from shared.vocabulary import SEVERITIES

SUBMITTED = AnnotationStatus.SUBMITTED.value
DRAFT = AnnotationStatus.DRAFT.value
MAX_CASES_PER_ASSIGNMENT = 5000
MAX_ANNOTATORS = 200
# Without an assignment, a case needs this many submitted annotations to be reviewed.
DEFAULT_OVERLAP = 2
# Search hits gathered for agreement over a query: past this the query must be narrowed.
MAX_AGREEMENT_CASES = 100_000


# --- taxonomies ------------------------------------------------------------------------------
def fields_of(taxonomy: AnnotationTaxonomy) -> list[TaxonomyField]:
    return [TaxonomyField.model_validate(f) for f in taxonomy.fields]


async def _ensure_failcat(session: AsyncSession) -> AnnotationTaxonomy:
    """failcat's taxonomy follows the catalog's failure modes and rubric: a new version
    whenever they changed since the last one stored."""
    repo = AnnotationRepository(session)
    _, modes = await catalog.taxonomy(session)
    wanted = [
        f.model_dump(mode="json") for f in failcat_fields(modes, await catalog.rubric(session))
    ]
    latest = await repo.latest_taxonomy(FAILCAT)
    if latest is not None and latest.fields == wanted:
        return latest
    row = AnnotationTaxonomy(
        name=FAILCAT,
        version=(latest.version + 1) if latest else 1,
        description="failcat's own: failure mode, severity S0..S4 against the rubric, impact.",
        source="failcat",
        fields=wanted,
        created_at=utcnow(),
        created_by="system",
    )
    await repo.add(row)
    return row


async def get_taxonomy(
    session: AsyncSession, name: str, version: int | None = None
) -> AnnotationTaxonomy:
    repo = AnnotationRepository(session)
    if name == FAILCAT and version is None:
        return await _ensure_failcat(session)
    row = (
        await repo.latest_taxonomy(name)
        if version is None
        else await repo.taxonomy_version(name, version)
    )
    if row is None:
        known = sorted({FAILCAT, *await repo.taxonomy_names()})
        what = name if version is None else f"{name} version {version}"
        raise BadUserInput(
            f"unknown taxonomy {what}",
            [FieldError("taxonomy", f"known taxonomies: {', '.join(known)}")],
        )
    return row


async def list_taxonomies(session: AsyncSession) -> list[AnnotationTaxonomy]:
    await _ensure_failcat(session)
    return await AnnotationRepository(session).latest_taxonomies()


async def import_taxonomy(
    session: AsyncSession,
    name: str,
    fields: list[TaxonomyField],
    *,
    description: str,
    source: str,
    actor: Principal,
) -> AnnotationTaxonomy:
    """Store `fields` as the taxonomy's next version, unless the latest already has them."""
    if name == FAILCAT:
        raise BadUserInput(
            "failcat's taxonomy is built from the catalog", [FieldError("name", name)]
        )
    names = [f.name for f in fields]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise BadUserInput(
            "field names must be unique", [FieldError("fields", f"repeated: {', '.join(dupes)}")]
        )
    repo = AnnotationRepository(session)
    wanted = [f.model_dump(mode="json") for f in fields]
    latest = await repo.latest_taxonomy(name)
    if latest is not None and latest.fields == wanted and latest.description == description:
        return latest
    row = AnnotationTaxonomy(
        name=name,
        version=(latest.version + 1) if latest else 1,
        description=description,
        source=source,
        fields=wanted,
        created_at=utcnow(),
        created_by=actor.subject,
    )
    await repo.add(row)
    return row


# --- annotations -----------------------------------------------------------------------------
async def _save(
    repo: AnnotationRepository,
    existing: Annotation | None,
    *,
    case_id: str,
    annotator: str,
    taxonomy: AnnotationTaxonomy,
    values: dict[str, Any],
    notes: str | None,
    confidence: float | None,
    status: str,
    actor: str,
    action: str,
) -> Annotation:
    now = utcnow()
    if existing is None:
        row = Annotation(
            id=new_id(),
            case_id=case_id,
            annotator=annotator,
            taxonomy=taxonomy.name,
            taxonomy_version=taxonomy.version,
            values=values,
            notes=notes,
            confidence=confidence,
            status=status,
            revision=1,
            created_at=now,
            updated_at=now,
            submitted_at=now if status == SUBMITTED else None,
        )
        await repo.add(row)
    else:
        row = existing
        row.taxonomy_version = taxonomy.version
        row.values = values
        row.notes = notes
        row.confidence = confidence
        row.status = status
        row.revision += 1
        row.updated_at = now
        row.submitted_at = now if status == SUBMITTED else None
    await _record(repo, row, actor, action, now)
    return row


async def _record(
    repo: AnnotationRepository, row: Annotation, actor: str, action: str, at: datetime
) -> None:
    repo.session.add(
        AnnotationChange(
            annotation_id=row.id,
            revision=row.revision,
            actor=actor,
            action=action,
            status=row.status,
            values=row.values,
            notes=row.notes,
            confidence=row.confidence,
            created_at=at,
        )
    )
    await repo.session.flush()


async def submit_annotation(
    session: AsyncSession,
    case_id: str,
    taxonomy: str,
    values: Any,
    actor: Principal,
    *,
    notes: str | None = None,
    confidence: float | None = None,
    submit: bool = True,
) -> Annotation:
    """Save the caller's annotation of a case (a draft, or submitted: then every required
    field must be there). A submitted annotation is final until a reviewer sends it back."""
    await catalog.get_case(session, case_id, actor)
    tax = await get_taxonomy(session, taxonomy)
    check_confidence(confidence)
    checked = validate_values(tax.name, fields_of(tax), values, require=submit)
    repo = AnnotationRepository(session)
    existing = await repo.annotation(case_id, actor.subject, tax.name, for_update=True)
    if existing is not None and existing.status == SUBMITTED:
        raise Conflict(
            f"your {tax.name} annotation of case {case_id} is already submitted; "
            "a reviewer can send it back for changes"
        )
    row = await _save(
        repo,
        existing,
        case_id=case_id,
        annotator=actor.subject,
        taxonomy=tax,
        values=checked,
        notes=notes,
        confidence=confidence,
        status=SUBMITTED if submit else DRAFT,
        actor=actor.subject,
        action="submitted" if submit else "saved",
    )
    await requeue(session, [case_id])
    audit(
        session,
        actor,
        "annotation.submit" if submit else "annotation.save",
        f"annotation:{row.id}",
        details={"case_id": case_id, "taxonomy": tax.name, "revision": row.revision},
    )
    return row


async def record_submitted(
    session: AsyncSession,
    case_id: str,
    annotator: str,
    taxonomy: AnnotationTaxonomy,
    values: dict[str, Any],
    actor: Principal,
    notes: str | None = None,
    redactor: Redactor | None = None,
) -> bool:
    """An annotation made elsewhere (an import), stored as submitted by `annotator`.
    Idempotent: False when the same values are already stored. Its free text meets the
    case's source redaction policy first, as a captured case does (pass one `redactor` for
    a whole import)."""
    checked = validate_values(taxonomy.name, fields_of(taxonomy), values, require=False)
    path = f"annotation.{taxonomy.name}"
    checked = await redaction.redact_for_case(session, case_id, checked, path, redactor)
    if notes is not None:
        notes = (
            await redaction.redact_for_case(session, case_id, {"<notes>": notes}, path, redactor)
        ).get("<notes>")
    repo = AnnotationRepository(session)
    existing = await repo.annotation(case_id, annotator, taxonomy.name, for_update=True)
    if existing is not None and existing.values == checked and existing.status == SUBMITTED:
        return False
    await _save(
        repo,
        existing,
        case_id=case_id,
        annotator=annotator,
        taxonomy=taxonomy,
        values=checked,
        notes=notes if notes is not None else (existing.notes if existing else None),
        confidence=None,
        status=SUBMITTED,
        actor=actor.subject,
        action="imported",
    )
    return True


async def annotator_names(session: AsyncSession, subjects: Sequence[str]) -> dict[str, str]:
    """The display name of each annotator that is an account or a client (an imported
    annotation's annotator, `AVID`, is neither and has none). Read after the blind-read rule:
    a name is only asked for an annotation the reader may see."""
    return await auth.display_names(session, subjects)


# --- the blind-read rule ---------------------------------------------------------------------
@dataclass(slots=True)
class ReaderState:
    """What the reader did on one case: whether they annotate it, and in which taxonomies
    they have submitted."""

    annotator: bool = False
    submitted: set[str] = field(default_factory=set)

    def blinded(self, taxonomy: str) -> bool:
        return self.annotator and taxonomy not in self.submitted


async def reader_states(
    session: AsyncSession,
    case_ids: Sequence[str],
    reader: Principal,
    annotations: Sequence[Annotation] | None = None,
) -> dict[str, ReaderState]:
    """An annotator of a case (assigned to it, or annotating it) may not read the others'
    annotations of a taxonomy, nor its adjudicated values, before submitting their own.
    `annotations`: every annotation of the cases, when the caller has them already."""
    repo = AnnotationRepository(session)
    states = {cid: ReaderState() for cid in case_ids}
    for a in await repo.assignments_of(case_ids):
        if a.annotator == reader.subject:
            states[a.case_id].annotator = True
    if annotations is None:
        own = await repo.annotations_by(reader.subject, case_ids)
    else:
        own = [r for r in annotations if r.annotator == reader.subject]
    for row in own:
        state = states[row.case_id]
        state.annotator = True
        if row.status == SUBMITTED:
            state.submitted.add(row.taxonomy)
    return states


def blind_error(case_id: str, taxonomy: str) -> Forbidden:
    return Forbidden(
        f"submit your own {taxonomy} annotation of case {case_id} before reading the others' "
        "or its adjudicated values",
        [FieldError("taxonomy", f"{taxonomy}: your annotation is not submitted")],
    )


async def annotations_for(
    session: AsyncSession, case_ids: Sequence[str], reader: Principal, taxonomy: str | None = None
) -> dict[str, list[Annotation] | Forbidden]:
    """Per case, its annotations (the caller already sees the cases), or the error the
    blind-read rule answers with when the reader has not submitted their own."""
    # One statement serves the rule and the answer: every taxonomy's rows (the reader's own
    # in any of them make them an annotator of the case) with the reader's assignment. A case
    # without annotations has nothing to hide, whoever is assigned to it.
    found = await AnnotationRepository(session).annotations_with_assignment(
        case_ids, reader.subject
    )
    rows = [row for row, _ in found]
    states = {cid: ReaderState() for cid in case_ids}
    for row, assigned in found:
        state = states[row.case_id]
        if assigned or row.annotator == reader.subject:
            state.annotator = True
        if row.annotator == reader.subject and row.status == SUBMITTED:
            state.submitted.add(row.taxonomy)
    by_case: dict[str, list[Annotation]] = defaultdict(list)
    for row in rows:
        if taxonomy is None or row.taxonomy == taxonomy:
            by_case[row.case_id].append(row)
    out: dict[str, list[Annotation] | Forbidden] = {}
    for cid in case_ids:
        state = states[cid]
        blocked = sorted(
            {r.taxonomy for r in by_case[cid] if r.annotator != reader.subject}
            | ({taxonomy} if taxonomy else set())
        )
        blocked = [t for t in blocked if state.blinded(t)]
        out[cid] = blind_error(cid, blocked[0]) if blocked else by_case[cid]
    return out


async def curated_blinded(
    session: AsyncSession, case_ids: Sequence[str], reader: Principal
) -> set[str]:
    """The cases whose curated failure mode, severity and impact (reader_rule.BLINDED_FIELDS)
    `reader` may not read: they were adjudicated from failcat annotations (they are the
    decided labels) and the reader annotates the case without having submitted their own
    failcat annotation. GraphQL (pages; `case(id)` folds it, visible_case_for), REST and the
    web pages all ask here."""
    if not case_ids:
        return set()
    return await AnnotationRepository(session).adjudicated_blind(case_ids, reader.subject, FAILCAT)


async def visible_case_for(
    session: AsyncSession, case_id: str, reader: Principal, read_entry: Any = None
) -> tuple[Any, Any, bool]:
    """The visible case (NotFound otherwise), its model, and whether its curated fields are
    blinded for `reader` (as curated_blinded), in one statement: the rule's condition is a
    column of the case read, so the rule costs a read no query of its own. `read_entry`: as
    catalog.get_visible_case_and's."""
    case, model, blinded = await catalog.get_visible_case_and(
        session,
        case_id,
        reader,
        curated_blind_condition,
        blind_params(reader.subject, FAILCAT),
        read_entry,
    )
    return case, model, bool(blinded)


async def hide_blinded_views(
    session: AsyncSession, views: Sequence[dict[str, Any]], reader: Principal
) -> None:
    """Null the blinded curated fields in cases rendered as mappings (REST, web pages): the
    same rule and fields as GraphQL's."""
    blinded = await curated_blinded(session, [v["id"] for v in views], reader)
    for view in views:
        reader_rule.hide_blinded(view, view["id"] in blinded)


async def case_annotations(
    session: AsyncSession, case_id: str, reader: Principal, taxonomy: str | None = None
) -> list[Annotation]:
    await catalog.get_case(session, case_id, reader)
    if taxonomy is not None:
        await get_taxonomy(session, taxonomy)
    result = (await annotations_for(session, [case_id], reader, taxonomy))[case_id]
    if isinstance(result, Forbidden):
        raise result
    return result


async def history_of(session: AsyncSession, annotation_ids: list[str]) -> list[AnnotationChange]:
    return await AnnotationRepository(session).changes_of(annotation_ids)


# --- assignment --------------------------------------------------------------------------------
async def _reporters(session: AsyncSession, cases: list[Any]) -> dict[str, set[str]]:
    """Who reported each case: the actor of its first revision and its provenance's captor."""
    out: dict[str, set[str]] = {c.id: set() for c in cases}
    for c in cases:
        captured_by = (c.provenance or {}).get("captured_by")
        if captured_by:
            out[c.id].add(captured_by)
    for rev in await catalog.revisions_of(session, [c.id for c in cases]):
        if rev.revision == 1:
            out[rev.case_id].add(rev.actor)
    return out


async def assign_annotators(
    session: AsyncSession,
    case_ids: Sequence[str],
    annotators: Sequence[str],
    overlap: int,
    actor: Principal,
) -> list[AnnotationAssignment]:
    """Give each case to `overlap` distinct annotators (counting those it already has), the
    least loaded first, never the case's own reporter. All or nothing."""
    names = list(dict.fromkeys(a.strip() for a in annotators if a.strip()))
    ids = list(dict.fromkeys(str(c) for c in case_ids))
    errors = []
    if not names:
        errors.append(FieldError("annotators", "name at least one annotator"))
    if len(names) > MAX_ANNOTATORS:
        errors.append(FieldError("annotators", f"at most {MAX_ANNOTATORS}"))
    if not 1 <= overlap <= max(len(names), 1):
        errors.append(
            FieldError("overlap", f"between 1 and the number of annotators ({len(names)})")
        )
    if not ids or len(ids) > MAX_CASES_PER_ASSIGNMENT:
        errors.append(FieldError("caseIds", f"between 1 and {MAX_CASES_PER_ASSIGNMENT} cases"))
    if errors:
        raise BadUserInput(f"invalid assignment: {errors[0].path}: {errors[0].message}", errors)
    cases = await catalog.get_cases(session, ids, actor)
    found = {c.id for c in cases}
    missing = [i for i in ids if i not in found]
    if missing:
        raise NotFound(f"case {missing[0]} not found", [FieldError("caseIds", missing[0])])
    # Assignments are matched to the subject of the annotator's token: a username names its
    # account's id, and a name that is nobody's would be a queue no one ever sees.
    subjects = await auth.subjects_named(session, names)
    unknown = [n for n in names if n not in subjects]
    if unknown:
        raise BadUserInput(
            f"invalid assignment: no account or client is named {', '.join(unknown[:10])}",
            [FieldError("annotators", f"not an account or client: {n}") for n in unknown],
        )
    names = list(dict.fromkeys(subjects[n] for n in names))
    repo = AnnotationRepository(session)
    reporters = await _reporters(session, cases)
    have: dict[str, set[str]] = defaultdict(set)
    for a in await repo.assignments_of(ids):
        have[a.case_id].add(a.annotator)
    load = {n: 0 for n in names} | await repo.load_of(names)
    rank = {n: i for i, n in enumerate(names)}
    now = utcnow()
    rows = []
    for cid in ids:
        needed = overlap - len(have[cid])
        if needed <= 0:
            continue
        eligible = [n for n in names if n not in reporters[cid] and n not in have[cid]]
        if len(eligible) < needed:
            excluded = sorted(reporters[cid] & set(names))
            raise BadUserInput(
                f"case {cid} cannot get {overlap} distinct annotators",
                [
                    FieldError(
                        "annotators",
                        f"case {cid}: {len(eligible)} eligible beside {len(have[cid])} "
                        f"already assigned"
                        + (f"; its reporter {', '.join(excluded)} is excluded" if excluded else ""),
                    )
                ],
            )
        for name in sorted(eligible, key=lambda n: (load[n], rank[n]))[:needed]:
            load[name] += 1
            have[cid].add(name)
            rows.append(
                {
                    "case_id": cid,
                    "annotator": name,
                    "overlap": overlap,
                    "assigned_by": actor.subject,
                    "assigned_at": now,
                }
            )
    await repo.insert_rows(AnnotationAssignment, rows)
    await requeue(session, sorted({r["case_id"] for r in rows}))
    audit(
        session,
        actor,
        "annotation.assign",
        f"cases:{len(ids)}",
        details={"case_ids": ids, "assignments": len(rows), "overlap": overlap},
    )
    assigned = await repo.assignments_of(ids)
    order = {cid: i for i, cid in enumerate(ids)}
    return sorted(assigned, key=lambda a: (order[a.case_id], a.annotator))


# --- queues ------------------------------------------------------------------------------------
@dataclass(slots=True)
class FieldComparison:
    field: str
    values: dict[str, Any]  # annotator -> value
    agree: bool


@dataclass(slots=True)
class QueueItem:
    case_id: str
    taxonomy: str | None
    overlap: int
    annotators: list[str]
    submitted: int
    disagreement: float | None = None
    my_status: str | None = None  # ASSIGNED: pending | draft
    comparisons: list[FieldComparison] = field(default_factory=list)


def compare(
    fields: list[TaxonomyField], given_values: list[tuple[str, dict[str, Any]]]
) -> list[FieldComparison]:
    """Field by field, what each annotator gave (`given_values`: annotator and values) and
    whether they all agree (free-text fields are left out: they never match word for word)."""
    out = []
    for f in fields:
        if f.type not in COMPARABLE_TYPES:
            continue
        given = {annotator: values.get(f.name) for annotator, values in given_values}
        present = [v for v in given.values() if not is_empty(v)]
        if not present:
            continue
        agree = len(present) == len(given) and all(v == present[0] for v in present)
        out.append(FieldComparison(f.name, given, agree))
    return out


def _cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"q:{offset}".encode()).decode()


def _offset(after: str | None) -> int:
    if not after:
        return 0
    try:
        kind, value = base64.urlsafe_b64decode(after.encode()).decode().split(":")
        if kind != "q":
            raise ValueError(kind)
        return int(value)
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise BadUserInput("invalid cursor", [FieldError("after", "not a queue cursor")]) from None


async def annotation_queue(
    session: AsyncSession, kind: str, viewer: Principal, first: int, after: str | None
) -> tuple[list[QueueItem], str | None]:
    items = (
        await _assigned(session, viewer)
        if kind == "assigned"
        else await _needs_review(session, viewer)
    )
    start = _offset(after)
    page = items[start : start + first]
    more = start + first < len(items)
    return page, _cursor(start + first) if more else None


async def _assigned(session: AsyncSession, viewer: Principal) -> list[QueueItem]:
    """The caller's assignments not yet submitted, oldest first."""
    repo = AnnotationRepository(session)
    mine = await repo.assignments_to(viewer.subject, catalog.visible_case_ids(viewer))
    own = defaultdict(list)
    for row in await repo.annotations_by(viewer.subject, [a.case_id for a in mine]):
        own[row.case_id].append(row)
    out = []
    for a in mine:
        statuses = {r.status for r in own[a.case_id]}
        if SUBMITTED in statuses:
            continue
        out.append(
            QueueItem(
                a.case_id,
                None,
                a.overlap,
                [viewer.subject],
                0,
                my_status="draft" if statuses else "pending",
            )
        )
    return out


async def _needs_review(session: AsyncSession, viewer: Principal) -> list[QueueItem]:
    """(case, taxonomy) pairs submitted by k annotators and not adjudicated since, which the
    caller may review (not their own), by disagreement then severity (S0 first)."""
    repo = AnnotationRepository(session)
    # Counted in the database first: only the pairs still waiting load their annotations.
    groups = await repo.submitted_groups(catalog.visible_case_ids(viewer))
    if not groups:
        return []
    overlap: dict[str, int] = {}
    involved: dict[str, set[str]] = defaultdict(set)
    for a in await repo.assignments_of(sorted({g[0] for g in groups})):
        overlap[a.case_id] = max(overlap.get(a.case_id, 0), a.overlap)
        involved[a.case_id].add(a.annotator)
    waiting = [
        (cid, tax) for cid, tax, count, _ in groups if count >= overlap.get(cid, DEFAULT_OVERLAP)
    ]
    decided = await repo.last_adjudications(sorted({cid for cid, _ in waiting}))
    last = {(cid, tax): at for cid, tax, _, at in groups}
    waiting = [p for p in waiting if p not in decided or decided[p] < last[p]]
    case_ids = sorted({cid for cid, _ in waiting})
    rows_of: dict[tuple[str, str], list[tuple[str, dict[str, Any]]]] = defaultdict(list)
    for cid, tax, annotator, status, values in await repo.annotation_values(case_ids):
        involved[cid].add(annotator)
        if status == SUBMITTED:
            rows_of[(cid, tax)].append((annotator, values))
    taxonomies: dict[str, list[TaxonomyField]] = {}
    items = []
    for cid, tax in waiting:
        rows = rows_of[(cid, tax)]
        k = overlap.get(cid, DEFAULT_OVERLAP)
        if viewer.subject in involved[cid]:
            continue
        if tax not in taxonomies:
            taxonomies[tax] = fields_of(await get_taxonomy(session, tax))
        comparisons = compare(taxonomies[tax], rows)
        share = sum(not c.agree for c in comparisons) / len(comparisons) if comparisons else 0.0
        items.append(
            QueueItem(
                cid,
                tax,
                k,
                sorted(annotator for annotator, _ in rows),
                len(rows),
                disagreement=share,
                comparisons=comparisons,
            )
        )
    if not items:
        return []
    severity = {c.id: c.severity for c in await catalog.get_cases(session, case_ids, viewer)}
    rank = {s: i for i, s in enumerate(SEVERITIES)}
    items.sort(
        key=lambda i: (-(i.disagreement or 0), rank.get(severity.get(i.case_id), 9), i.case_id)
    )
    return items


# --- adjudication --------------------------------------------------------------------------------
async def _involved(repo: AnnotationRepository, case_id: str) -> tuple[set[str], list[Annotation]]:
    rows = await repo.annotations_of([case_id])
    people = {r.annotator for r in rows} | {
        a.annotator for a in await repo.assignments_of([case_id])
    }
    return people, rows


def _not_own(case_id: str, reviewer: Principal, people: set[str]) -> None:
    if reviewer.subject in people:
        raise Forbidden(
            f"you annotated case {case_id} (or are assigned to it): "
            "another reviewer must review it",
            [FieldError("caseId", "a reviewer cannot review their own annotation")],
        )


async def adjudicate(
    session: AsyncSession,
    case_id: str,
    taxonomy: str,
    values: Any,
    expected_revision: int,
    actor: Principal,
    reason: str | None = None,
) -> AnnotationReview:
    """Decide a case's values from its submitted annotations. failcat's values become the
    case's curated fields through a revision with reason `adjudicated`; the review records
    the annotations it used and that revision."""
    case = await catalog.get_case(session, case_id, actor)
    tax = await get_taxonomy(session, taxonomy)
    checked = validate_values(tax.name, fields_of(tax), values, require=True)
    repo = AnnotationRepository(session)
    people, rows = await _involved(repo, case_id)
    _not_own(case_id, actor, people)
    used = [r for r in rows if r.taxonomy == tax.name and r.status == SUBMITTED]
    if not used:
        raise BadUserInput(
            f"case {case_id} has no submitted {tax.name} annotations to adjudicate",
            [FieldError("caseId", f"no submitted {tax.name} annotations")],
        )
    if case.revision != expected_revision:
        raise Conflict(
            f"case {case_id} is at revision {case.revision}, not the expected {expected_revision}",
            [FieldError("expectedRevision", f"the case is at revision {case.revision}")],
        )
    patch = curated_patch(checked) if tax.name == FAILCAT else {}
    if patch:
        case = await catalog.update_case(
            session,
            case_id,
            CasePatch.model_validate(patch),
            expected_revision,
            actor,
            reason="adjudicated",
        )
    review = AnnotationReview(
        id=new_id(),
        case_id=case_id,
        taxonomy=tax.name,
        taxonomy_version=tax.version,
        reviewer=actor.subject,
        action="adjudicated",
        values=checked,
        comment=reason,
        annotation_ids=[r.id for r in used],
        case_revision=case.revision,
        created_at=utcnow(),
    )
    await repo.add(review)
    await requeue(session, [case_id])
    audit(
        session,
        actor,
        "annotation.adjudicate",
        f"case:{case_id}",
        details={
            "review_id": review.id,
            "taxonomy": tax.name,
            "annotation_ids": review.annotation_ids,
            "case_revision": case.revision,
        },
    )
    return review


async def send_back(
    session: AsyncSession, case_id: str, comment: str, actor: Principal
) -> AnnotationReview:
    """Return a case's submitted annotations to their annotators as drafts, with a comment
    (not the imported ones, whose annotators are not here to resubmit them)."""
    await catalog.get_case(session, case_id, actor)
    if not comment.strip():
        raise BadUserInput("a comment is required", [FieldError("comment", "say what to revisit")])
    repo = AnnotationRepository(session)
    people, rows = await _involved(repo, case_id)
    _not_own(case_id, actor, people)
    submitted = [r for r in rows if r.status == SUBMITTED]
    # An imported annotation (AIID's annotators, AVID's and ATLAS's originals) has nobody
    # here to resubmit it: reopened, it would leave the agreement statistics and the
    # exports for good. Only annotations their annotators submitted here go back.
    current = {r.id: r.revision for r in submitted}
    imported = {
        c.annotation_id
        for c in await repo.changes_of(list(current))
        if c.action == "imported" and current[c.annotation_id] == c.revision
    }
    reopened = [r for r in submitted if r.id not in imported]
    if not reopened:
        raise BadUserInput(
            f"case {case_id} has no submitted annotations to send back"
            + (" (imported annotations are not sent back)" if imported else ""),
            [FieldError("caseId", "nothing submitted")],
        )
    now = utcnow()
    for row in reopened:
        row.status = DRAFT
        row.revision += 1
        row.updated_at = now
        row.submitted_at = None
        await _record(repo, row, actor.subject, "sent_back", now)
    review = AnnotationReview(
        id=new_id(),
        case_id=case_id,
        reviewer=actor.subject,
        action="sent_back",
        comment=comment,
        annotation_ids=[r.id for r in reopened],
        created_at=now,
    )
    await repo.add(review)
    await requeue(session, [case_id])
    audit(
        session,
        actor,
        "annotation.send_back",
        f"case:{case_id}",
        details={"review_id": review.id, "annotation_ids": review.annotation_ids},
    )
    return review


@dataclass(slots=True)
class TrailEntry:
    at: datetime
    actor: str
    action: str  # assigned | saved | submitted | imported | sent_back | adjudicated
    taxonomy: str | None = None
    values: dict[str, Any] | None = None
    comment: str | None = None
    annotation_ids: list[str] = field(default_factory=list)
    case_revision: int | None = None
    hidden: bool = False  # values withheld by the blind-read rule


async def review_trails(
    session: AsyncSession, case_ids: Sequence[str], reader: Principal
) -> dict[str, list[TrailEntry]]:
    """Who was assigned, who annotated (each change), who reviewed, what was decided and
    why; values the reader may not read yet are withheld (`hidden`)."""
    repo = AnnotationRepository(session)
    annotations = await repo.annotations_of(case_ids)
    states = await reader_states(session, case_ids, reader, annotations)
    trails: dict[str, list[TrailEntry]] = {cid: [] for cid in case_ids}
    for a in await repo.assignments_of(case_ids):
        trails[a.case_id].append(
            TrailEntry(a.assigned_at, a.assigned_by, "assigned", comment=f"to {a.annotator}")
        )
    rows = {r.id: r for r in annotations}
    for change in await repo.changes_of(list(rows)):
        row = rows[change.annotation_id]
        hide = row.annotator != reader.subject and states[row.case_id].blinded(row.taxonomy)
        trails[row.case_id].append(
            TrailEntry(
                change.created_at,
                row.annotator if change.action != "sent_back" else change.actor,
                change.action,
                row.taxonomy,
                None if hide else change.values,
                None if hide else change.notes,
                [row.id],
                hidden=hide,
            )
        )
    for r in await repo.reviews_of(case_ids):
        trails[r.case_id].append(_review_entry(r, states[r.case_id]))
    for entries in trails.values():
        entries.sort(key=lambda e: e.at)
    return trails


def _review_entry(r: AnnotationReview, state: ReaderState) -> TrailEntry:
    """A review as the trail shows it to a reader in `state`: its values withheld while the
    reader is blinded to its taxonomy."""
    hide = bool(r.taxonomy) and state.blinded(r.taxonomy or "")
    return TrailEntry(
        r.created_at,
        r.reviewer,
        r.action,
        r.taxonomy,
        None if hide else r.values,
        r.comment,
        list(r.annotation_ids),
        r.case_revision,
        hidden=hide,
    )


async def adjudications(
    session: AsyncSession, case_ids: Sequence[str], reader: Principal
) -> dict[str, list[TrailEntry]]:
    """The `adjudicated` entries of `review_trails(session, case_ids, reader)`, the same and
    in the same order, by case (cases without one absent): one statement when none of the
    cases has one, where the whole trail takes five (a bundle export reads this per page)."""
    reviews = [
        r
        for r in await AnnotationRepository(session).reviews_of(case_ids)
        if r.action == "adjudicated"
    ]
    if not reviews:
        return {}
    states = await reader_states(session, sorted({r.case_id for r in reviews}), reader)
    out: dict[str, list[TrailEntry]] = {}
    for r in reviews:
        out.setdefault(r.case_id, []).append(_review_entry(r, states[r.case_id]))
    for entries in out.values():
        entries.sort(key=lambda e: e.at)
    return out


# --- agreement -----------------------------------------------------------------------------------
def _columns_where(cols: stats.Columns, keep: list[bool]) -> stats.Columns:
    # itertools.compress: the loop runs in C (100,000 ratings, four columns).
    return stats.Columns(
        *(list(compress(col, keep)) for col in (cols.units, cols.coders, cols.values, cols.months))
    )


def _as_set(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = orjson.loads(value)
    return tuple(value) if isinstance(value, list) else ()


def _level(f: TaxonomyField) -> stats.Level:
    if f.type in SET_TYPES:
        return "set"
    return "ordinal" if f.ordinal else "nominal"


async def agreement(
    session: AsyncSession,
    taxonomy: str,
    field_name: str,
    viewer: Principal,
    *,
    annotators: Sequence[str] | None = None,
    case_ids: Sequence[str] | None = None,
    resamples: int = stats.RESAMPLES,
) -> stats.AgreementReport:
    """Agreement on one field over the submitted annotations of the cases the caller may see
    (narrowed to `case_ids`, e.g. a search's hits). Units: cases where at least two
    annotators (both, for a pair) gave a non-empty value."""
    tax = await get_taxonomy(session, taxonomy)
    fields = {f.name: f for f in fields_of(tax)}
    f = fields.get(field_name)
    if f is None:
        raise BadUserInput(
            f"unknown field {field_name} of taxonomy {tax.name}",
            [FieldError("field", f"the fields are: {', '.join(fields)}")],
        )
    if f.type in (FieldType.OBJECT_LIST, FieldType.STRING):
        raise BadUserInput(
            f"field {field_name} holds {f.type.value} values: agreement needs categories",
            [FieldError("field", "choose an enum, multi-enum, bool, int, float or date field")],
        )
    given: dict[str, str] = {}
    if annotators is not None:
        # Annotations are stored under the annotator's subject: an account is also named by
        # its username (as assignAnnotators takes it), which matched nothing and read as n 0.
        named = await auth.subjects_named(session, annotators)
        given = {named.get(a, a): a for a in annotators}
        annotators = list(given)
    cols = stats.Columns(
        *await AnnotationRepository(session).submitted(
            tax.name,
            field_name,
            catalog.visible_case_ids(viewer),
            annotators,
            as_text=f.type not in SET_TYPES,  # sets come as JSON arrays, the rest as text
        )
    )
    rated = set(cols.coders)
    absent = [name for subject, name in given.items() if subject not in rated]
    if absent:
        # A name that rated nothing (a typo, nobody's) would silently shrink the statistics.
        raise BadUserInput(
            f"no submitted {tax.name} '{field_name}' value by {', '.join(absent[:10])}",
            [
                FieldError("annotators", f"{a}: no submitted value on a case you may see")
                for a in absent
            ],
        )
    if case_ids is not None:
        wanted = set(case_ids)
        cols = _columns_where(cols, list(map(wanted.__contains__, cols.units)))
    if f.type in SET_TYPES:  # JSON arrays (text from the driver): compared as sets
        cols.values = [_as_set(v) for v in cols.values]
        cols = _columns_where(cols, [bool(v) for v in cols.values])
    if f.type == FieldType.BOOL:  # SQLite's JSON gives booleans as 1/0, Postgres' as true/false
        cols.values = [str(v in (True, 1, "1", "true")) for v in cols.values]
    elif f.type in (FieldType.INT, FieldType.FLOAT):  # SQLite gives numbers, Postgres text
        cols.values = [str(v) for v in cols.values]
    order = f.ranked if f.ordinal else None
    return stats.agreement(cols, _level(f), order=order, resamples=resamples)


async def record_adjudicated(
    session: AsyncSession,
    case_id: str,
    taxonomy: AnnotationTaxonomy,
    values: dict[str, Any],
    *,
    reviewer: str,
    actor: Principal,
    redactor: Redactor | None = None,
) -> bool:
    """Adjudicated values decided elsewhere (an import), linked to the case's submitted
    annotations. Idempotent: False when the latest decision already has these values. The
    values meet the case's source redaction policy first, as imported annotations do."""
    checked = validate_values(taxonomy.name, fields_of(taxonomy), values, require=False)
    checked = await redaction.redact_for_case(
        session, case_id, checked, f"adjudication.{taxonomy.name}", redactor
    )
    repo = AnnotationRepository(session)
    decisions = [
        r
        for r in await repo.reviews_of([case_id])
        if r.action == "adjudicated" and r.taxonomy == taxonomy.name
    ]
    if decisions and decisions[-1].values == checked:
        return False
    used = [
        r.id for r in await repo.annotations_of([case_id], taxonomy.name) if r.status == SUBMITTED
    ]
    await repo.add(
        AnnotationReview(
            id=new_id(),
            case_id=case_id,
            taxonomy=taxonomy.name,
            taxonomy_version=taxonomy.version,
            reviewer=reviewer,
            action="adjudicated",
            values=checked,
            comment=f"imported by {actor.subject}",
            annotation_ids=used,
            created_at=utcnow(),
        )
    )
    return True


async def case_ids_matching(search: Any, principal: Principal, query: str) -> list[str]:
    """Every case id a search query matches for the caller (its visibility applies)."""
    from services.search.request import MAX_FIRST

    ids: list[str] = []
    after = None
    while True:
        result = await search.search(principal, query, first=MAX_FIRST, after=after)
        ids += [h.id for h in result.hits]
        after = result.next_cursor
        if not after or not result.hits or len(ids) >= MAX_AGREEMENT_CASES:
            return ids


async def purge_cases(session: AsyncSession, case_ids: list[str]) -> int:
    """Retention purged these cases whole: clear what was written about them here (values,
    notes, review comments, agenda reasons and decisions), keeping who annotated and
    reviewed when (services/governance/RETENTION.md). Idempotent; returns the annotations
    cleared."""
    return await AnnotationRepository(session).clear_case_texts(case_ids)
