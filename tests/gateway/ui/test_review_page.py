"""The review page: a board's open session and its agenda, the cases waiting for a
reviewer (reviewers only), and agreement per field of the shared taxonomy."""

from __future__ import annotations

import re
import secrets

import pytest

from tests.annotation.helpers import ASSIGN, FAILCAT_VALUES, REVIEWER, caller, submit
from tests.gateway.helpers import data, gql
from tests.gateway.ui.conftest import signed_in

BOARD = """mutation($team: String!, $name: String!, $roster: [String!]!) {
  createReviewBoard(team: $team, name: $name, cadence: WEEKLY, roster: $roster) { id } }"""
OPEN = "mutation($board: ID!) { openReviewSession(boardId: $board) { id agenda { id } } }"


@pytest.fixture(scope="module")
async def reviewer(app, settings, corpus):
    person = await signed_in(
        app, settings, roles=["reviewer"], team=corpus.team, clearance="restricted"
    )
    yield person
    await person.http.aclose()


async def test_review_page_shows_the_session_agenda_queue_and_agreement(
    reviewer, curator, corpus, token_for, client, admin_token
):
    # Two annotators of the team split on severity of one case: it waits for a reviewer.
    case_id = corpus.ids[6]
    lead = await caller(token_for, REVIEWER, team=corpus.team, clearance="restricted")
    a, b = [
        await caller(token_for, REVIEWER, team=corpus.team, clearance="restricted")
        for _ in range(2)
    ]
    body = await gql(
        client, lead.token, ASSIGN, {"cases": [case_id], "who": [a.subject, b.subject], "k": 2}
    )
    data(body)
    await submit(client, a, case_id, FAILCAT_VALUES)
    await submit(client, b, case_id, {**FAILCAT_VALUES, "severity": "S0"})

    name = f"weekly-{secrets.token_hex(3)}"
    board = data(
        await gql(
            client,
            admin_token,
            BOARD,
            {"team": corpus.team, "name": name, "roster": [reviewer.username]},
        )
    )["createReviewBoard"]["id"]
    session = data(await gql(client, admin_token, OPEN, {"board": board}))["openReviewSession"]

    page = await reviewer.http.get("/ui/review")
    assert page.status_code == 200
    html = page.text
    sessions = html.split('id="sessions"', 1)[1].split("</section>", 1)[0]
    assert name in sessions and f"owner {reviewer.username}" in sessions
    # The agenda as the API built it: one list item per agenda item.
    assert sessions.count('class="agenda-item') == len(session["agenda"]) > 0

    queue = html.split('id="queue"', 1)[1].split("</section>", 1)[0]
    assert f'href="/ui/cases/{case_id}"' in queue and "2 of 2" in queue

    agreement = html.split('id="agreement-by-field"', 1)[1].split("</section>", 1)[0]
    rows = dict(
        re.findall(r'<tr data-field="([^"]+)"><th scope="row">[^<]+</th><td>(\d+)</td>', agreement)
    )
    assert "severity" in rows and int(rows["severity"]) >= 1

    # Someone without reviews:write sees the page, not the queue.
    theirs = (await curator.http.get("/ui/review")).text
    assert "The review queue is for reviewers" in theirs
    assert (
        f'href="/ui/cases/{case_id}"' not in theirs.split('id="queue"', 1)[1].split("</section>")[0]
    )
