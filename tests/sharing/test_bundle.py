"""Item 1, bundles: export 1,000 real cases with the partner profile, import them into a second
instance that trusts the first's JWKS; no raw payload, actor or team of the source reaches the
second instance (every text column of every table of its database, every document of its
search index); a flipped byte, a missing signature or another key is refused with nothing
stored."""

from __future__ import annotations

import contextlib
import io
import json
import re
import secrets
import sqlite3
import tarfile
from collections import Counter
from typing import Any

import orjson
import pytest
from joserfc.jwk import ECKey
from sqlalchemy import text

from services.annotation import service as annotations
from services.sharing.anonymise import k_anonymity, quasi_identifiers
from services.sharing.bundle import FILES, BundleRefused, read_bundle, sign, trusted_keys
from shared.db import Database
from shared.migrate import upgrade_async
from shared.security import SYSTEM
from tests.catalog.builders import unique
from tests.cli_run import indexed, run_cli
from tests.conftest import auth_header, make_settings
from tests.corpus import aiid_cases, avid_cases
from tests.db_text import text_by_table
from tests.gateway.helpers import INGEST, case_input, data, gql

N = 1_000
RAW_PAYLOAD_KEYS = ("input", "prediction", "expected")
TOKEN = re.compile(r"[\w.@:+-]+")  # a value as a grep would match it, whole
AIID = 913  # every incident of the AI Incident Database corpus; AVID reports make up the rest


@pytest.fixture(scope="module")
async def exported(backend, settings, app, client, token_for, tmp_path_factory):
    """N real incidents and reports of one team, captured by one actor with raw payloads, one
    adjudicated decision and a lesson; exported with the partner profile."""
    salt = secrets.token_hex(3)
    team, actor = f"bundle-team-{salt}", f"bundle-actor-{salt}"
    cases = unique(aiid_cases(AIID) + avid_cases(N - AIID))
    assert len(cases) == N
    for i, c in enumerate(cases):
        c.update(team=team, fingerprint=f"bundle-{salt}-{i % 40}")
        c["data_source"] = f"bundle-source-{salt}"
        c.setdefault("provenance", {})["captured_by"] = actor
        c["input"] = {"text": f"raw-payload-{salt}-{i}"}
        c["prediction"] = {"label": f"raw-prediction-{salt}-{i}"}
        c["expected"] = {"label": f"raw-expected-{salt}-{i}"}
        c["environment"] = {"region": "eu-west-1", "app_version": "7.4.1"}
        if i < 30:
            c["sensitivity"] = "public"
    ingest = await token_for("cases:ingest cases:read", clearance="restricted")
    ids = []
    for start in range(0, N, 100):
        body = await gql(
            client, ingest, INGEST, {"cases": [case_input(c) for c in cases[start : start + 100]]}
        )
        ids += [r["id"] for r in data(body)["ingestCases"]]
    async with app.state.db.transaction() as s:
        failcat_tax = await annotations.get_taxonomy(s, "failcat")
        await annotations.record_adjudicated(
            s,
            ids[0],
            failcat_tax,
            {"failure_mode": "safety.harmful_content", "severity": "S1"},
            reviewer=f"bundle-reviewer-{salt}",
            actor=SYSTEM,
        )
        groups = (
            (
                await s.execute(
                    text("select distinct group_id from failure_case where team = :t"), {"t": team}
                )
            )
            .scalars()
            .all()
        )
    author = await token_for("cases:read cases:write", clearance="restricted")
    lesson = {
        "title": f"Lesson {salt}",
        "whatHappened": "w",
        "whyItMatters": "w",
        "mitigation": "m",
        "cost": "c",
        "evidenceGroupIds": sorted(groups)[:2],
    }
    data(
        await gql(
            client,
            author,
            "mutation($l: LessonInput!) { createLesson(lesson: $l) { id } }",
            {"l": lesson},
        )
    )
    data_source = cases[0]["data_source"]
    assert await indexed(app.state.search, f"data_source:{data_source}", N) >= N
    folder = tmp_path_factory.mktemp(f"bundle-{backend}")
    out = folder / "partner.tar.gz"
    code, stdout, err = await run_cli(
        settings,
        "export",
        "bundle",
        "--query",
        f"data_source:{data_source}",
        "--profile",
        "partner",
        "--out",
        str(out),
    )
    assert code == 0, err
    trust = folder / "jwks.json"
    trust.write_bytes(orjson.dumps(app.state.auth.jwks()))
    second = await make_settings(backend, folder / "second")
    await upgrade_async(second.catalog_url)
    yield {
        "salt": salt,
        "team": team,
        "actor": actor,
        "ids": ids,
        "cases": cases,
        "data_source": data_source,
        "out": out,
        "summary": json.loads(stdout),
        "trust": trust,
        "second": second,
        "folder": folder,
    }


async def _database_text(second) -> tuple[str, int, int]:
    """Every text column of every table of the second instance's database (the tables as the
    database lists them, not as the models do), as one text: what a grep of it would find;
    with the tables and values read."""
    chunks: list[str] = []
    tables = 0
    if second.catalog_url.startswith("sqlite"):
        chunks, tables = _sqlite_text(second.catalog_url.split("///", 1)[1])
        return "\n".join(chunks), tables, len(chunks)
    db = Database(second.catalog_url)
    try:
        by_table = await text_by_table(db)
    finally:
        await db.dispose()
    chunks = [v for values in by_table.values() for v in values]
    tables = len(by_table)
    return "\n".join(chunks), tables, len(chunks)


def _sqlite_text(path: str) -> tuple[list[str], int]:
    """Every text value of every table of a SQLite file (FTS5 tables and their shadow tables
    included)."""
    chunks: list[str] = []
    conn = sqlite3.connect(path)
    try:
        names = [r[0] for r in conn.execute("select name from sqlite_master where type = 'table'")]
        for name in names:
            for row in conn.execute(f'select * from "{name}"'):
                for value in row:
                    if isinstance(value, bytes):
                        value = value.decode("utf-8", "replace")
                    if isinstance(value, str):
                        chunks.append(value)
    finally:
        conn.close()
    return chunks, len(names)


async def _index_text(second) -> tuple[str, int]:
    """Every document of the second instance's search index, after it indexed what the
    import stored: OpenSearch's `_source` of each (a scan of every index behind the alias),
    or every table of the embedded index's SQLite file."""
    from services.search.service import SearchService

    db = Database(second.catalog_url)
    search = await SearchService.start(second, db)
    try:
        await search.drain_outbox()
        await search.backend.refresh()
    finally:
        await search.close()
        await db.dispose()
    if second.search_url == "embedded":
        path = str(second.data_dir / "search.db")
        chunks, _ = _sqlite_text(path)
        with contextlib.closing(sqlite3.connect(path)) as conn:
            [(documents,)] = conn.execute("select count(*) from doc").fetchall()
        return "\n".join(chunks), documents
    from opensearchpy import AsyncOpenSearch
    from opensearchpy.helpers import async_scan

    client = AsyncOpenSearch(hosts=[second.search_url])
    try:
        docs = [
            orjson.dumps(hit["_source"]).decode()
            async for hit in async_scan(
                client, index=f"{second.search_index}*", query={"query": {"match_all": {}}}
            )
        ]
    finally:
        await client.close()
    return "\n".join(docs), len(docs)


async def _stored(second) -> tuple[int, ...]:
    """The rows an import writes: cases, adjudicated reviews, lessons, imported bundles."""
    db = Database(second.catalog_url)
    try:
        async with db.transaction() as s:
            counts = []
            for table in ("failure_case", "annotation_review", "sharing_lesson", "sharing_bundle"):
                counts.append((await s.execute(text(f"select count(*) from {table}"))).scalar_one())
            return tuple(counts)
    finally:
        await db.dispose()


async def _count_cases(second) -> int:
    db = Database(second.catalog_url)
    try:
        async with db.transaction() as s:
            return (await s.execute(text("select count(*) from failure_case"))).scalar_one()
    finally:
        await db.dispose()


async def test_partner_bundle_round_trip_leaks_no_source_identity(exported):
    summary = exported["summary"]
    assert summary["counts"]["cases"] == N
    assert summary["counts"]["annotations"] == 1
    assert summary["counts"]["lessons"] == 1
    assert summary["k_anonymity"]["k"] >= 1 and summary["k_anonymity"]["classes"] >= 1

    # The manifest names every file's sha256 and is signed with the instance's kid.
    verified = read_bundle(exported["out"], trusted_keys(str(exported["trust"])))
    assert set(verified.manifest["files"]) == set(FILES)
    assert verified.manifest["profile"] == "partner"
    records = verified.records("cases.jsonl")
    assert len(records) == N
    # The k-anonymity report is that of the quasi-identifiers of the cases as exported.
    exported_classes = Counter(quasi_identifiers(r) for r in records)
    assert verified.manifest["k_anonymity"] == k_anonymity(exported_classes)
    assert summary["k_anonymity"]["classes"] == len(exported_classes)
    assert all(r["input"] is None and r["links"] == [] for r in records)
    assert {r["occurred_at"][10:] for r in records} == {"T00:00:00Z"}
    assert {tuple(sorted(r["environment"].items())) for r in records} == {
        (("app_version", "7.x"), ("region", "eu"))
    }

    second = exported["second"]
    code, out, err = await run_cli(
        second, "import", "bundle", str(exported["out"]), "--trust", str(exported["trust"])
    )
    assert code == 0, err
    first = json.loads(out)
    assert first["cases"] == {"created": N}
    assert first["adjudicated"] == 1 and first["lessons"] == 1
    code, out, _ = await run_cli(
        second, "import", "bundle", str(exported["out"]), "--trust", str(exported["trust"])
    )
    assert json.loads(out)["cases"] == {"duplicate": N}  # idempotent
    assert await _count_cases(second) == N

    salt = exported["salt"]
    values = {exported["team"], exported["actor"], f"bundle-reviewer-{salt}", "eu-west-1", "7.4.1"}
    for case in exported["cases"]:
        values |= {case["external_id"], case["provenance"]["source"]}
        values |= {case[k]["text" if k == "input" else "label"] for k in RAW_PAYLOAD_KEYS}
    assert len(values) == 5 + 1 + 4 * N  # one source for every case (unique()'s salt)
    # What no value may even start in: the prefixes every generated value has.
    prefixes = [f"{kind}-{salt}" for kind in ("raw-payload", "raw-prediction", "raw-expected")]
    prefixes += [exported["team"], exported["actor"], f"bundle-reviewer-{salt}"]
    prefixes.append(exported["cases"][0]["provenance"]["source"])  # src-<salt of unique()>
    database, tables, cells = await _database_text(second)
    index, documents = await _index_text(second)
    assert documents >= N  # every imported case is in the index (OpenSearch: one doc each)
    for where, blob in (("database", database), ("index", index)):
        tokens = set(TOKEN.findall(blob))
        found = sorted(values & tokens) + [p for p in prefixes if p in blob]
        print(
            f"second instance {where}: {len(blob):,} characters"
            + (f" in {cells:,} values of {tables} tables" if where == "database" else "")
            + (f" in {documents:,} documents" if where == "index" else "")
            + f"; {len(values):,} source values and {len(prefixes)} prefixes looked for,"
            f" {len(found)} found"
        )
        assert found == [], (where, found[:5])
        # The text itself travels (through the redaction hook): the grep would see it.
        assert exported["cases"][0]["title"] in blob, where


async def test_a_tampered_unsigned_or_foreign_bundle_is_refused_with_nothing_stored(exported):
    trust = trusted_keys(str(exported["trust"]))
    with tarfile.open(exported["out"], "r:gz") as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar}

    def pack(files: dict[str, bytes]) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            for name, content in files.items():
                info = tarfile.TarInfo(name)
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
        return buf.getvalue()

    path = exported["folder"] / "bad.tar.gz"
    for name in members:
        flipped = dict(members)
        content = bytearray(flipped[name])
        content[len(content) // 2] ^= 0x01
        flipped[name] = bytes(content)
        path.write_bytes(pack(flipped))
        with pytest.raises(BundleRefused):
            read_bundle(path, trust)
    unsigned = {k: v for k, v in members.items() if k != "manifest.jws"}
    path.write_bytes(pack(unsigned))
    with pytest.raises(BundleRefused, match="unsigned"):
        read_bundle(path, trust)
    manifest = json.loads(members["manifest.json"])
    for kid in (manifest["kid"], "another-kid"):  # another key, under the same kid or its own
        other = ECKey.generate_key("P-256")
        resigned = {**members, "manifest.jws": sign(members["manifest.json"], kid, other).encode()}
        path.write_bytes(pack(resigned))
        with pytest.raises(BundleRefused):
            read_bundle(path, trust)

    # Through the CLI: one line, exit 2, and the second instance stores nothing, for a flipped
    # byte in each member and for the manifest re-signed with another key.
    second = exported["second"]
    before = await _stored(second)
    variants = []
    for name in members:
        flipped = dict(members)
        content = bytearray(flipped[name])
        content[len(content) // 3] ^= 0x01
        flipped[name] = bytes(content)
        variants.append(flipped)
    other = ECKey.generate_key("P-256")
    variants.append(
        {**members, "manifest.jws": sign(members["manifest.json"], manifest["kid"], other).encode()}
    )
    for variant in variants:
        path.write_bytes(pack(variant))
        code, _, err = await run_cli(
            second, "import", "bundle", str(path), "--trust", str(exported["trust"])
        )
        assert code == 2 and err.startswith("failcat: bundle: "), err
        assert len(err.strip().splitlines()) == 1, err
    assert await _stored(second) == before
    flipped = dict(members)
    flipped["cases.jsonl"] = members["cases.jsonl"].replace(b'"severity":"S', b'"severity":"X', 1)
    path.write_bytes(pack(flipped))
    code, _, err = await run_cli(
        second, "import", "bundle", str(path), "--trust", str(exported["trust"])
    )
    assert code == 2 and "cases.jsonl: sha256 differs from the manifest" in err
    assert await _stored(second) == before


async def test_bundle_download_is_for_readers_who_see_every_case(exported, client, token_for):
    bundle_id = exported["summary"]["bundle_id"]
    url = f"/sharing/v1/bundles/{bundle_id}"
    everyone = await token_for("exports:create", clearance="restricted")
    resp = await client.get(url, headers=auth_header(everyone))
    assert resp.status_code == 200 and resp.content == exported["out"].read_bytes()
    verified = read_bundle(exported["out"], trusted_keys(str(exported["trust"])))
    assert resp.headers["x-bundle-manifest-sha256"] == verified.manifest_sha256
    own_team = await token_for("exports:create", team=exported["team"], clearance="restricted")
    assert (await client.get(url, headers=auth_header(own_team))).status_code == 200
    other = await token_for("exports:create", team="someone-else", clearance="restricted")
    assert (await client.get(url, headers=auth_header(other))).status_code == 404
    low = await token_for("exports:create", clearance="public")
    assert (await client.get(url, headers=auth_header(low))).status_code == 404
    reader = await token_for("cases:read", clearance="restricted")
    assert (await client.get(url, headers=auth_header(reader))).status_code == 403
    missing = "/sharing/v1/bundles/00000000-0000-0000-0000-000000000000"
    assert (await client.get(missing, headers=auth_header(everyone))).status_code == 404


async def _export_public(exported, settings, name: str) -> tuple[Any, dict]:
    """`failcat export bundle --profile public` of the fixture's cases: the file and what the
    command printed."""
    out = exported["folder"] / name
    code, stdout, err = await run_cli(
        settings,
        "export",
        "bundle",
        "--query",
        f"data_source:{exported['data_source']}",
        "--profile",
        "public",
        "--out",
        str(out),
    )
    assert code == 0, err
    return out, json.loads(stdout)


async def test_public_profile_keeps_only_public_cases(exported, settings):
    out, printed = await _export_public(exported, settings, "public.tar.gz")
    assert printed["counts"]["cases"] == 30
    records = read_bundle(out, trusted_keys(str(exported["trust"]))).records("cases.jsonl")
    assert {r["sensitivity"] for r in records} == {"public"}


def test_partner_free_text_is_masked_by_the_governance_detectors():
    from services.sharing.anonymise import redact_free_text

    text = "Reported by jane.doe@example.com from 192.168.10.4; card 4111 1111 1111 1111."
    masked = redact_free_text(text)
    assert "jane.doe@example.com" not in masked and "[EMAIL]" in masked
    assert "4111 1111 1111 1111" not in masked and "[CARD ****1111]" in masked
    assert "192.168.10.4" not in masked
    assert redact_free_text("A chatbot misread the refund policy.") == (
        "A chatbot misread the refund policy."
    )
    assert redact_free_text(None) is None


async def test_export_rows_render_as_the_catalog_renders_its_cases(exported, app):
    """The export reads plain rows and renders them in one pass (services/sharing/pages.py):
    byte for byte what the catalog's own rendering of its ORM cases gives, for every case of
    the bundle, for a cross-team reader and for one of another team (who sees none)."""
    from services.catalog import service as catalog
    from services.catalog.export import wire_case
    from services.catalog.views import case_json
    from services.sharing import pages
    from shared.security import Principal, Sensitivity

    ids = exported["ids"]
    outsider = Principal("o", "o", team="someone-else", clearance=Sensitivity.RESTRICTED)
    for reader in (SYSTEM, outsider):
        rows, refs = await pages.case_page(app.state.db, ids, reader)
        async with app.state.db.transaction() as s:
            cases = await catalog.get_cases(s, ids, reader)
            orm_refs = await catalog.page_relations(s, cases)
        expected = {
            c.id: orjson.dumps(wire_case(case_json(c, orm_refs, viewer=reader))) for c in cases
        }
        got = {r["id"]: orjson.dumps(pages.wire_row(r, refs, reader)) for r in rows}
        assert got == expected
        assert len(got) == (N if reader is SYSTEM else 0)


async def test_every_case_a_bundle_holds_is_audited_as_read(exported, settings, app):
    """Issue 12: bundle exports are reads of a case's details; each page's entry names its
    cases and commits before they are written (`public`: only what the bundle holds)."""
    _, printed = await _export_public(exported, settings, "audited.tar.gz")
    bundle_id = printed["bundle_id"]
    async with app.state.db.transaction() as s:
        rows = (
            await s.execute(
                text("select details from audit_log where action = :a and target = :t"),
                {"a": "sharing.export_bundle_read", "t": f"bundle:{bundle_id}"},
            )
        ).scalars()
        audited = [i for d in rows for i in (orjson.loads(d) if isinstance(d, str) else d)["ids"]]
        public = set(
            (
                await s.execute(
                    text(
                        "select c.id from failure_case c join data_source d"
                        " on d.id = c.data_source_id where d.name = :n"
                        " and c.sensitivity = 'public'"
                    ),
                    {"n": exported["data_source"]},
                )
            ).scalars()
        )
    assert len(audited) == len(set(audited)) == 30
    assert set(audited) == public


async def test_an_export_of_no_query_reads_the_cases_the_search_finds(exported, app, monkeypatch):
    """With no query the export reads the catalog by keyset (pages.live_pages) instead of the
    search's ids: the same cases, in the same order (occurred_at, then id), rendered the same
    and with the same adjudicated decisions, for a cross-team reader, for one team's reader
    and for the public profile. Pages of 7 cases: many keyset steps, some inside a run of
    equal times (the incidents' dates repeat)."""
    from dataclasses import replace

    from services.sharing import pages
    from shared.security import Principal, Sensitivity

    monkeypatch.setattr(pages, "BATCH", 7)
    search, db = app.state.search, app.state.db
    await search.drain_outbox()
    await search.backend.refresh()
    member = Principal("m", "m", team=exported["team"], clearance=Sensitivity.INTERNAL)
    ids = set(exported["ids"])
    for reader, public in ((SYSTEM, False), (member, False), (SYSTEM, True)):
        query = "sensitivity:public" if public else ""
        request = replace(
            search.build_request(reader, query, first=500, sort="occurred_at"), highlight=False
        )

        def rendered(page: Any, reader: Any = reader) -> list[tuple[str, bytes, int]]:
            return [
                (
                    r["id"],
                    orjson.dumps(pages.wire_row(r, page.refs, reader)),
                    len(page.decisions.get(r["id"], [])),
                )
                for r in page.rows
            ]

        via_search = [
            item
            async for page in pages.export_pages(db, reader, search=search, request=request)
            for item in rendered(page)
        ]
        live = [
            item
            async for page in pages.export_pages(db, reader, public_only=public)
            for item in rendered(page)
        ]
        assert live == via_search
        assert len(live) > 7 * 4
        mine = [item for item in live if item[0] in ids]
        assert len(mine) == (30 if public else N) if reader is SYSTEM else 0 < len(mine) <= N
        assert sum(n for _, _, n in mine) == 1  # the fixture's adjudication (a public case)


async def test_keyset_pages_walk_their_index_in_order(exported, app, monkeypatch):
    """Each keyset page of an export of no query reads its index in order and stops at the
    page's size, with no sort of the cases after the keyset (which made every page scan the
    rest of the table on a Postgres table autovacuum had not analyzed yet): every case by
    (occurred_at, id), the public profile by the partial index of public cases (0023). The
    plans of the statements the export really ran, each explained in a transaction set up as
    the export's pages are."""
    from sqlalchemy import event

    from services.sharing import pages

    monkeypatch.setattr(pages, "BATCH", 7)
    db = app.state.db
    ran: list[tuple[str, Any]] = []

    def seen(conn, cursor, statement, params, context, many):
        if statement.startswith("SELECT failure_case.id") and "LIMIT" in statement:
            ran.append((statement, params))

    event.listen(db.engine.sync_engine, "before_cursor_execute", seen)
    try:
        for public, index in (
            (False, "ix_failure_case_occurred_id"),
            (True, "ix_failure_case_public_occurred"),
        ):
            ran.clear()
            async for _ in pages.live_pages(db, SYSTEM, public, raw=False):
                if len(ran) > 2:
                    break
            statement, params = ran[-1]  # a page after the first: the keyset bound
            async with db.transaction() as s:
                await pages._walk_index(s)
                conn = await (await s.connection()).get_raw_connection()
                driver = conn.driver_connection
                if db.engine.dialect.name == "postgresql":
                    plan = "\n".join(
                        r[0] for r in await driver.fetch("EXPLAIN " + statement, *params)
                    )
                    assert "Sort" not in plan, plan
                else:
                    cursor = await driver.execute("EXPLAIN QUERY PLAN " + statement, params)
                    plan = "\n".join(str(r[-1]) for r in await cursor.fetchall())
                    assert "TEMP B-TREE" not in plan, plan
                assert index in plan, plan
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", seen)


async def test_a_bundle_of_no_query_holds_every_case_its_reader_sees(exported, settings, app):
    """`failcat export bundle --profile public` without a query: every live public case of
    the catalog, and their count on the command's answer."""
    out = exported["folder"] / "everything-public.tar.gz"
    code, stdout, err = await run_cli(
        settings, "export", "bundle", "--profile", "public", "--out", str(out)
    )
    assert code == 0, err
    async with app.state.db.transaction() as s:
        public = (
            await s.execute(
                text(
                    "select count(*) from failure_case"
                    " where sensitivity = 'public' and purged_at is null"
                )
            )
        ).scalar_one()
    records = read_bundle(out, trusted_keys(str(exported["trust"]))).records("cases.jsonl")
    assert json.loads(stdout)["counts"]["cases"] == len(records) == public >= 30
    assert {r["sensitivity"] for r in records} == {"public"}


async def test_adjudications_are_the_adjudicated_entries_of_the_review_trails(exported, app):
    """What the export reads per page (annotation.adjudications) is what it read before: the
    `adjudicated` entries of the cases' review trails, same values, same order."""
    ids = exported["ids"]
    async with app.state.db.transaction() as s:
        trails = await annotations.review_trails(s, ids, SYSTEM)
        decided = await annotations.adjudications(s, ids, SYSTEM)
    expected = {
        case_id: [e for e in entries if e.action == "adjudicated"]
        for case_id, entries in trails.items()
    }
    assert decided == {k: v for k, v in expected.items() if v}
    assert list(decided) == [ids[0]] and decided[ids[0]][0].values["severity"] == "S1"
