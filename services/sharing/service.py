"""The sharing service's operations and rules (discussion, lessons): the only entry point other
packages call. Functions flush; the boundary (request, job) commits.

Cases and groups are read through the catalog's service and its visibility rule: a comment is
seen exactly when its target is, so a hidden target (and every comment on it) answers NOT_FOUND
as a missing one does. Plans are read and linked through the plans' service, suites through the
safeguards'. Every write is audited in its unit of work.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.catalog import service as catalog
from services.plans import service as plans
from services.safeguards import service as safeguards
from services.sharing.models import Comment, Lesson
from services.sharing.repository import SharingRepository
from services.sharing.schemas import (
    CommentIn,
    CommentKind,
    LessonIn,
    LessonStatus,
    TargetKind,
    parse_mentions,
)
from shared.audit import audit
from shared.db import utcnow
from shared.errors import BadUserInput, Conflict, FieldError, Forbidden, NotFound
from shared.ids import new_id
from shared.security import Principal, Scope

# Plans a measure may still join: a closed or evaluated plan's work is done.
OPEN_PLAN_STATES = ("draft", "approved", "in_progress")
ROW_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


# --- cursors -------------------------------------------------------------------------------
def encode_cursor(row_id: str) -> str:
    return base64.urlsafe_b64encode(row_id.encode()).decode()


def decode_cursor(after: str | None) -> str | None:
    if after is None:
        return None
    try:
        row_id = base64.urlsafe_b64decode(after.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        row_id = ""
    if not ROW_ID.fullmatch(row_id):
        raise BadUserInput("invalid cursor", [FieldError("after", "not a cursor")])
    return row_id


def _page(rows: list[Any], first: int) -> tuple[list[Any], str | None]:
    more = len(rows) > first
    rows = rows[:first]
    return rows, encode_cursor(rows[-1].id) if more and rows else None


# --- targets ---------------------------------------------------------------------------------
async def resolve_target(
    session: AsyncSession, target_id: str, viewer: Principal
) -> tuple[TargetKind, Any]:
    """The case or group `target_id` names, as `viewer` may see it; NotFound otherwise (the
    same answer for a hidden and a missing one)."""
    try:
        return TargetKind.CASE, await catalog.get_visible_case(session, target_id, viewer)
    except NotFound:
        pass
    try:
        return TargetKind.GROUP, await catalog.get_visible_group(session, target_id, viewer)
    except NotFound:
        raise NotFound(f"case or group {target_id} not found") from None


# --- discussion ------------------------------------------------------------------------------
async def add_comment(
    session: AsyncSession, target_id: str, data: CommentIn, actor: Principal
) -> Comment:
    kind, _ = await resolve_target(session, target_id, actor)
    comment = Comment(
        id=new_id(),
        target_kind=kind.value,
        target_id=target_id,
        kind=data.kind.value,
        body=data.body,
        mentions=parse_mentions(data.body),
        author=actor.subject,
        author_name=actor.name,
        created_at=utcnow(),
    )
    await SharingRepository(session).add(comment)
    audit(
        session,
        actor,
        "sharing.comment",
        f"comment:{comment.id}",
        details={
            "target": f"{kind.value}:{target_id}",
            "kind": comment.kind,
            "people": len(comment.mentions["people"]),
            "teams": len(comment.mentions["teams"]),
        },
    )
    return comment


async def comments(
    session: AsyncSession, target_id: str, viewer: Principal, first: int, after: str | None
) -> tuple[list[Comment], str | None]:
    """The target's comments, oldest first, and the cursor of the next page (None: last)."""
    kind, _ = await resolve_target(session, target_id, viewer)
    rows = await SharingRepository(session).comments(
        kind.value, target_id, first, decode_cursor(after)
    )
    return _page(rows, first)


async def visible_comment(session: AsyncSession, comment_id: str, viewer: Principal) -> Comment:
    comment = await SharingRepository(session).comment(comment_id)
    if comment is None:
        raise NotFound(f"comment {comment_id} not found")
    try:
        await resolve_target(session, comment.target_id, viewer)
    except NotFound:
        raise NotFound(f"comment {comment_id} not found") from None
    return comment


async def accept_measure(
    session: AsyncSession, comment_id: str, plan_id: str, actor: Principal
) -> Comment:
    """Accept a proposed measure into a retraining plan (the plans' service finds it): the
    measure links to the plan, once."""
    comment = await visible_comment(session, comment_id, actor)
    if comment.kind != CommentKind.PROPOSED_MEASURE.value:
        raise BadUserInput(
            "only a proposed measure can be accepted into a plan",
            [FieldError("id", f"comment {comment_id} is a {comment.kind}")],
        )
    plan = await plans.get_retraining_plan(session, plan_id)
    if plan.status not in OPEN_PLAN_STATES:
        raise BadUserInput(
            f"plan {plan_id} is {plan.status}",
            [FieldError("planId", f"a measure joins a plan that is {', '.join(OPEN_PLAN_STATES)}")],
        )
    repo = SharingRepository(session)
    values = {"accepted_plan_id": plan.id, "accepted_by": actor.subject, "accepted_at": utcnow()}
    if not await repo.accept_if_open(comment.id, values):
        await session.refresh(comment)
        raise Conflict(
            f"measure {comment_id} is already accepted into plan {comment.accepted_plan_id}"
        )
    await session.refresh(comment)
    audit(
        session,
        actor,
        "sharing.accept_measure",
        f"comment:{comment.id}",
        details={"plan": f"retraining_plan:{plan.id}"},
    )
    return comment


@dataclass(frozen=True, slots=True)
class Notification:
    """Who a comment would notify, and why."""

    recipient_kind: str  # user | team
    recipient: str
    reason: str  # mention
    comment_id: str
    target_kind: str
    target_id: str


def comment_notifications(comment: Comment) -> list[Notification]:
    """What a comment notifies: each person and team it mentions (the author is not told of
    their own mention). Delivery goes through the governance service's webhook mechanism once
    its escalation rules land (SHARING.md); this is the list that will be handed to it."""
    out = [
        Notification("user", name, "mention", comment.id, comment.target_kind, comment.target_id)
        for name in comment.mentions.get("people", [])
        if name != comment.author_name and name != comment.author
    ]
    out += [
        Notification("team", name, "mention", comment.id, comment.target_kind, comment.target_id)
        for name in comment.mentions.get("teams", [])
    ]
    return out


# --- lessons ---------------------------------------------------------------------------------
async def create_lesson(session: AsyncSession, data: LessonIn, actor: Principal) -> Lesson:
    """A draft lesson. Its evidence groups must be ones the author sees (a hidden group is
    reported as a missing one); its suites must exist (at the version named, else the latest,
    which is then pinned)."""
    errors: list[FieldError] = []
    group_ids = list(dict.fromkeys(data.evidence_group_ids))
    for i, group_id in enumerate(group_ids):
        try:
            await catalog.get_visible_group(session, group_id, actor)
        except NotFound:
            errors.append(FieldError(f"evidenceGroupIds.{i}", f"group {group_id} not found"))
    if len(group_ids) < 2:
        errors.append(FieldError("evidenceGroupIds", "a lesson draws on at least two groups"))
    suites = []
    for i, ref in enumerate(data.suites):
        try:
            snapshot = await safeguards.get_suite(session, ref.name, ref.version)
        except NotFound as exc:
            errors.append(FieldError(f"suites.{i}", exc.message))
            continue
        suites.append({"name": snapshot.name, "version": snapshot.frozen.version})
    if errors:
        raise BadUserInput(f"invalid lesson: {errors[0].message}", errors)
    lesson = Lesson(
        id=new_id(),
        title=data.title,
        what_happened=data.what_happened,
        why_it_matters=data.why_it_matters,
        mitigation=data.mitigation,
        cost=data.cost,
        evidence_group_ids=group_ids,
        suites=suites,
        status=LessonStatus.DRAFT.value,
        author=actor.subject,
        author_name=actor.name,
        created_at=utcnow(),
    )
    await SharingRepository(session).add(lesson)
    audit(
        session,
        actor,
        "sharing.create_lesson",
        f"lesson:{lesson.id}",
        details={"groups": len(group_ids), "suites": len(suites)},
    )
    return lesson


async def get_lesson(session: AsyncSession, lesson_id: str) -> Lesson:
    lesson = await SharingRepository(session).lesson(lesson_id)
    if lesson is None:
        raise NotFound(f"lesson {lesson_id} not found")
    return lesson


async def review_lesson(
    session: AsyncSession, lesson_id: str, expected_revision: int, actor: Principal
) -> Lesson:
    """draft -> reviewed, by someone with reviews:write who did not write it."""
    if not actor.has(Scope.REVIEWS_WRITE):
        raise Forbidden("insufficient_scope: reviewing a lesson requires reviews:write")
    lesson = await get_lesson(session, lesson_id)
    if lesson.author == actor.subject:
        raise Forbidden("a lesson is reviewed by someone other than its author")
    if lesson.status != LessonStatus.DRAFT.value:
        raise BadUserInput(
            f"lesson {lesson_id} is already {lesson.status}",
            [FieldError("id", "only a draft is reviewed")],
        )
    if lesson.revision != expected_revision:
        raise Conflict(
            f"lesson {lesson_id} is at revision {lesson.revision}, not {expected_revision}"
        )
    values = {
        "status": LessonStatus.REVIEWED.value,
        "reviewed_by": actor.subject,
        "reviewed_at": utcnow(),
    }
    if not await SharingRepository(session).update_lesson_if_revision(
        lesson.id, lesson.revision, values
    ):
        raise Conflict(f"lesson {lesson_id} changed meanwhile; reload and retry")
    await session.refresh(lesson)
    audit(session, actor, "sharing.review_lesson", f"lesson:{lesson.id}", details={})
    return lesson


MAX_QUERY_WORDS = 10


async def lessons(
    session: AsyncSession,
    query: str | None,
    status: LessonStatus | None,
    first: int,
    after: str | None,
) -> tuple[list[Lesson], str | None]:
    """Newest first; `query`'s words must each appear in the lesson's title or texts."""
    words = (query or "").split()
    if len(words) > MAX_QUERY_WORDS:
        raise BadUserInput(
            "too many words", [FieldError("query", f"at most {MAX_QUERY_WORDS} words")]
        )
    rows = await SharingRepository(session).lessons(
        words, status.value if status else None, first, decode_cursor(after)
    )
    return _page(rows, first)


async def visible_groups(session: AsyncSession, ids: list[str], viewer: Principal) -> set[str]:
    """The ids among `ids` of groups `viewer` may see (a lesson shows only those)."""
    out = set()
    for group_id in ids:  # a page of lessons names a few dozen groups at most
        try:
            await catalog.get_visible_group(session, group_id, viewer)
        except NotFound:
            continue
        out.add(group_id)
    return out


# --- bundles ---------------------------------------------------------------------------------
async def downloadable_bundle(session: AsyncSession, bundle_id: str, viewer: Principal) -> Any:
    """An exported bundle `viewer` may download: one who would see every case in it (no team
    or the bundle's only team, and a clearance at or above its most sensitive case), while its
    file is still where the export wrote it. NotFound otherwise."""
    import os

    from shared.security import Sensitivity

    row = await SharingRepository(session).bundle(bundle_id, "export")
    allowed = (
        row is not None
        and (viewer.team is None or set(row.teams) <= {viewer.team})
        and Sensitivity(row.max_sensitivity).rank <= viewer.clearance.rank
        and row.path is not None
        # a stat of a local file, once per download
        and os.path.exists(row.path)  # noqa: ASYNC240
    )
    if not allowed:
        raise NotFound(f"bundle {bundle_id} not found")
    return row


async def purge_case_comments(session: AsyncSession, case_ids: list[str]) -> int:
    """Retention purged these cases whole: their comments lose their text (a comment on a
    tombstone is unreachable anyway). Lessons refer to groups, not cases, and stay."""
    return await SharingRepository(session).clear_case_comments(case_ids)
