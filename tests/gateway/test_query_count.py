"""No N+1: a page of cases with its relations costs a constant number of SQL statements."""

from __future__ import annotations

import asyncio
import contextlib
import secrets

from sqlalchemy import event, text

from tests.catalog.builders import unique
from tests.corpus import aiid_cases
from tests.gateway.helpers import data, gql, ingest_corpus, ingest_searchable

PAGE = """query($f: CaseFilterInput, $n: Int!) {
  cases(filter: $f, first: $n) {
    nodes {
      id title severity status
      model { name } modelVersion { version } dataSource { name }
      group { id caseCount status }
      links { kind url }
      lastRevision { revision actor }
    }
    pageInfo { hasNextPage }
  }
}"""
# Statements of the background jobs sharing the engine (indexer, revocation poll, escalation
# sender, audit checkpoints), not ours; and the audit append, a constant three per commit
# (benchmarks/audit.py measures it).
BACKGROUND = ("search_outbox", "oauth_", "auth_", "escalation_", "audit_")


@contextlib.contextmanager
def counting(engine):
    statements: list[str] = []

    def count(conn, cursor, statement, *args):
        # (a read that carries its audit entry is ours: it reads the case table)
        if "FROM failure_case" in statement or not any(t in statement for t in BACKGROUND):
            statements.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", count)


async def outbox_drained(db) -> None:
    for _ in range(200):
        async with db.transaction() as s:
            if not (await s.execute(text("SELECT count(*) FROM search_outbox"))).scalar():
                return
        await asyncio.sleep(0.05)


async def test_a_page_of_cases_costs_the_same_statements_for_10_or_100(app, client, token_for):
    token = await token_for("cases:read cases:ingest")
    source = f"n-plus-one-{secrets.token_hex(3)}"
    cases = []
    for _ in range(2):  # 100 cases over a few models, versions and groups, with links
        cases += await ingest_corpus(
            client,
            token,
            50,
            data_source=source,
            links=[{"kind": "ticket", "url": "https://t.example/1"}],
        )
    await outbox_drained(app.state.db)

    counts = {}
    for n in (10, 100):
        with counting(app.state.db.engine) as statements:
            got = data(await gql(client, token, PAGE, {"f": {"dataSource": source}, "n": n}))
        nodes = got["cases"]["nodes"]
        assert len(nodes) == n
        assert all(c["links"] and c["lastRevision"]["revision"] == 1 for c in nodes)
        counts[n] = len(statements)
    assert counts[10] == counts[100], counts
    # the page, models, versions, sources, groups, the groups' cases hidden from this reader
    # (below full clearance), links, revisions (+ BEGIN on some drivers)
    assert counts[100] <= 9, counts


SEARCH = """query($q: String!, $n: Int!) {
  search(query: $q, first: $n) {
    total
    hits {
      score
      case {
        id title severity failureMode model { name } modelVersion { version } group { id }
        links { url }
      }
    }
  }
}"""


async def test_search_hits_cost_the_same_statements_for_5_or_30(
    app, client, token_for, monkeypatch
):
    token = await token_for("cases:read cases:ingest")
    word = f"quokka{secrets.token_hex(3)}"
    cases = unique(aiid_cases(30))
    for c in cases:
        c["links"] = [{"kind": "ticket", "url": "https://t.example/2"}]
    await ingest_searchable(client, token, cases, word)
    await outbox_drained(app.state.db)  # (the indexer's statements are not the search's)

    graded = {c["title"]: c.get("severity") for c in cases}  # curated: read past the blind rule
    counts, awaited = {}, {}
    for n in (5, 30):
        with counting(app.state.db.engine) as statements, awaitables(monkeypatch) as seen:
            hits = data(await gql(client, token, SEARCH, {"q": word, "n": n}))["search"]["hits"]
        assert len(hits) == n and all(h["case"]["model"]["name"] for h in hits)
        assert all(h["case"]["links"] == [{"url": "https://t.example/2"}] for h in hits)
        assert all(h["case"]["severity"] == graded[h["case"]["title"]] for h in hits)
        counts[n], awaited[n] = len(statements), len(seen)
    assert counts[5] == counts[30], counts
    # the cases, models, versions, groups, links (+ BEGIN on some drivers)
    assert counts[30] <= 6, counts
    # Hydration primed every relation the hits select, the curated fields' blind-read flag
    # included: completing the page creates no awaitable per hit (each costs a task).
    assert awaited[5] == awaited[30], awaited


@contextlib.contextmanager
def awaitables(monkeypatch):
    """The awaitables the GraphQL executor meets as field results, while the block runs."""
    from services.gateway import execution

    seen: list[object] = []
    real = execution.is_awaitable

    def counted(value):
        found = real(value)
        if found:
            seen.append(value)
        return found

    with monkeypatch.context() as patch:
        patch.setattr(execution, "is_awaitable", counted)
        yield seen


async def test_a_rest_case_read_is_one_statement_with_its_relations(app, client, token_for):
    """GET /catalog/v1/cases/{id}: the case, its model, version and source names, its links
    and its blind-read flag come from one statement (services/catalog/hydration.py), as a
    page of search hits does; it was six (a query per table). On Postgres that statement
    also appends the read's audit entry (tests/audit/test_recorded.py)."""
    writer = {"Authorization": f"Bearer {await token_for('cases:read cases:ingest')}"}
    [case] = unique(aiid_cases(1))
    case["links"] = [{"kind": "ticket", "url": "https://t.example/rest/1", "title": "one"}]
    resp = await client.post("/catalog/v1/cases:bulk", json=[case], headers=writer)
    case_id = resp.json()["results"][0]["id"]
    await outbox_drained(app.state.db)  # (the indexer's statements are not the read's)
    with counting(app.state.db.engine) as statements:
        got = await client.get(f"/catalog/v1/cases/{case_id}", headers=writer)
    assert got.status_code == 200, got.text
    body = got.json()
    model = body["model"]
    assert (model["name"], model["version"], body["data_source"]) == (
        case["model"]["name"],
        case["model"]["version"],
        case["data_source"],
    )
    assert body["links"] == case["links"]
    ours = [s for s in statements if not s.lstrip().upper().startswith("BEGIN")]
    assert len(ours) == 1, [s[:60] for s in ours]


CASE = "query($id: ID!) { case(id: $id) { id title severity model { name } } }"


@contextlib.contextmanager
def rewritten_per_execution(monkeypatch):
    """The statements SQLAlchemy re-renders on every execution while the block runs: those
    with an "expanding" parameter (a list bound to IN), whose text is rewritten each time."""
    from sqlalchemy.sql.compiler import SQLCompiler

    seen: list[str] = []
    real = SQLCompiler._process_parameters_for_postcompile

    def recorded(self, *args, **kwargs):
        seen.append(self.string)
        return real(self, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(SQLCompiler, "_process_parameters_for_postcompile", recorded)
        yield seen


async def test_reads_of_cases_bind_the_callers_view_without_rewriting_statements(
    app, client, token_for, monkeypatch
):
    """The caller's view (its clearance's sensitivities) is in every case read. Bound as a
    list, SQLAlchemy rewrote each such statement's whole text at every execution, ~0.2 ms of
    a single case's read: it is bound one value each (shared/visibility.py)."""
    token = await token_for("cases:read cases:ingest")
    word = f"wombat{secrets.token_hex(3)}"
    ids = await ingest_searchable(client, token, unique(aiid_cases(3)), word)

    headers = {"Authorization": f"Bearer {token}"}
    with rewritten_per_execution(monkeypatch) as rewritten:
        one = data(await gql(client, token, CASE, {"id": ids[0]}))["case"]
        rest = await client.get(f"/catalog/v1/cases/{ids[1]}", headers=headers)
        hits = data(await gql(client, token, SEARCH, {"q": word, "n": 3}))["search"]["hits"]
        listed = await client.get("/search/v1/cases", params={"q": word}, headers=headers)
    assert one["id"] == ids[0] and one["model"]["name"]
    assert rest.status_code == 200 and rest.json()["id"] == ids[1]
    assert len(hits) == 3 and len(listed.json()["hits"]) == 3, listed.text
    assert [s for s in rewritten if "failure_case" in s] == []
