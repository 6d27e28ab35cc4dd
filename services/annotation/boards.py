"""Review rituals: a team's review board, its sessions and their agendas.

A board has a roster and a cadence (weekly, monthly). Each session is owned by the roster's
next member in turn, is scheduled one cadence after the previous one, and opens with an agenda
built from the catalog as the opener sees it: new S0/S1 cases of the team, regressed failure
groups, the team's cases whose annotators agree least, and cases stale in remediation (not
updated for a cadence). Items get decisions; the session closes with minutes; items still open
(overdue) are carried to the next session when it opens.

Functions take the request's session and flush; the boundary commits. Cases and groups are
read through the catalog's service and its visibility rule.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy.ext.asyncio import AsyncSession

from services.annotation import search_state
from services.annotation.models import ReviewAgendaItem, ReviewBoard, ReviewSession
from services.annotation.repository import AnnotationRepository, BoardRepository
from services.auth import service as auth
from services.catalog import service as catalog
from services.catalog.schemas import CaseFilter, GroupStatus, Status
from shared.audit import audit
from shared.db import utcnow
from shared.errors import BadUserInput, Conflict, FieldError, Forbidden, NotFound
from shared.ids import new_id
from shared.security import Principal

MAX_ROSTER = 50
MAX_TEXT = 20_000
# Items of each kind an agenda takes (the most pressing first); a longer list is not a meeting.
PER_KIND = 10
# Cases in remediation looked at for staleness (the most recent first).
REMEDIATION_SCAN = 500


class Cadence(StrEnum):
    WEEKLY = "weekly"
    MONTHLY = "monthly"


class AgendaKind(StrEnum):
    NEW_SEVERE = "new_severe"
    REGRESSED_GROUP = "regressed_group"
    LOW_AGREEMENT = "low_agreement"
    STALE_REMEDIATION = "stale_remediation"


def next_date(at: datetime, cadence: str) -> datetime:
    """One cadence later: seven days, or the same day of the next month (its last day when
    shorter: Jan 31 -> Feb 28)."""
    if cadence == Cadence.WEEKLY:
        return at + timedelta(days=7)
    year, month = (at.year + 1, 1) if at.month == 12 else (at.year, at.month + 1)
    day = min(at.day, calendar.monthrange(year, month)[1])
    return at.replace(year=year, month=month, day=day)


def _period(cadence: str) -> timedelta:
    return timedelta(days=7 if cadence == Cadence.WEEKLY else 30)


def _text(value: str | None, path: str, *, required: bool) -> str | None:
    text = (value or "").strip()
    if required and not text:
        raise BadUserInput(f"{path} is required", [FieldError(path, "must not be empty")])
    if len(text) > MAX_TEXT:
        raise BadUserInput(f"{path} is too long", [FieldError(path, f"at most {MAX_TEXT}")])
    return text or None


# --- boards ----------------------------------------------------------------------------------
def _may_see(viewer: Principal, board: ReviewBoard) -> bool:
    # A board is its team's: a caller bound to another team does not know it exists.
    return viewer.team is None or viewer.team == board.team


async def get_board(
    session: AsyncSession, board_id: str, viewer: Principal, *, for_update: bool = False
) -> ReviewBoard:
    board = await BoardRepository(session).board(board_id, for_update=for_update)
    if board is None or not _may_see(viewer, board):
        raise NotFound(f"review board {board_id} not found")
    return board


async def list_boards(
    session: AsyncSession, viewer: Principal, team: str | None = None
) -> list[ReviewBoard]:
    if viewer.team is not None:
        teams = [viewer.team] if team in (None, viewer.team) else []
    else:
        teams = [team] if team is not None else None
    return await BoardRepository(session).boards(teams)


async def create_board(
    session: AsyncSession,
    team: str,
    name: str,
    cadence: str,
    roster: list[str],
    actor: Principal,
) -> ReviewBoard:
    errors = []
    team, name = team.strip(), name.strip()
    people = list(dict.fromkeys(p.strip() for p in roster if p.strip()))
    if not team:
        errors.append(FieldError("team", "name the team"))
    if not name or len(name) > 200:
        errors.append(FieldError("name", "between 1 and 200 characters"))
    if cadence not in set(Cadence):
        errors.append(FieldError("cadence", f"one of: {', '.join(Cadence)}"))
    if not 1 <= len(people) <= MAX_ROSTER:
        errors.append(FieldError("roster", f"between 1 and {MAX_ROSTER} distinct members"))
    if errors:
        raise BadUserInput(f"invalid review board: {errors[0].path}: {errors[0].message}", errors)
    if actor.team is not None and actor.team != team:
        raise Forbidden(
            f"you review for team {actor.team}, not {team}",
            [FieldError("team", f"a board of team {actor.team} only")],
        )
    # Members are named as annotators are (an account's id or username, a client's id): a
    # name that is nobody's would own sessions nobody runs.
    known = await auth.subjects_named(session, people)
    unknown = [p for p in people if p not in known]
    if unknown:
        raise BadUserInput(
            f"invalid review board: roster: no account or client is named "
            f"{', '.join(unknown[:10])}",
            [FieldError("roster", f"not an account or client: {p}") for p in unknown],
        )
    repo = BoardRepository(session)
    if await repo.board_named(team, name) is not None:
        raise Conflict(
            f"team {team} already has a review board named {name}",
            [FieldError("name", "already used by this team")],
        )
    board = ReviewBoard(
        id=new_id(),
        team=team,
        name=name,
        cadence=str(cadence),
        roster=people,
        created_by=actor.subject,
        created_at=utcnow(),
    )
    await repo.add(board)
    audit(
        session,
        actor,
        "annotation.board_create",
        f"review_board:{board.id}",
        details={"roster": len(people), "cadence": board.cadence},
    )
    return board


async def sessions_of(
    session: AsyncSession, board_ids: list[str]
) -> dict[str, list[ReviewSession]]:
    out: dict[str, list[ReviewSession]] = {b: [] for b in board_ids}
    for row in await BoardRepository(session).sessions_of(board_ids):
        out[row.board_id].append(row)
    return out


def owner_of(board: ReviewBoard, number: int) -> str:
    """Session `number` (from 1) is owned by the roster's members in turn."""
    return board.roster[(number - 1) % len(board.roster)]


# --- sessions --------------------------------------------------------------------------------
async def get_session(
    session: AsyncSession, session_id: str, viewer: Principal, *, for_update: bool = False
) -> ReviewSession:
    row = await BoardRepository(session).review_session(session_id, for_update=for_update)
    if row is None:
        raise NotFound(f"review session {session_id} not found")
    try:
        await get_board(session, row.board_id, viewer)
    except NotFound:
        raise NotFound(f"review session {session_id} not found") from None
    return row


@dataclass(slots=True)
class Proposed:
    kind: AgendaKind
    reason: str
    case_id: str | None = None
    group_id: str | None = None

    @property
    def key(self) -> tuple[str, str | None, str | None]:
        return (self.kind.value, self.case_id, self.group_id)


async def build_agenda(
    session: AsyncSession, board: ReviewBoard, viewer: Principal, now: datetime
) -> list[Proposed]:
    """What the catalog asks of the board's team now, as `viewer` sees it."""
    out: list[Proposed] = []
    severe = await catalog.list_cases(
        session,
        CaseFilter(team=board.team, severity_min="S0", severity_max="S1", status=[Status.NEW]),
        viewer,
        PER_KIND,
        None,
    )
    out += [
        Proposed(AgendaKind.NEW_SEVERE, f"{c.severity}, not yet triaged", case_id=c.id)
        for c in severe
    ]
    regressed = 0
    for group in await catalog.list_groups(
        session, viewer, status=GroupStatus.REGRESSED.value, first=PER_KIND * 5
    ):
        if regressed == PER_KIND:
            break
        # A group is the board's when one of its cases is the team's.
        if await catalog.list_cases(
            session, CaseFilter(team=board.team, group_id=group.id), viewer, 1, None
        ):
            regressed += 1
            out.append(
                Proposed(
                    AgendaKind.REGRESSED_GROUP,
                    f"regressed in version {group.regressed_in_version or '?'}",
                    group_id=group.id,
                )
            )
    out += await _least_agreement(session, board, viewer)
    stale_before = now - _period(board.cadence)
    remediating = await catalog.list_cases(
        session,
        CaseFilter(team=board.team, status=[Status.IN_REMEDIATION]),
        viewer,
        REMEDIATION_SCAN,
        None,
    )
    stale = sorted(
        (c for c in remediating if c.updated_at < stale_before), key=lambda c: c.updated_at
    )
    out += [
        Proposed(
            AgendaKind.STALE_REMEDIATION,
            f"in remediation, not updated since {c.updated_at.date().isoformat()}",
            case_id=c.id,
        )
        for c in stale[:PER_KIND]
    ]
    return out


async def _least_agreement(
    session: AsyncSession, board: ReviewBoard, viewer: Principal
) -> list[Proposed]:
    """The team's cases whose annotators disagree most (two or more submissions)."""
    groups = await AnnotationRepository(session).submitted_groups(catalog.visible_case_ids(viewer))
    candidates = sorted({cid for cid, _, count, _ in groups if count >= 2})
    if not candidates:
        return []
    ours = [
        c.id for c in await catalog.get_cases(session, candidates, viewer) if c.team == board.team
    ]
    states = await search_state.document_fields(session, ours)
    low = sorted(
        (s["agreement"], cid)
        for cid, s in states.items()
        if s["agreement"] is not None and s["agreement"] < 1
    )
    return [
        Proposed(
            AgendaKind.LOW_AGREEMENT,
            f"annotators agree on {share:.0%} of fields; differ on "
            + ", ".join(states[cid]["disagreement"]),
            case_id=cid,
        )
        for share, cid in low[:PER_KIND]
    ]


async def open_session(
    session: AsyncSession,
    board_id: str,
    actor: Principal,
    scheduled_for: datetime | None = None,
) -> ReviewSession:
    """The board's next session: owned by the roster's next member, one cadence after the
    previous one (or `scheduled_for`), its agenda the items still open from earlier sessions
    (carried, overdue first) then what the catalog asks now. The previous must be closed."""
    board = await get_board(session, board_id, actor, for_update=True)
    repo = BoardRepository(session)
    earlier = (await sessions_of(session, [board.id]))[board.id]
    last = earlier[-1] if earlier else None
    if last is not None and last.status == "open":
        raise Conflict(
            f"session {last.number} of board {board.name} is still open: close it with its "
            "minutes first",
            [FieldError("boardId", f"session {last.id} is open")],
        )
    now = utcnow()
    number = (last.number + 1) if last else 1
    when = scheduled_for or (next_date(last.scheduled_for, board.cadence) if last else now)
    row = ReviewSession(
        id=new_id(),
        board_id=board.id,
        number=number,
        owner=owner_of(board, number),
        scheduled_for=when,
        status="open",
        opened_by=actor.subject,
        created_at=now,
    )
    await repo.add(row)
    items: list[ReviewAgendaItem] = []
    seen: set[tuple[str, str | None, str | None]] = set()
    for old in await repo.open_items_of_board(board.id):
        old.status = "carried"
        seen.add((old.kind, old.case_id, old.group_id))
        items.append(
            ReviewAgendaItem(
                id=new_id(),
                session_id=row.id,
                position=len(items),
                kind=old.kind,
                case_id=old.case_id,
                group_id=old.group_id,
                reason=old.reason,
                carried_from=old.carried_from or old.id,
                created_at=now,
            )
        )
    carried = len(items)
    for p in await build_agenda(session, board, actor, now):
        if p.key in seen:
            continue
        seen.add(p.key)
        items.append(
            ReviewAgendaItem(
                id=new_id(),
                session_id=row.id,
                position=len(items),
                kind=p.kind.value,
                case_id=p.case_id,
                group_id=p.group_id,
                reason=p.reason,
                created_at=now,
            )
        )
    if items:
        await repo.add(*items)
    audit(
        session,
        actor,
        "annotation.session_open",
        f"review_session:{row.id}",
        details={"board_id": board.id, "number": number, "items": len(items), "carried": carried},
    )
    return row


async def decide_item(
    session: AsyncSession, item_id: str, decision: str, actor: Principal
) -> ReviewAgendaItem:
    text = _text(decision, "decision", required=True)
    repo = BoardRepository(session)
    item = await repo.item(item_id, for_update=True)
    if item is None:
        raise NotFound(f"agenda item {item_id} not found")
    try:
        meeting = await get_session(session, item.session_id, actor)
    except NotFound:
        raise NotFound(f"agenda item {item_id} not found") from None
    if item.status == "carried":
        raise Conflict(
            f"agenda item {item_id} was carried to a later session: decide it there",
            [FieldError("itemId", "carried")],
        )
    if meeting.status != "open":
        raise Conflict(
            f"session {meeting.number} is closed", [FieldError("itemId", "its session is closed")]
        )
    item.status, item.decision = "decided", text
    item.decided_by, item.decided_at = actor.subject, utcnow()
    await session.flush()
    audit(
        session,
        actor,
        "annotation.agenda_decide",
        f"review_agenda_item:{item.id}",
        details={"session_id": meeting.id, "kind": item.kind},
    )
    return item


async def close_session(
    session: AsyncSession, session_id: str, minutes: str, actor: Principal
) -> ReviewSession:
    """Record the minutes and close; items left open are overdue and carry to the next."""
    text = _text(minutes, "minutes", required=True)
    row = await get_session(session, session_id, actor, for_update=True)
    if row.status != "open":
        raise Conflict(
            f"session {row.number} is already closed", [FieldError("sessionId", "closed")]
        )
    row.status, row.minutes = "closed", text
    row.closed_by, row.closed_at = actor.subject, utcnow()
    await session.flush()
    open_items = [
        i for i in await BoardRepository(session).items_of([row.id]) if i.status == "open"
    ]
    audit(
        session,
        actor,
        "annotation.session_close",
        f"review_session:{row.id}",
        details={"board_id": row.board_id, "overdue": len(open_items)},
    )
    return row


async def agendas(
    session: AsyncSession, session_ids: list[str], reader: Principal
) -> dict[str, list[ReviewAgendaItem]]:
    """Each session's items the reader may see: an item about a case or group hidden from
    them is left out (its reason describes it)."""
    rows = await BoardRepository(session).items_of(session_ids)
    cases = await catalog.visible_among(session, [r.case_id for r in rows if r.case_id], reader)
    groups: dict[str, bool] = {}
    for gid in {r.group_id for r in rows if r.group_id}:
        try:
            await catalog.get_visible_group(session, gid, reader)
            groups[gid] = True
        except NotFound:
            groups[gid] = False
    out: dict[str, list[ReviewAgendaItem]] = {s: [] for s in session_ids}
    for r in rows:
        if (r.case_id and r.case_id not in cases) or (r.group_id and not groups[r.group_id]):
            continue
        out[r.session_id].append(r)
    return out
