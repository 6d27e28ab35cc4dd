"""What the running API records: reads, searches, writes, token issuance and refusals,
authorization failures; and Query.auditLog. Each entry is in the database by the time the
answer arrives (read right after the response, without waiting)."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from typing import Any

from sqlalchemy import event, select

from services.audit.models import AuditEntry
from shared.audit import GENESIS, chain
from shared.cursor import encode_cursor
from tests.conftest import auth_header
from tests.gateway.helpers import codes, data, gql, ingest_corpus

CASE = "query($id: ID!) { case(id: $id) { id title } }"
SEARCH = "query($q: String!) { search(query: $q) { total hits { case { id } } } }"
UPDATE = """mutation($id: ID!, $rev: Int!, $bad: Int!) {
  a: updateCase(id: $id, patch: {title: "retitled"}, expectedRevision: $rev) { id revision }
  b: updateCase(id: $id, patch: {title: "again"}, expectedRevision: $bad) { id revision }
}"""
UPDATE_ONE = """mutation($id: ID!, $rev: Int!) {
  updateCase(id: $id, patch: {title: "retitled"}, expectedRevision: $rev) { id revision }
}"""
AUDIT_LOG = """query($f: AuditLogFilter, $first: Int!, $after: String) {
  auditLog(filter: $f, first: $first, after: $after) {
    edges { cursor node { seq at actorSubject actorClient action target outcome correlationId
                          details hash } }
    pageInfo { hasNextPage endCursor }
  }
}"""


async def entries(app: Any, **where: Any) -> list[AuditEntry]:
    query = select(AuditEntry).order_by(AuditEntry.seq)
    for name, value in where.items():
        query = query.where(getattr(AuditEntry, name) == value)
    async with app.state.db.sessionmaker() as s:
        return list((await s.execute(query)).scalars())


async def test_a_case_read_is_stored_before_its_answer(app, client, token_for) -> None:
    writer = await token_for("cases:ingest cases:read")
    [case_id] = await ingest_corpus(client, writer, 1)
    reader = await token_for("cases:read")
    cid = f"cid-{secrets.token_hex(4)}"
    body = await gql(client, reader, CASE, {"id": case_id}, **{"X-Request-ID": cid})
    assert data(body)["case"]["id"] == case_id
    [entry] = await entries(app, target=f"case:{case_id}", action="case.read")
    assert entry.outcome == "ok" and entry.correlation_id == cid
    assert entry.actor_client and entry.actor_subject

    resp = await client.get(f"/catalog/v1/cases/{case_id}", headers=auth_header(reader))
    assert resp.status_code == 200
    assert len(await entries(app, target=f"case:{case_id}", action="case.read")) == 2


async def test_a_case_read_carries_its_entry_in_its_own_statement(app, client, token_for):
    """Postgres: case(id) is one statement, the read with its entry (no append at commit),
    and the entry chains; a restricted case read by an internal reader runs the same
    statement, answers NOT_FOUND and appends nothing. SQLite stages the entry as before."""
    writer = await token_for("cases:ingest cases:read", clearance="restricted")
    [open_id] = await ingest_corpus(client, writer, 1)
    [hidden_id] = await ingest_corpus(client, writer, 1, sensitivity="restricted")
    reader = await token_for("cases:read")
    postgres = app.state.db.dialect == "postgresql"
    with counting(app.state.db.engine) as statements:
        assert data(await gql(client, reader, CASE, {"id": open_id}))["case"]["id"] == open_id
    appends = [s for s in statements if "audit_log" in s]
    if postgres:
        [one] = appends
        assert "audit_appended" in one and "FROM failure_case JOIN model" in one
    [entry] = await entries(app, target=f"case:{open_id}", action="case.read")
    [before] = await entries(app, seq=entry.seq - 1)
    assert entry.hash == chain(before.hash, entry.model_dump())
    with counting(app.state.db.engine) as statements:
        assert codes(await gql(client, reader, CASE, {"id": hidden_id})) == ["NOT_FOUND"]
    if postgres:
        [one] = [s for s in statements if "audit_log" in s]
        assert "audit_appended" in one
    assert await entries(app, target=f"case:{hidden_id}", action="case.read") == []


async def test_a_rest_case_read_carries_its_entry_in_its_own_statement(app, client, token_for):
    """GET /catalog/v1/cases/{id} as case(id): on Postgres the read (services/catalog/
    hydration.py) appends its entry in its own statement, and a case hidden from the reader
    answers 404 and appends nothing; on SQLite the entry rides the read's trip."""
    writer = await token_for("cases:ingest cases:read", clearance="restricted")
    [open_id] = await ingest_corpus(client, writer, 1)
    [hidden_id] = await ingest_corpus(client, writer, 1, sensitivity="restricted")
    reader = auth_header(await token_for("cases:read"))
    postgres = app.state.db.dialect == "postgresql"
    with counting(app.state.db.engine) as statements:
        resp = await client.get(f"/catalog/v1/cases/{open_id}", headers=reader)
    assert resp.status_code == 200 and resp.json()["id"] == open_id, resp.text
    if postgres:
        [one] = [s for s in statements if "audit_log" in s]
        assert "audit_appended" in one and "FROM failure_case JOIN model" in one
    [entry] = await entries(app, target=f"case:{open_id}", action="case.read")
    [before] = await entries(app, seq=entry.seq - 1)
    assert entry.hash == chain(before.hash, entry.model_dump())
    with counting(app.state.db.engine) as statements:
        resp = await client.get(f"/catalog/v1/cases/{hidden_id}", headers=reader)
    assert resp.status_code == 404, resp.text
    if postgres:
        [one] = [s for s in statements if "audit_log" in s]
        assert "audit_appended" in one
    assert await entries(app, target=f"case:{hidden_id}", action="case.read") == []


@contextlib.contextmanager
def counting(engine: Any) -> Iterator[list[str]]:
    """The statements this process sends through SQLAlchemy meanwhile (background jobs'
    too: the callers pick theirs out)."""
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", count)


async def test_a_refused_read_records_no_read(app, client, token_for) -> None:
    reader = await token_for("cases:read")
    body = await gql(client, reader, CASE, {"id": "no-such-case"})
    assert codes(body) == ["NOT_FOUND"]
    assert await entries(app, target="case:no-such-case") == []


async def test_searches_record_the_query_and_the_hit_count(app, client, token_for) -> None:
    reader = await token_for("cases:read")
    words = f"autonomous vehicle {secrets.token_hex(3)}"
    total = data(await gql(client, reader, SEARCH, {"q": words}))["search"]["total"]
    found = [e for e in await entries(app, action="cases.search") if e.details["query"] == words]
    assert [e.details["hits"] for e in found] == [total]

    resp = await client.get("/search/v1/cases", params={"q": words}, headers=auth_header(reader))
    assert resp.status_code == 200
    found = [e for e in await entries(app, action="cases.search") if e.details["query"] == words]
    assert [e.details["hits"] for e in found] == [total, resp.json()["total"]]


async def test_a_searched_address_is_masked_in_the_entry(app, client, token_for) -> None:
    # The trail must not become the place personal data survives: a reader who searches
    # for someone's address leaves "[EMAIL]" behind, not the address.
    reader = await token_for("cases:read")
    address = f"jane.roe.{secrets.token_hex(3)}@example.org"
    data(await gql(client, reader, SEARCH, {"q": f"leak {address}"}))
    resp = await client.get(
        "/search/v1/cases", params={"q": f"leak {address}"}, headers=auth_header(reader)
    )
    assert resp.status_code == 200
    queries = [e.details["query"] for e in await entries(app, action="cases.search")]
    assert queries.count("leak [EMAIL]") == 2
    assert not [q for q in queries if address in (q or "")]


async def test_rest_similar_records_the_cases_it_names(app, client, token_for) -> None:
    writer, reader = await token_for("cases:ingest cases:read"), await token_for("cases:read")
    case_ids = await ingest_corpus(client, writer, 5)
    resp = await client.get(f"/search/v1/cases/{case_ids[0]}/similar", headers=auth_header(reader))
    assert resp.status_code == 200
    [entry] = await entries(app, action="cases.similar", target=f"case:{case_ids[0]}")
    assert entry.details["ids"] == [h["id"] for h in resp.json()["hits"]]


async def test_token_issuance_and_refusal(app, client) -> None:
    auth = app.state.auth
    async with app.state.db.transaction() as s:
        record, secret = await auth.create_client(s, name="audited", scopes=["cases:read"])
    target = f"client:{record.client_id}"
    [created] = await entries(app, target=target, action="auth.client.create")
    assert created.details["scopes"] == ["cases:read"]

    ok = await client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(record.client_id, secret or ""),
    )
    bad = await client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(record.client_id, "wrong-secret"),
    )
    assert ok.status_code == 200 and bad.status_code == 401
    issued, refused = await entries(app, target=target, action="auth.token")
    assert issued.outcome == "ok" and refused.outcome == "denied"
    assert refused.details == {
        "grant_type": "client_credentials",
        "status": 401,
        "error": "invalid_client",
    }
    for entry in (issued, refused):  # never a secret in the trail
        assert secret not in str(entry.model_dump()) and "wrong-secret" not in str(entry.details)


async def test_writes_are_audited_and_a_failed_mutation_leaves_none(app, client, token_for):
    writer = await token_for("cases:ingest cases:read cases:write")
    before = (await entries(app, action="cases.ingest"))[-1:]
    [case_id] = await ingest_corpus(client, writer, 1)
    [batch] = [e for e in await entries(app, action="cases.ingest") if e not in before][-1:]
    assert batch.details["counts"]["created"] >= 1

    body = await gql(client, writer, UPDATE, {"id": case_id, "rev": 1, "bad": 99})
    assert "CONFLICT" in codes(body) and body["data"] is None
    assert await entries(app, target=f"case:{case_id}", action="case.update") == []

    data(await gql(client, writer, UPDATE_ONE, {"id": case_id, "rev": 1}))
    [update] = await entries(app, target=f"case:{case_id}", action="case.update")
    assert update.details == {"fields": ["title"], "revision": 2}


async def test_refusals_are_recorded_on_both_apis(app, client, token_for) -> None:
    reader = await token_for("cases:read")
    body = await gql(client, reader, AUDIT_LOG, {"first": 5})
    assert codes(body) == ["FORBIDDEN"]
    refusals = await entries(app, action="authz.denied", target="graphql:auditLog")
    assert refusals and refusals[-1].outcome == "denied"
    assert refusals[-1].details["codes"] == ["FORBIDDEN"]

    path = f"/catalog/v1/cases/{secrets.token_hex(4)}"
    assert (await client.get(path)).status_code == 401
    assert (
        await client.post("/catalog/v1/cases:bulk", headers=auth_header(reader))
    ).status_code == 403
    [unauth] = await entries(app, action="authz.denied", target=f"http:GET {path}")
    assert unauth.details == {"status": 401, "code": "UNAUTHENTICATED"}
    assert unauth.actor_subject is None
    forbidden = await entries(app, action="authz.denied", target="http:POST /catalog/v1/cases:bulk")
    assert forbidden[-1].details["status"] == 403 and forbidden[-1].actor_client


async def test_audit_log_filters_and_pages(app, client, token_for) -> None:
    writer = await token_for("cases:ingest cases:read")
    [case_id] = await ingest_corpus(client, writer, 1)
    reader = await token_for("cases:read")
    for _ in range(3):
        data(await gql(client, reader, CASE, {"id": case_id}))
    auditor = await token_for("audit:read")
    target = {"target": f"case:{case_id}"}
    seen: list[dict[str, Any]] = []
    after = None
    while True:
        page = data(
            await gql(client, auditor, AUDIT_LOG, {"f": target, "first": 2, "after": after})
        )
        conn = page["auditLog"]
        seen += [e["node"] for e in conn["edges"]]
        if not conn["pageInfo"]["hasNextPage"]:
            break
        after = conn["pageInfo"]["endCursor"]
    assert len(seen) == 3 and all(n["action"] == "case.read" for n in seen)
    assert [n["seq"] for n in seen] == sorted((n["seq"] for n in seen), reverse=True)

    narrowed = {"action": "case", "actor": seen[0]["actorClient"], **target}
    page = data(await gql(client, auditor, AUDIT_LOG, {"f": narrowed, "first": 50}))
    assert len(page["auditLog"]["edges"]) == 3
    future = {"from": "2999-01-01T00:00:00Z", **target}
    page = data(await gql(client, auditor, AUDIT_LOG, {"f": future, "first": 50}))
    assert page["auditLog"]["edges"] == []
    other = {"action": "cases.search", **target}
    assert (
        data(await gql(client, auditor, AUDIT_LOG, {"f": other, "first": 5}))["auditLog"]["edges"]
        == []
    )


async def test_audit_log_refuses_what_no_entry_could_match_naming_the_field(
    client, token_for
) -> None:
    """A cursor or a filter no page could come from is BAD_USER_INPUT on its field: a forged
    cursor's huge or boolean seq, a 100,000-character action (each was INTERNAL), a time
    in year 0 once in UTC (an error naming nothing), a range ending before it starts (an
    empty page, as if nothing had happened)."""
    auditor = await token_for("audit:read")
    refused = [
        ({"after": encode_cursor("audit", [2**63])}, "after"),
        ({"after": encode_cursor("audit", [10**30])}, "after"),
        ({"after": encode_cursor("audit", [True])}, "after"),
        ({"f": {"action": "case." * 20_000}}, "filter.action"),
        ({"f": {"target": "case:" + "x" * 600}}, "filter.target"),
        ({"f": {"actor": "a\x00b"}}, "filter.actor"),
        ({"f": {"from": "0001-01-01T00:00:00+14:00"}}, "filter.from"),
        ({"f": {"to": "9999-12-31T23:59:59-14:00"}}, "filter.to"),
        ({"f": {"from": "2026-12-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}}, "filter.to"),
        ({"f": {"from": "2026-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}}, "filter.to"),
    ]
    for variables, path in refused:
        body = await gql(client, auditor, AUDIT_LOG, {"first": 5, **variables})
        assert codes(body) == ["BAD_USER_INPUT"], (variables, body)
        assert [e["path"] for e in body["errors"][0]["extensions"]["errors"]] == [path], body
    # A time without a zone is read as UTC, as the stored times are: a range is still a range.
    zoneless = {"from": "2026-01-01T00:00:00", "to": "2999-01-01T00:00:00Z"}
    page = data(await gql(client, auditor, AUDIT_LOG, {"f": zoneless, "first": 1}))
    assert len(page["auditLog"]["edges"]) == 1


async def test_the_session_chain_stays_valid(app) -> None:
    """Everything the API appended in this session (concurrent requests included) chains."""
    prev = GENESIS
    for entry in await entries(app):
        assert entry.hash == chain(prev, entry.model_dump()), entry.seq
        prev = entry.hash


async def test_an_export_records_each_page_it_sends(app, client, token_for) -> None:
    from tests.catalog.builders import unique
    from tests.corpus import aiid_cases
    from tests.gateway.helpers import ingest_searchable

    writer = await token_for("cases:ingest cases:read exports:create")
    word = f"wombat{secrets.token_hex(3)}"
    ids = sorted(await ingest_searchable(client, writer, unique(aiid_cases(2)), word))
    resp = await client.get(
        "/catalog/v1/cases:export", params={"q": word}, headers=auth_header(writer)
    )
    assert resp.status_code == 200 and len(resp.text.splitlines()) == 2
    pages = [e for e in await entries(app, action="cases.export") if e.details["query"] == word]
    assert [sorted(p.details["ids"]) for p in pages] == [ids]
    assert pages[0].details["format"] == "ndjson" and pages[0].actor_client
