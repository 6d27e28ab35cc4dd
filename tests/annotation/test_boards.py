"""Item 7, review rituals, on both backends: a team's board with a roster and a cadence; each
session owned by the roster's next member, one cadence after the last, with an agenda built
from the catalog (new S0/S1 cases, regressed groups, lowest agreement, stale remediation) as
the team sees it; decisions and minutes recorded; open items carried to the next session."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from sqlalchemy import select, update

from services.audit.models import AuditEntry
from services.catalog.models import FailureCase
from shared.db import utcnow
from tests.annotation.helpers import CURATOR, REVIEWER, caller, codes, data, gql, submit
from tests.auth.builders import make_user
from tests.gateway.helpers import ingest_corpus

BOARD = """
mutation($team: String!, $name: String!, $cadence: ReviewCadence!, $roster: [String!]!) {
  createReviewBoard(team: $team, name: $name, cadence: $cadence, roster: $roster) {
    id team name cadence roster nextOwner
  }
}"""
SESSION_FIELDS = """id number owner scheduledFor status minutes
  agenda { id kind caseId groupId reason status decision decidedBy carriedFrom
           case { id severity } group { id status } }"""
OPEN = (
    "mutation($board: ID!, $at: DateTime) { openReviewSession(boardId: $board, scheduledFor: $at)"
    " { " + SESSION_FIELDS + " } }"
)
DECIDE = """
mutation($item: ID!, $decision: String!) {
  recordReviewDecision(itemId: $item, decision: $decision) { id status decision decidedBy }
}"""
CLOSE = """
mutation($id: ID!, $minutes: String!) {
  closeReviewSession(sessionId: $id, minutes: $minutes) { id status minutes }
}"""
READ = (
    "query($id: ID!) { reviewBoard(id: $id) { id nextOwner sessions { id number owner status"
    " minutes } } }"
)
READ_SESSION = "query($id: ID!) { reviewSession(id: $id) { " + SESSION_FIELDS + " } }"
GROUP = "query($id: ID!) { case(id: $id) { group { id } } }"
RESOLVE = """mutation($id: ID!) { resolveGroup(id: $id, fixedInVersion: "1.0") { status } }"""


async def _team_world(client, token_for, app, team: str) -> dict:
    """The team's cases: S0 and S1 new, an S3 new, one split between two annotators, one
    stale in remediation, one of a regressed group; an S0 of another team."""
    curator = await caller(token_for, CURATOR, team=team)
    severe = await ingest_corpus(client, curator.token, 1, team=team, severity="S0")
    severe += await ingest_corpus(client, curator.token, 1, team=team, severity="S1")
    [mild] = await ingest_corpus(client, curator.token, 1, team=team, severity="S3")
    [split] = await ingest_corpus(client, curator.token, 1, team=team, severity="S2")
    [stale] = await ingest_corpus(client, curator.token, 1, team=team, severity="S2")
    fp = f"fp-{secrets.token_hex(6)}"
    model = {"name": f"board-model-{secrets.token_hex(3)}", "version": "1.0"}
    kw = {"team": team, "fingerprint": fp, "severity": "S3"}
    [old] = await ingest_corpus(client, curator.token, 1, model=model, **kw)
    other = await caller(token_for, CURATOR, team=f"{team}-other")
    [elsewhere] = await ingest_corpus(client, other.token, 1, team=f"{team}-other", severity="S0")

    group = data(await gql(client, curator.token, GROUP, {"id": old}))["case"]["group"]["id"]
    fixer = await caller(token_for, "cases:read cases:write", team=team)
    data(await gql(client, fixer.token, RESOLVE, {"id": group}))
    later = {**model, "version": "2.0"}
    await ingest_corpus(client, curator.token, 1, model=later, **kw)

    first, second = [
        await caller(token_for, "cases:read annotations:write", team=team) for _ in range(2)
    ]
    await submit(client, first, split, {"failure_mode": "safety.hallucination", "severity": "S1"})
    await submit(client, second, split, {"failure_mode": "safety.hallucination", "severity": "S3"})
    async with app.state.db.transaction() as s:
        await s.execute(
            update(FailureCase)
            .where(FailureCase.id == stale)
            .values(status="in_remediation", updated_at=utcnow() - timedelta(days=20))
        )
    return {
        "severe": severe,
        "mild": mild,
        "split": split,
        "stale": stale,
        "group": group,
        "elsewhere": elsewhere,
    }


def _kinds(agenda: list[dict]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for item in agenda:
        out.setdefault(item["kind"], set()).add(item["caseId"] or item["groupId"])
    return out


async def test_sessions_rotate_owners_build_agendas_and_carry_open_items(client, token_for, app):
    team = f"reviews-{secrets.token_hex(4)}"
    world = await _team_world(client, token_for, app, team)
    lead = await caller(token_for, REVIEWER, team=team)
    roster = [(await make_user(app, ["reviewer"]))[0] for _ in range(3)]
    ana, ben, cho = roster
    board = data(
        await gql(
            client,
            lead.token,
            BOARD,
            {"team": team, "name": "weekly triage", "cadence": "WEEKLY", "roster": roster},
        )
    )["createReviewBoard"]
    assert (board["cadence"], board["roster"], board["nextOwner"]) == ("WEEKLY", roster, ana)

    at = "2026-11-02T15:00:00Z"
    first = data(await gql(client, lead.token, OPEN, {"board": board["id"], "at": at}))
    first = first["openReviewSession"]
    assert (first["number"], first["owner"], first["status"]) == (1, ana, "open")
    kinds = _kinds(first["agenda"])
    assert kinds["NEW_SEVERE"] == set(world["severe"])  # not the S3, not the other team's
    assert kinds["REGRESSED_GROUP"] == {world["group"]}
    assert kinds["LOW_AGREEMENT"] == {world["split"]}
    assert kinds["STALE_REMEDIATION"] == {world["stale"]}
    assert world["elsewhere"] not in str(first["agenda"])
    low = next(i for i in first["agenda"] if i["kind"] == "LOW_AGREEMENT")
    assert "severity" in low["reason"] and "50%" in low["reason"]

    # A second session cannot open before the first is closed.
    body = await gql(client, lead.token, OPEN, {"board": board["id"]})
    assert codes(body) == ["CONFLICT"]

    decided = next(i for i in first["agenda"] if i["kind"] == "STALE_REMEDIATION")
    answer = await gql(
        client, lead.token, DECIDE, {"item": decided["id"], "decision": "escalate to owner"}
    )
    assert data(answer)["recordReviewDecision"]["status"] == "decided"
    closed = await gql(
        client, lead.token, CLOSE, {"id": first["id"], "minutes": "Reviewed the S0; escalated."}
    )
    assert data(closed)["closeReviewSession"]["status"] == "closed"
    body = await gql(client, lead.token, DECIDE, {"item": decided["id"], "decision": "again"})
    assert codes(body) == ["CONFLICT"]

    second = data(await gql(client, lead.token, OPEN, {"board": board["id"]}))
    second = second["openReviewSession"]
    assert (second["number"], second["owner"]) == (2, ben)
    scheduled = datetime.fromisoformat(second["scheduledFor"].replace("Z", "+00:00"))
    assert scheduled == datetime.fromisoformat("2026-11-09T15:00:00+00:00")  # one week on
    open_before = [i for i in first["agenda"] if i["id"] != decided["id"]]
    carried = second["agenda"][: len(open_before)]
    assert [i["carriedFrom"] for i in carried] == [i["id"] for i in open_before]
    # The stale case was decided: the catalog still asks about it, as a new item.
    assert [i["caseId"] for i in second["agenda"][len(open_before) :]] == [world["stale"]]
    assert len({(i["kind"], i["caseId"], i["groupId"]) for i in second["agenda"]}) == len(
        second["agenda"]
    )
    old = data(await gql(client, lead.token, READ_SESSION, {"id": first["id"]}))
    statuses = {i["id"]: i["status"] for i in old["reviewSession"]["agenda"]}
    assert statuses[decided["id"]] == "decided"
    assert {statuses[i["id"]] for i in open_before} == {"carried"}
    body = await gql(client, lead.token, DECIDE, {"item": open_before[0]["id"], "decision": "x"})
    assert codes(body) == ["CONFLICT"]

    read = data(await gql(client, lead.token, READ, {"id": board["id"]}))["reviewBoard"]
    assert [(s["number"], s["owner"], s["status"]) for s in read["sessions"]] == [
        (1, ana, "closed"),
        (2, ben, "open"),
    ]
    assert read["sessions"][0]["minutes"] == "Reviewed the S0; escalated."
    assert read["nextOwner"] == cho

    async with app.state.db.sessionmaker() as s:
        rows = (
            await s.execute(
                select(AuditEntry)
                .where(AuditEntry.action.like("annotation.%"))
                .order_by(AuditEntry.seq)
            )
        ).scalars()
        mine = [
            r.action
            for r in rows
            if board["id"] in str(r.target) + str(r.details)
            or r.target in {f"review_session:{first['id']}", f"review_session:{second['id']}"}
            or r.target == f"review_agenda_item:{decided['id']}"
        ]
    assert mine == [
        "annotation.board_create",
        "annotation.session_open",
        "annotation.agenda_decide",
        "annotation.session_close",
        "annotation.session_open",
    ]


async def test_boards_are_their_teams_and_bad_input_is_named(client, token_for):
    team = f"reviews-{secrets.token_hex(4)}"
    lead = await caller(token_for, REVIEWER, team=team)
    outsider = await caller(token_for, REVIEWER, team=f"{team}-x")
    values = {"team": team, "name": "monthly", "cadence": "MONTHLY", "roster": [lead.subject]}
    board = data(await gql(client, lead.token, BOARD, values))["createReviewBoard"]

    body = await gql(client, lead.token, BOARD, values)
    assert codes(body) == ["CONFLICT"]
    body = await gql(client, lead.token, BOARD, {**values, "name": "x", "roster": [" "]})
    assert codes(body) == ["BAD_USER_INPUT"]
    assert body["errors"][0]["extensions"]["errors"][0]["path"] == "roster"
    # A roster name that is nobody's was stored and owned sessions nobody would run.
    ghost = f"ghost-{team}"
    body = await gql(client, lead.token, BOARD, {**values, "name": "y", "roster": [ghost]})
    assert codes(body) == ["BAD_USER_INPUT"]
    assert body["errors"][0]["extensions"]["errors"] == [
        {"path": "roster", "message": f"not an account or client: {ghost}"}
    ]
    body = await gql(client, outsider.token, BOARD, {**values, "name": "theirs"})
    assert codes(body) == ["FORBIDDEN"]

    # Another team's board, its sessions and items are unknown to the outsider.
    opened = data(await gql(client, lead.token, OPEN, {"board": board["id"]}))
    assert codes(await gql(client, outsider.token, READ, {"id": board["id"]})) == ["NOT_FOUND"]
    session_id = opened["openReviewSession"]["id"]
    body = await gql(client, outsider.token, READ_SESSION, {"id": session_id})
    assert codes(body) == ["NOT_FOUND"]
    body = await gql(client, outsider.token, OPEN, {"board": board["id"]})
    assert codes(body) == ["NOT_FOUND"]
    body = await gql(client, outsider.token, CLOSE, {"id": session_id, "minutes": "m"})
    assert codes(body) == ["NOT_FOUND"]
    listed = await gql(client, outsider.token, "{ reviewBoards { id } }", {})
    assert board["id"] not in str(data(listed))
    mine = await gql(client, lead.token, "{ reviewBoards { id } }", {})
    assert [b["id"] for b in data(mine)["reviewBoards"]] == [board["id"]]
    body = await gql(client, lead.token, CLOSE, {"id": session_id, "minutes": "  "})
    assert codes(body) == ["BAD_USER_INPUT"]


async def test_an_agenda_shows_a_reader_only_the_cases_they_may_see(client, token_for):
    team = f"reviews-{secrets.token_hex(4)}"
    curator = await caller(token_for, CURATOR, team=team, clearance="confidential")
    [secret] = await ingest_corpus(
        client, curator.token, 1, team=team, severity="S0", sensitivity="confidential"
    )
    [plain] = await ingest_corpus(client, curator.token, 1, team=team, severity="S1")
    lead = await caller(token_for, REVIEWER, team=team, clearance="confidential")
    values = {"team": team, "name": "weekly", "cadence": "WEEKLY", "roster": [lead.subject]}
    board = data(await gql(client, lead.token, BOARD, values))["createReviewBoard"]
    opened = data(await gql(client, lead.token, OPEN, {"board": board["id"]}))
    session_id = opened["openReviewSession"]["id"]
    assert {i["caseId"] for i in opened["openReviewSession"]["agenda"]} == {secret, plain}

    colleague = await caller(token_for, "cases:read", team=team)  # internal clearance
    seen = data(await gql(client, colleague.token, READ_SESSION, {"id": session_id}))
    assert [i["caseId"] for i in seen["reviewSession"]["agenda"]] == [plain]
