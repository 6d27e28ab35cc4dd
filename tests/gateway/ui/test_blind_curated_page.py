"""The case page applies the blind-read rule as GraphQL and REST do: an annotator of the case
who has not submitted their own failcat annotation sees neither its adjudicated failure mode,
severity and impact nor the history's changes that would tell them; the rest of the page is
theirs."""

from __future__ import annotations

import pytest

from services.gateway.ui.signin import TOKEN_COOKIE
from tests.annotation.helpers import (
    ADJUDICATE,
    ANNOTATOR,
    ASSIGN,
    FAILCAT_VALUES,
    REVIEWER,
    Caller,
    caller,
    subject_of,
    submit,
)
from tests.annotation.test_annotations import name_of
from tests.gateway.helpers import data, gql
from tests.gateway.ui.conftest import signed_in

REVISION = "query($id: ID!) { case(id: $id) { revision } }"
DECIDED_MODE = "safety.harmful_content"


@pytest.fixture(scope="module")
async def annotator(app, settings, corpus):
    person = await signed_in(
        app, settings, roles=["annotator"], team=corpus.team, clearance="restricted"
    )
    yield person
    await person.http.aclose()


async def test_the_case_page_hides_the_adjudicated_labels_from_a_blinded_annotator(
    annotator, curator, corpus, token_for, client
):
    case_id = corpus.ids[9]
    kw = {"team": corpus.team, "clearance": "restricted"}
    lead = await caller(token_for, REVIEWER, **kw)
    other = await caller(token_for, ANNOTATOR, **kw)
    me = subject_of(annotator.http.cookies[TOKEN_COOKIE])
    who = {"cases": [case_id], "who": [other.subject, me], "k": 2}
    data(await gql(client, lead.token, ASSIGN, who))
    await submit(client, other, case_id, FAILCAT_VALUES)
    revision = data(await gql(client, lead.token, REVISION, {"id": case_id}))["case"]["revision"]
    decided = {**FAILCAT_VALUES, "severity": "S0"}
    variables = {"case": case_id, "tax": "failcat", "values": decided, "rev": revision}
    data(await gql(client, lead.token, ADJUDICATE, variables))

    seen = (await curator.http.get(f"/ui/cases/{case_id}")).text
    assert 'class="sev sev-S0"' in seen and DECIDED_MODE in seen
    page = await annotator.http.get(f"/ui/cases/{case_id}")
    assert page.status_code == 200
    html = page.text
    assert corpus.titles[case_id].split()[0] in html  # the rest of the case is theirs
    assert 'class="sev sev-' not in html.split('class="case-grid"')[0]
    assert DECIDED_MODE not in html  # neither in the header nor in the history's changes
    assert "adjudicated" in html  # the revision itself is listed, without those changes
    assert 'id="annotations-blind"' in html  # nor whose annotation it is, by id or by name
    assert other.subject not in html and name_of(other.token) not in html

    # Once their own is submitted, the decided labels are theirs to read.
    await submit(client, Caller(annotator.http.cookies[TOKEN_COOKIE], me), case_id, FAILCAT_VALUES)
    html = (await annotator.http.get(f"/ui/cases/{case_id}")).text
    assert 'class="sev sev-S0"' in html and DECIDED_MODE in html
    # A person annotator is named by their account's username, the id in the title.
    seen = (await curator.http.get(f"/ui/cases/{case_id}")).text
    assert f'<span title="{me}">{annotator.username}</span>' in seen
