"""Exports that re-import: `failcat export cases` and GET /catalog/v1/cases:export stream the
wire format, and export -> ingest into a fresh instance carries the same facts."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import secrets

import orjson
import pyarrow.parquet as pq

from services.catalog.export import CSV_COLUMNS, row_to_case
from services.catalog.schemas import CaseIn
from services.cli.export import write_parquet
from services.cli.sources import CaseFile
from shared.migrate import upgrade_async
from shared.security import SYSTEM
from tests.catalog.builders import ingest, unique
from tests.cli.conftest import clean_env, failcat, settings_env
from tests.conftest import auth_header, make_settings
from tests.corpus import aiid_cases, avid_cases

# Facts the target assigns itself: compared apart, or not at all.
VOLATILE_META = {"id", "received_at", "updated_at"}


def _corpus(tag: str) -> list[dict]:
    cases = unique(aiid_cases(150))
    for i, c in enumerate(cases):
        c["tags"] = [*c["tags"], tag]
        if i % 3 == 0:
            c["links"] = [{"kind": "ticket", "url": f"https://tickets.example/{i}", "title": "t"}]
            c["writeup"] = {"hypothesis": "label noise", "results": f"case {i}"}
        if i % 5 == 0:
            c["sensitivity"] = "confidential"
            c["team"] = "payments-ml"
    return cases


def _by_external_id(ndjson: bytes) -> dict[str, dict]:
    return _keyed(orjson.loads(line) for line in ndjson.splitlines())


def _parquet_cases(path) -> dict[str, dict]:
    """A Parquet export read back as `failcat ingest` reads it (JSON columns parsed)."""
    source = CaseFile(path)
    assert source.kind == "parquet"
    return _keyed(item.value for batch in source.batches(100) for item in batch)


def _keyed(cases) -> dict[str, dict]:
    out = {}
    for case in cases:
        for key in VOLATILE_META:
            case["_meta"].pop(key)
        out[case["external_id"]] = case
    return out


async def _fresh_instance(backend: str, path) -> dict[str, str]:
    settings = await make_settings(backend, path)
    await upgrade_async(settings.catalog_url)
    return clean_env(**settings_env(settings))


async def test_export_then_import_into_a_fresh_instance_round_trips(
    server, backend, elsewhere, tmp_path
):
    created = await failcat(
        "clients",
        "create",
        "--name",
        "exporter",
        "--scopes",
        "cases:ingest exports:create",
        "--clearance",
        "restricted",
        cwd=elsewhere,
        env=server.operator_env,
    )
    creds = json.loads(created.out)
    remote = clean_env(
        FAILCAT_URL=server.url,
        FAILCAT_CLIENT_ID=creds["client_id"],
        FAILCAT_CLIENT_SECRET=creds["client_secret"],
    )
    tag = f"rt-{secrets.token_hex(3)}"
    cases = _corpus(tag)
    (elsewhere / "in.ndjson").write_bytes(b"\n".join(orjson.dumps(c) for c in cases))
    result = await failcat("ingest", "in.ndjson", cwd=elsewhere, env=remote)
    assert result.code == 0, result.err

    for _ in range(100):  # the index follows the catalog through the outbox
        result = await failcat("export", "cases", "-q", f"tags:{tag}", cwd=elsewhere, env=remote)
        assert result.code == 0, result.err
        if result.out.count("\n") == len(cases):
            break
        await asyncio.sleep(0.2)
    exported = result.out.encode()
    assert f"exported {len(cases)}/{len(cases)} cases" in result.err
    first = orjson.loads(exported.splitlines()[0])
    assert set(first["_meta"]) >= {"id", "revision", "status", "content_hash"}
    assert first["_meta"]["status"] == "new" and first["_meta"]["revision"] == 1
    original = _by_external_id(exported)
    sent = {c["external_id"]: c for c in cases}
    for ext, case in original.items():  # what was sent is what is exported
        for key, value in sent[ext].items():
            assert case[key] == value, (ext, key)

    out = await failcat(
        "export",
        "cases",
        "-q",
        f"tags:{tag}",
        "--format",
        "csv",
        "--out",
        "a.csv",
        cwd=elsewhere,
        env=remote,
    )
    assert out.code == 0 and "wrote a.csv" in out.err
    assert not (elsewhere / "a.csv.partial").exists()
    (elsewhere / "a.ndjson").write_bytes(exported)
    # Parquet in client mode: the route's NDJSON, converted here.
    args = ("export", "cases", "-q", f"tags:{tag}", "--format", "parquet")
    out = await failcat(*args, "--out", "a.parquet", cwd=elsewhere, env=remote)
    assert out.code == 0 and "wrote a.parquet" in out.err, out.err
    assert not (elsewhere / "a.parquet.partial").exists()
    table = pq.read_table(elsewhere / "a.parquet")
    assert table.num_rows == len(cases)
    assert str(table.schema.field("input").type) == "string"  # JSON text, one column type
    assert str(table.schema.field("tags").type) == "list<element: string>"
    assert _parquet_cases(elsewhere / "a.parquet") == original

    # Into three fresh instances (operator mode): from NDJSON, from CSV, from Parquet.
    for name, source in (("b", "a.ndjson"), ("c", "a.csv"), ("d", "a.parquet")):
        env = await _fresh_instance(backend, tmp_path / name)
        result = await failcat("ingest", source, cwd=elsewhere, env=env)
        assert result.code == 0, result.err
        assert json.loads(result.out)["created"] == len(cases)
        assert (await failcat("reindex", cwd=elsewhere, env=env)).code == 0
        result = await failcat(
            "export", "cases", "-q", f"tags:{tag}", "-o", f"{name}.ndjson", cwd=elsewhere, env=env
        )
        assert result.code == 0, result.err
        again = _by_external_id((elsewhere / f"{name}.ndjson").read_bytes())
        # Same captured facts (content hash), same curated fields, same group: all but the
        # ids and times the new instance assigned.
        assert again == original, name
    # Parquet in local mode (the last instance, straight from its database).
    out = await failcat(*args, "--out", "d.parquet", cwd=elsewhere, env=env)
    assert out.code == 0, out.err
    assert _parquet_cases(elsewhere / "d.parquet") == original


async def test_parquet_is_written_a_row_group_at_a_time_from_any_split(tmp_path):
    cases = unique(aiid_cases(150))
    cases[0]["input"] = "plain text input"  # a JSON string, not an object: still one column
    cases[1]["confidence"] = None
    stream = b"".join(
        orjson.dumps({**c, "_meta": {"id": str(i)}}) + b"\n" for i, c in enumerate(cases)
    )

    async def chunks():
        for start in range(0, len(stream), 997):  # splits fall inside lines
            yield stream[start : start + 997]

    path = tmp_path / "x.parquet"
    await write_parquet(chunks(), path, rows_per_group=40)
    assert pq.ParquetFile(path).num_row_groups == 4  # 40 + 40 + 40 + 30, never all at once
    back = [item.value for batch in CaseFile(path).batches(64) for item in batch]
    assert len(back) == len(cases)
    for i, (got, sent) in enumerate(zip(back, cases, strict=True)):
        assert got["_meta"] == {"id": str(i)}
        assert {k: got[k] for k in sent} == sent
    assert back[0]["input"] == "plain text input" and back[1]["confidence"] is None


async def test_parquet_needs_out_and_pyarrow(elsewhere, tmp_path):
    # A server nobody listens on: both refusals come before any connection.
    env = clean_env(FAILCAT_URL="http://127.0.0.1:9", FAILCAT_DATA_DIR=str(tmp_path / "data"))
    result = await failcat("export", "cases", "--format", "parquet", cwd=elsewhere, env=env)
    assert result.code == 2
    assert result.err.strip().splitlines() == [
        "failcat: --format parquet needs --out FILE (a Parquet file is not a stream)"
    ]
    # Without the extra: a pyarrow that cannot be imported shadows the installed one.
    (tmp_path / "shadow" / "pyarrow").mkdir(parents=True)
    (tmp_path / "shadow" / "pyarrow" / "__init__.py").write_text("raise ImportError('no')\n")
    env["PYTHONPATH"] = str(tmp_path / "shadow")
    for argv in (
        ("export", "cases", "--format", "parquet", "--out", "x.parquet"),
        ("ingest", "x.parquet"),
    ):
        (elsewhere / "x.parquet").write_bytes(b"PAR1")
        result = await failcat(*argv, cwd=elsewhere, env=env)
        assert result.code == 2, result
        assert result.err.strip().splitlines() == [
            "failcat: Parquet needs pyarrow: pip install 'failcat[parquet]'"
        ], argv


async def test_export_route_scope_visibility_paging_and_errors(client, app, token_for):
    cases = unique(avid_cases(1100))
    for i, c in enumerate(cases):
        c["team"] = "exp-a" if i % 2 else "exp-b"
    async with app.state.db.transaction() as s:
        await ingest(s, cases)
    query = f'data_source:"{cases[0]["data_source"]}"'
    search = app.state.search
    for _ in range(100):  # the in-process indexer may hold a batch drain_outbox skipped
        await search.drain_outbox()
        await search.backend.refresh()  # OpenSearch: make what was indexed visible now
        if (await search.search(SYSTEM, query, first=1)).total == len(cases):
            break
        await asyncio.sleep(0.1)

    token = await token_for("exports:create", team="exp-a")
    resp = await client.get(
        "/catalog/v1/cases:export", params={"q": query}, headers=auth_header(token)
    )
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "application/x-ndjson"
    assert resp.headers["x-total-count"] == "550"
    lines = [orjson.loads(x) for x in resp.content.splitlines()]
    assert len(lines) == 550 and {c["team"] for c in lines} == {"exp-a"}  # two pages of 500
    assert len({c["_meta"]["id"] for c in lines}) == 550
    times = [c["occurred_at"] for c in lines]
    assert times == sorted(times)
    for c in lines[:50]:  # what the bulk route takes, as it is
        CaseIn.model_validate(c)

    resp = await client.get(
        "/catalog/v1/cases:export", params={"q": query, "format": "csv"}, headers=auth_header(token)
    )
    assert resp.headers["content-type"] == "text/csv; charset=utf-8"
    rows = list(csv.DictReader(io.StringIO(resp.text)))
    assert len(rows) == 550 and tuple(rows[0]) == CSV_COLUMNS
    assert {r["_meta.id"] for r in rows} == {c["_meta"]["id"] for c in lines}
    by_id = {c["_meta"]["id"]: c for c in lines}
    for r in rows[:50]:
        case = row_to_case(r)
        CaseIn.model_validate(case)
        expected = {k: v for k, v in by_id[r["_meta.id"]].items() if v not in (None, [])}
        expected.pop("_meta")
        assert {k: v for k, v in case.items() if v != []} == expected

    reader = await token_for("cases:read")
    denied = await client.get("/catalog/v1/cases:export", headers=auth_header(reader))
    assert denied.status_code == 403
    bad = await client.get(
        "/catalog/v1/cases:export", params={"q": "severity:S9"}, headers=auth_header(token)
    )
    assert bad.status_code == 400 and bad.json()["errors"][0]["path"] == "query"
    fmt = await client.get(
        "/catalog/v1/cases:export", params={"format": "xml"}, headers=auth_header(token)
    )
    assert fmt.status_code == 400 and fmt.json()["errors"][0]["path"] == "format"


async def test_an_export_reingests_as_duplicates_of_what_it_exported(client, app, token_for):
    """What the server filled in is not taken for what the producer sent: an occurred_at it
    defaulted (equal to _meta.received_at) and a fingerprint it derived leave the content
    hash as it was, so an export posted back is answered duplicate, item for item, with or
    without an idempotency key and with or without a captured payload."""
    cases = unique(aiid_cases(8))
    for i, c in enumerate(cases):
        c.pop("occurred_at", None)
        if i % 2:
            c.pop("external_id")
        if i % 4 < 2:  # a report without a captured payload: its reported fields identify it
            for key in ("input", "prediction", "expected", "signals"):
                c.pop(key, None)
    writer = await token_for("cases:ingest exports:create cases:read", clearance="restricted")
    resp = await client.post("/catalog/v1/cases:bulk", json=cases, headers=auth_header(writer))
    first = resp.json()["results"]
    assert [r["status"] for r in first] == ["created"] * len(cases)
    query = f'data_source:"{cases[0]["data_source"]}"'
    for _ in range(100):
        exported = await client.get(
            "/catalog/v1/cases:export",
            params={"q": query},
            headers=auth_header(writer),
        )
        lines = [orjson.loads(x) for x in exported.content.splitlines()]
        if len(lines) == len(cases):
            break
        await asyncio.sleep(0.1)
    assert all(line["occurred_at"] == line["_meta"]["received_at"] for line in lines)
    again = await client.post("/catalog/v1/cases:bulk", json=lines, headers=auth_header(writer))
    answers = again.json()["results"]
    assert [r["status"] for r in answers] == ["duplicate"] * len(cases), answers
    assert {r["id"] for r in answers} == {r["id"] for r in first}


def test_client_mode_progress_counts_csv_records_not_lines():
    """Client-mode progress counted newlines, so a CSV export of incidents whose write-ups
    hold newlines said 'exported 917/913 cases'. Only a newline outside quotes ends a
    record, wherever the stream is split."""
    from services.catalog.export import CSV_COLUMNS, csv_line, encode
    from services.cli.export import RecordCounter

    cases = [{**c, "_meta": {"id": str(i)}} for i, c in enumerate(unique(aiid_cases(700))[480:])]
    assert sum(c["summary"].count("\n") for c in cases) >= 3
    cases[0]["title"] = 'A "quoted" title,\nover two lines'
    body = csv_line(list(CSV_COLUMNS)) + b"".join(encode(c, "csv") for c in cases)
    counter = RecordCounter(csv=True)
    seen = [counter.feed(body[i : i + 997]) for i in range(0, len(body), 997)]
    assert seen[-1] == len(cases) and seen == sorted(seen)
    lines = b"".join(encode(c, "ndjson") for c in cases)
    ndjson = RecordCounter(csv=False)
    assert [ndjson.feed(lines[i : i + 997]) for i in range(0, len(lines), 997)][-1] == len(cases)
