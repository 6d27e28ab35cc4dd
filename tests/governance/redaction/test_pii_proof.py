"""The PII proof: a synthetic corpus of every detector's kinds (several spellings, JSON depths
1..5, free text) mixed into real AIID incidents, ingested under the default policy through
REST and GraphQL, and an imported AVID report whose annotation values carry fresh literals of
every kind (services/sharing/importing.py). Not one of its literal values may survive in any
sink: API answers
(GraphQL case and search, REST case, list and search), exports (REST NDJSON and CSV, the CLI's
local export), errors, captured log lines, the SQLite files' raw bytes or every text/JSON
column of every Postgres table, the search index (FTS5 files or an OpenSearch match_all
dump), the audit trail."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import time
from typing import Any

import httpx
import orjson
from sqlalchemy import text

from services.catalog.export import start_export
from services.governance.redaction.detectors import detect
from services.sharing.avid import import_reports
from shared.security import SYSTEM
from tests.conftest import auth_header
from tests.corpus import CORPORA
from tests.db_text import text_by_table
from tests.gateway.helpers import INGEST, case_input, data, gql
from tests.gateway.test_query_count import outbox_drained
from tests.governance.redaction.pii_corpus import VALUE_KINDS, Generator, build

CASE = """query($id: ID!) { case(id: $id) {
  id title summary impact environment input prediction expected signals
  writeup { hypothesis experiments results rationale }
  piiFindings { kind path } redactedFields
} }"""
SEARCH = """query($q: String!) { search(query: $q, first: 100, facets: ["pii"]) {
  total
  hits { highlights { field snippets } case { id summary input prediction } }
  facets { field buckets { value count } }
} }"""


IMPORTED = """query($id: ID!) { case(id: $id) {
  id title summary piiFindings { kind path }
  annotations(taxonomy: "AVID") { annotator values } reviewTrail { action values }
} }"""


def _imported_report(corpus: Any) -> dict[str, Any]:
    """A real AVID report whose annotation-only fields (credit, reference labels, CWE text)
    carry fresh literals of every kind, noted in the corpus so every sink is checked for
    them."""
    gen = Generator(seed=77)
    with (CORPORA / "avid_reports.jsonl").open(encoding="utf-8") as fh:
        report = json.loads(next(fh))
    report["metadata"]["report_id"] += f"-pii-{gen.rng.randbytes(4).hex()}"
    said = []
    for kind in VALUE_KINDS:
        value = getattr(gen, kind)()
        corpus.literals[value] = kind
        said.append(f"{kind} {value}")
    secret = gen.secret_value()
    corpus.literals[secret] = "secret"
    report["credit"] = [{"lang": "eng", "value": f"Reported by {v}."} for v in said[:5]]
    report["references"] = [
        {"type": "source", "label": f"Thread of {v}", "url": "https://example.org/thread"}
        for v in said[5:]
    ]
    report["impact"].setdefault("cwe", [])
    report["impact"]["cwe"] = [
        {"cweId": "CWE-200", "lang": "eng", "description": f"Leaked api_key={secret} in logs"}
    ]
    return report


def _literals(corpus: Any) -> set[str]:
    """Each value as written, and its canonical spelling where it differs (a card's digits,
    a phone's E.164, an IBAN without spaces), lower-cased: sinks are searched lower-cased."""
    out = set()
    for value, kind in corpus.literals.items():
        out.add(value.lower())
        if kind in ("card", "iban", "phone"):
            for f in detect(value):
                out.add(f.normal.lower())
    return out


async def _postgres_dump(db: Any) -> str:
    """Every text, varchar and JSON column of every table, cast to text."""
    by_table = await text_by_table(db)
    assert {"audit_log", "failure_case"} <= set(by_table)
    return "\n".join(v for values in by_table.values() for v in values)


def _sqlite_bytes(settings: Any) -> str:
    """The SQLite files' bytes as stored, read by a child process: a POSIX process that
    opens and closes a database file drops every lock it holds on it (SQLite's "how to
    corrupt" §2.2), so reading them here would leave the session's app unlocked and a later
    test's second writer would corrupt the session database."""
    names = ("catalog.db", "catalog.db-wal", "search.db", "search.db-wal")
    paths = [path for path in (settings.data_dir / n for n in names) if path.exists()]
    assert paths, "no SQLite files found"
    # One read per file, joined by a newline as before: a literal cannot straddle two files.
    return "\n".join(
        subprocess.run(["cat", path], capture_output=True, check=True).stdout.decode("latin-1")
        for path in paths
    )


async def _opensearch_dump(settings: Any) -> str:
    async with httpx.AsyncClient(base_url=settings.search_url, timeout=30) as os_client:
        await os_client.post(f"/{settings.search_index}/_refresh")
        resp = await os_client.post(
            f"/{settings.search_index}/_search",
            json={"query": {"match_all": {}}, "size": 10000},
        )
        resp.raise_for_status()
        return resp.text


async def test_no_literal_of_the_pii_corpus_survives_in_any_sink(
    app, client, settings, token_for, admin_token, caplog, backend
):
    caplog.set_level(logging.DEBUG)
    corpus = build(n_cases=27)
    source = corpus.cases[0]["data_source"]
    for case in corpus.cases:
        case["data_source"] = source  # one source: one query finds them all
    writer = await token_for("cases:ingest cases:read exports:create", clearance="restricted")
    sinks: dict[str, list[str]] = {}

    # Ingest: two thirds through the REST bulk route, the rest through GraphQL.
    split = len(corpus.cases) * 2 // 3
    resp = await client.post(
        "/catalog/v1/cases:bulk",
        content=orjson.dumps(corpus.cases[:split]),
        headers={**auth_header(writer), "Content-Type": "application/json"},
    )
    assert resp.status_code == 200, resp.status_code
    sinks["rest ingest answer"] = [resp.text]
    ids = [r["id"] for r in resp.json()["results"]]
    body = await gql(
        client, writer, INGEST, {"cases": [case_input(c) for c in corpus.cases[split:]]}
    )
    sinks["graphql ingest answer"] = [orjson.dumps(body).decode()]
    ids += [r["id"] for r in data(body)["ingestCases"]]
    assert len(ids) == len(corpus.cases) and all(ids)

    # Import: an AVID report whose annotation values carry PII.
    report = _imported_report(corpus)
    async with app.state.db.transaction() as s:
        imported = await import_reports(s, [report], SYSTEM)
    assert imported["annotations"] == 1 and not imported["errors"], imported
    async with app.state.db.transaction() as s:
        imported_id = (
            await s.execute(
                text("SELECT id FROM failure_case WHERE external_id = :e"),
                {"e": report["metadata"]["report_id"]},
            )
        ).scalar_one()

    # Errors: an invalid item carrying PII, through both routes.
    bad = {**corpus.cases[0], "severity": "S9", "external_id": "bad-one"}
    resp = await client.post(
        "/catalog/v1/cases:bulk",
        content=orjson.dumps([bad]),
        headers={**auth_header(writer), "Content-Type": "application/json"},
    )
    assert resp.json()["results"][0]["status"] == "invalid"
    sinks["rest error"] = [resp.text]
    body = await gql(client, writer, INGEST, {"cases": [{**case_input(bad), "severity": "S9"}]})
    assert body.get("errors")
    sinks["graphql error"] = [orjson.dumps(body).decode()]

    # Indexed: the outbox drained and the engine shows every case.
    await outbox_drained(app.state.db)
    deadline = time.monotonic() + 10
    while True:
        found = data(await gql(client, admin_token, SEARCH, {"q": f"source:{source}"}))
        if found["search"]["total"] == len(ids) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert found["search"]["total"] == len(ids)

    # API answers, read by a reader cleared for everything.
    answers = []
    seen_kinds: set[str] = set()
    for case_id in ids:
        got = data(await gql(client, admin_token, CASE, {"id": case_id}))["case"]
        assert got["piiFindings"], case_id
        seen_kinds |= {f["kind"] for f in got["piiFindings"]}
        answers.append(orjson.dumps(got).decode())
    sinks["graphql case"] = answers
    got = data(await gql(client, admin_token, IMPORTED, {"id": imported_id}))["case"]
    assert got["annotations"] and got["reviewTrail"]
    assert {f["kind"] for f in got["piiFindings"] if f["path"].startswith("annotation.AVID.")} >= {
        *VALUE_KINDS,
        "secret",
    }
    h = auth_header(admin_token)
    sinks["imported annotation"] = [
        orjson.dumps(got).decode(),
        (await client.get(f"/annotation/v1/cases/{imported_id}/annotations", headers=h)).text,
        (await client.get(f"/annotation/v1/cases/{imported_id}/review-trail", headers=h)).text,
        repr(imported),
    ]
    assert corpus.kinds <= seen_kinds, corpus.kinds - seen_kinds
    sinks["graphql search"] = [
        orjson.dumps(found).decode(),
        orjson.dumps(
            await gql(client, admin_token, SEARCH, {"q": f"Contact file source:{source}"})
        ).decode(),
    ]
    pii_facet = next(f for f in found["search"]["facets"] if f["field"] == "pii")
    assert {b["value"] for b in pii_facet["buckets"]} >= corpus.kinds
    h = auth_header(admin_token)
    sinks["rest case"] = [(await client.get(f"/catalog/v1/cases/{i}", headers=h)).text for i in ids]
    sinks["rest list"] = [(await client.get("/catalog/v1/cases?first=200", headers=h)).text]
    sinks["rest search"] = [
        (
            await client.get(
                "/search/v1/cases", params={"q": f"contact source:{source}"}, headers=h
            )
        ).text
    ]

    # Exports: the REST route in both formats, and the CLI's local export (SYSTEM).
    h = auth_header(writer)
    q = f"source:{source}"
    ndjson = await client.get("/catalog/v1/cases:export", params={"q": q}, headers=h)
    csv = await client.get("/catalog/v1/cases:export", params={"q": q, "format": "csv"}, headers=h)
    assert ndjson.text.count("\n") == len(ids)
    local = await start_export(app.state.search, app.state.db, SYSTEM, q, "ndjson")
    sinks["exports"] = [ndjson.text, csv.text, b"".join([c async for c in local.chunks]).decode()]

    # Logs, the audit trail, the database and the index as stored.
    sinks["log lines"] = [
        f"{r.getMessage()} {r.exc_text or ''} {getattr(r, '__dict__', '')}" for r in caplog.records
    ]
    async with app.state.db.transaction() as s:
        rows = (await s.execute(text("SELECT action, target, details FROM audit_log"))).all()
    sinks["audit_log"] = [repr(r) for r in rows]
    if backend == "embedded":
        sinks["sqlite files"] = [_sqlite_bytes(settings)]
    else:
        sinks["postgres tables"] = [await _postgres_dump(app.state.db)]
        sinks["opensearch index"] = [await _opensearch_dump(settings)]

    literals = _literals(corpus)
    survivors = {
        sink: sorted(lit for lit in literals if any(lit in t.lower() for t in texts))
        for sink, texts in sinks.items()
    }
    survivors = {k: v for k, v in survivors.items() if v}
    print(
        f"\nPII proof [{backend}]: {len(corpus.literals)} literal values "
        f"({len(literals)} spellings, kinds {sorted(corpus.kinds)}) in {len(ids)} cases, "
        f"checked in {len(sinks)} sinks; survivors: {sum(map(len, survivors.values()))}"
    )
    assert not survivors, survivors
    # The check itself finds a literal where one is: the corpus as sent holds every one.
    sent = orjson.dumps([*corpus.cases, report]).decode().lower()
    assert [lit for lit in corpus.literals if lit.lower() not in sent] == []
