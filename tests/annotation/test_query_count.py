"""No N+1: a page of cases with their annotations (and the blind-read rule), their history
and review trails costs the same statements for 5 cases or 40."""

from __future__ import annotations

import secrets

from tests.annotation.helpers import ANNOTATOR, CURATOR, FAILCAT_VALUES, caller, data, gql, submit
from tests.gateway.helpers import ingest_corpus
from tests.gateway.test_query_count import counting, outbox_drained

PAGE = """query($f: CaseFilterInput, $n: Int!) {
  cases(filter: $f, first: $n) {
    nodes {
      id
      annotations { annotator annotatorName status history { revision action } }
      reviewTrail { action actor hidden }
    }
  }
}"""


async def test_annotations_of_a_page_cost_the_same_statements_for_5_or_40(app, client, token_for):
    curator = await caller(token_for, CURATOR)
    annotators = [await caller(token_for, ANNOTATOR) for _ in range(2)]
    source = f"annotated-{secrets.token_hex(3)}"
    cases = await ingest_corpus(client, curator.token, 40, data_source=source)
    for case_id in cases:
        for who in annotators:
            await submit(client, who, case_id, FAILCAT_VALUES)
    await outbox_drained(app.state.db)

    counts = {}
    for n in (5, 40):
        with counting(app.state.db.engine) as statements:
            got = data(
                await gql(client, annotators[0].token, PAGE, {"f": {"dataSource": source}, "n": n})
            )
        nodes = got["cases"]["nodes"]
        assert len(nodes) == n
        assert all(len(c["annotations"]) == 2 for c in nodes)
        assert all(a["annotatorName"] for c in nodes for a in c["annotations"])
        assert all(
            [e["action"] for e in c["reviewTrail"]] == ["submitted", "submitted"] for c in nodes
        )
        counts[n] = len(statements)
    assert counts[5] == counts[40], counts
    # the page; annotations with the rule; their history; their annotators' names (accounts,
    # clients); the trail's annotations, assignments, changes and reviews (+ BEGIN on some
    # drivers)
    assert counts[40] <= 11, counts
