"""POST /catalog/v1/cases:bulk: JSON array or NDJSON, per-item results, explicit limits."""

from __future__ import annotations

import orjson
import pytest

from services.catalog import limits as L
from tests.catalog.builders import unique
from tests.conftest import auth_header
from tests.corpus import aiid_cases, avid_cases

BULK = "/catalog/v1/cases:bulk"


@pytest.fixture(scope="module")
async def ingest_headers(token_for) -> dict[str, str]:
    return auth_header(await token_for("cases:ingest cases:read"))


async def test_json_array_mixing_valid_invalid_duplicate_and_over_limit(client, ingest_headers):
    cases = unique(aiid_cases(3) + avid_cases(2))
    over_limit = dict(cases[0], external_id="big", input={"x": "y" * (L.MAX_BLOB_BYTES + 1)})
    bad_conf = dict(cases[1], external_id="conf", confidence=1.7)
    body = [*cases, cases[2], over_limit, bad_conf, {"model": {"name": "m"}}]
    resp = await client.post(BULK, json=body, headers=ingest_headers)
    assert resp.status_code == 200
    out = resp.json()
    assert [r["status"] for r in out["results"]] == ["created"] * 5 + [
        "duplicate",
        "invalid",
        "invalid",
        "invalid",
    ]
    assert out["counts"] == {
        "created": 5,
        "duplicate": 1,
        "conflict": 0,
        "invalid": 3,
        "sampled_out": 0,
    }
    assert out["results"][5]["id"] == out["results"][2]["id"]
    assert out["results"][6]["errors"][0]["path"] == "input"
    assert out["results"][7]["errors"] == [
        {"path": "confidence", "message": "Input should be less than or equal to 1"}
    ]
    assert {e["path"] for e in out["results"][8]["errors"]} == {"model.version", "data_source"}

    # A retry of the whole request stores nothing twice.
    again = (await client.post(BULK, json=body, headers=ingest_headers)).json()
    assert again["counts"] == {
        "created": 0,
        "duplicate": 6,
        "conflict": 0,
        "invalid": 3,
        "sampled_out": 0,
    }
    ids = [r["id"] for r in out["results"][:5]]
    listed = [
        (await client.get(f"/catalog/v1/cases/{i}", headers=ingest_headers)).status_code
        for i in ids
    ]
    assert listed == [200] * 5


async def test_times_at_the_driver_infinities_are_invalid_naming_the_field(client, ingest_headers):
    """The first and last instants a datetime holds are Postgres's -infinity and infinity to
    its driver (stored and read back as such, without a zone): refused on both backends, as
    is a time whose UTC form is before year 1; the instants beside them are stored."""
    at = {
        "0001-01-01T00:00:00Z": "invalid",
        "0001-01-01T00:00:00+05:00": "invalid",
        "9999-12-31T23:59:59.999999Z": "invalid",
        "0001-01-01T00:00:01Z": "created",
        "9999-12-31T23:59:58Z": "created",
    }
    cases = unique(aiid_cases(len(at)))
    for c, when in zip(cases, at, strict=True):
        c["occurred_at"] = when
    resp = await client.post(BULK, json=cases, headers=ingest_headers)
    results = resp.json()["results"]
    assert [r["status"] for r in results] == list(at.values())
    for r in results[:3]:
        assert [e["path"] for e in r["errors"]] == ["occurred_at"], r
        assert "after 0001-01-01T00:00:00Z" in r["errors"][0]["message"]
    stored = await client.get(f"/catalog/v1/cases/{results[3]['id']}", headers=ingest_headers)
    assert stored.json()["occurred_at"].startswith("0001-01-01T00:00:01")


async def test_a_nul_character_makes_its_item_invalid_and_the_rest_are_stored(
    client, ingest_headers
):
    """Postgres stores U+0000 in neither text nor JSONB: on it, one such item failed its whole
    batch. Now it is the item's error (every path named), alike on both backends."""
    cases = unique(aiid_cases(5))
    cases[1]["title"] = "nul\u0000title"
    cases[2]["input"] = {"text": ["fine", "a\u0000b"], "k\u0000": 1}
    cases[3]["tags"] = ["ok", "t\u0000"]
    cases[4]["summary"] = "a literal backslash-u: \\u0000 is text, not NUL"
    resp = await client.post(BULK, json=cases, headers=ingest_headers)
    results = resp.json()["results"]
    assert [r["status"] for r in results] == ["created", "invalid", "invalid", "invalid", "created"]
    paths = [sorted(e["path"] for e in r.get("errors") or []) for r in results[1:4]]
    assert paths == [["title"], ["input.k\u0000", "input.text.1"], ["tags.1"]]
    assert all("U+0000" in e["message"] for r in results[1:4] for e in r["errors"])


async def test_ndjson_with_a_broken_line(client, ingest_headers):
    cases = unique(aiid_cases(3))
    lines = [
        orjson.dumps(cases[0]),
        b'{"model": ',
        orjson.dumps(cases[1]),
        b"",
        orjson.dumps(cases[2]),
    ]
    resp = await client.post(
        BULK,
        content=b"\n".join(lines),
        headers={**ingest_headers, "Content-Type": "application/x-ndjson"},
    )
    out = resp.json()
    assert [r["status"] for r in out["results"]] == ["created", "invalid", "created", "created"]
    assert out["results"][1]["errors"][0]["message"].startswith("line 2:")


async def test_ndjson_results_name_the_line_as_counted_in_the_body(client, ingest_headers):
    """Blank and whitespace-only lines, CRLF endings and a trailing newline do not shift the
    line an item is named by; an item refused by validation is named by its line too (its
    index skips the blank lines)."""
    cases = unique(aiid_cases(4))
    cases[2]["confidence"] = 7
    body = (
        b"\n   \t\n"  # lines 1-2: blank
        + orjson.dumps(cases[0])  # line 3
        + b"\r\n\r\n"  # line 4: blank (CRLF)
        + b'{"model": \n'  # line 5: cut short
        # line 6: a lone \r is JSON whitespace inside the item, not a line end
        + orjson.dumps(cases[1]).replace(b',"summary"', b',\r"summary"', 1)
        + b"\n"
        + orjson.dumps(cases[2])  # line 7: confidence out of range
        + b"\n\n"
        + orjson.dumps(cases[3])  # line 9
        + b"\n"
    )
    resp = await client.post(
        BULK, content=body, headers={**ingest_headers, "Content-Type": "application/x-ndjson"}
    )
    results = resp.json()["results"]
    assert [(r["index"], r["line"], r["status"]) for r in results] == [
        (0, 3, "created"),
        (1, 5, "invalid"),
        (2, 6, "created"),
        (3, 7, "invalid"),
        (4, 9, "created"),
    ]
    # orjson's own "line 1 column 7" (of the one line it parsed) is not repeated.
    assert results[1]["errors"] == [
        {"path": "$", "message": "line 5: invalid JSON at column 11: unexpected end of data"}
    ]
    assert results[3]["errors"] == [
        {"path": "confidence", "message": "Input should be less than or equal to 1"}
    ]
    # A JSON array's items are named by index alone.
    again = await client.post(BULK, json=cases, headers=ingest_headers)
    assert all("line" not in r for r in again.json()["results"])


async def test_too_many_items_is_413_naming_the_limit(client, ingest_headers):
    body = b"[" + b",".join([b"{}"] * (L.MAX_ITEMS_PER_REQUEST + 1)) + b"]"
    resp = await client.post(
        BULK, content=body, headers={**ingest_headers, "Content-Type": "application/json"}
    )
    assert resp.status_code == 413
    assert resp.headers["content-type"] == "application/problem+json"
    assert "max_items_per_request=10000" in resp.json()["errors"][0]["message"]


async def test_body_over_20_mb_is_413_before_parsing(client, ingest_headers):
    body = b"[" + b" " * L.MAX_REQUEST_BYTES + b"]"
    resp = await client.post(
        BULK, content=body, headers={**ingest_headers, "Content-Type": "application/json"}
    )
    assert resp.status_code == 413
    assert "max_request_bytes" in resp.json()["errors"][0]["message"]


async def test_malformed_json_and_non_array_are_400(client, ingest_headers):
    h = {**ingest_headers, "Content-Type": "application/json"}
    bad = await client.post(BULK, content=b'[{"model": ', headers=h)
    assert bad.status_code == 400 and bad.json()["code"] == "BAD_USER_INPUT"
    obj = await client.post(BULK, content=b'{"model": {}}', headers=h)
    assert obj.status_code == 400 and "array" in obj.json()["detail"]


async def test_deep_nesting_is_an_invalid_item(client, ingest_headers):
    [case] = unique(aiid_cases(1))
    deep: dict = {}
    node = deep
    for _ in range(L.MAX_JSON_DEPTH + 5):
        node["n"] = {}
        node = node["n"]
    case["input"] = deep
    out = (await client.post(BULK, json=[case], headers=ingest_headers)).json()
    assert out["results"][0]["status"] == "invalid"
    assert "nesting" in out["results"][0]["errors"][0]["message"]


async def test_blob_limits_hold_per_blob_not_for_the_blobs_together(client, ingest_headers):
    """The limits are per blob: blobs each within the size and nesting limits are stored even
    when together they exceed them (the together-check is only a shortcut), and a blob over
    a limit is named whichever blobs sit beside it."""
    cases = unique(aiid_cases(3))
    half = "y" * (L.MAX_BLOB_BYTES // 2)

    def nested(depth: int) -> dict:
        return {"n": nested(depth - 1)} if depth > 1 else {}

    big_pair = dict(cases[0], input={"x": half}, prediction={"x": half}, expected=[half])
    deep_pair = dict(
        cases[1], input=nested(L.MAX_JSON_DEPTH - 2), signals={"s": nested(L.MAX_JSON_DEPTH - 3)}
    )
    over = dict(cases[2], input={"x": half}, prediction=nested(L.MAX_JSON_DEPTH + 1))
    out = (await client.post(BULK, json=[big_pair, deep_pair, over], headers=ingest_headers)).json()
    assert [r["status"] for r in out["results"]] == ["created", "created", "invalid"]
    assert [e["path"] for e in out["results"][2]["errors"]] == ["prediction"]
    assert "nesting" in out["results"][2]["errors"][0]["message"]


async def test_ingest_needs_the_ingest_scope(client, token_for):
    reader = auth_header(await token_for("cases:read"))
    resp = await client.post(BULK, json=unique(aiid_cases(1)), headers=reader)
    assert resp.status_code == 403
    assert "insufficient_scope" in resp.headers["www-authenticate"]
    assert (await client.post(BULK, json=[])).status_code == 401


def _report_only(case: dict, **overrides) -> dict:
    """A corpus incident reported with no external id and no captured payload."""
    out = {
        "model": case["model"],
        "data_source": case["data_source"],
        "title": case["title"],
        "summary": case["summary"],
    }
    out.update(overrides)
    return out


async def test_reports_without_payload_are_told_apart_by_what_was_reported(client, ingest_headers):
    """Two different incidents sharing model and source, sent with a title and summary only,
    are two cases; the same report sent again is a duplicate."""
    a, b = unique(aiid_cases(2))
    first, second = _report_only(a), _report_only(b, data_source=a["data_source"])
    out = (await client.post(BULK, json=[first, second], headers=ingest_headers)).json()
    assert [r["status"] for r in out["results"]] == ["created", "created"]
    assert out["results"][0]["id"] != out["results"][1]["id"]
    again = (await client.post(BULK, json=[second], headers=ingest_headers)).json()
    assert again["results"] == [{"index": 0, "status": "duplicate", "id": out["results"][1]["id"]}]


async def test_a_reused_external_id_with_different_content_is_a_conflict(client, ingest_headers):
    a, b = unique(aiid_cases(2))
    reused = dict(b, external_id=a["external_id"], data_source=a["data_source"])
    reused["provenance"] = a["provenance"]
    out = (await client.post(BULK, json=[a], headers=ingest_headers)).json()
    stored = out["results"][0]["id"]
    # In a later request, and twice within one request: never stored, never a silent drop.
    for body in ([reused], [reused, a]):
        got = (await client.post(BULK, json=body, headers=ingest_headers)).json()
        assert got["results"][0]["status"] == "conflict", got
        assert got["results"][0]["id"] == stored
        assert got["results"][0]["errors"][0]["path"] == "external_id"
        assert a["external_id"] in got["results"][0]["errors"][0]["message"]
    assert got["results"][1] == {"index": 1, "status": "duplicate", "id": stored}
    assert got["counts"]["conflict"] == 1 and got["counts"]["duplicate"] == 1
    fresh = unique(aiid_cases(1))[0]
    pair = [fresh, dict(fresh, input={"other": "payload"})]
    within = (await client.post(BULK, json=pair, headers=ingest_headers)).json()
    assert [r["status"] for r in within["results"]] == ["created", "conflict"]
    assert within["results"][1]["id"] == within["results"][0]["id"]
    case = (await client.get(f"/catalog/v1/cases/{stored}", headers=ingest_headers)).json()
    assert case["title"] == a["title"]


async def test_an_unknown_failure_mode_is_reported_with_the_other_errors(client, ingest_headers):
    [case] = unique(aiid_cases(1))
    case.update(failure_mode="safety.halucination", confidence=-0.5, tags=[""])
    out = (await client.post(BULK, json=[case], headers=ingest_headers)).json()
    [result] = out["results"]
    assert result["status"] == "invalid"
    paths = {e["path"] for e in result["errors"]}
    assert paths == {"failure_mode", "confidence", "tags.0"}
    [mode] = [e["message"] for e in result["errors"] if e["path"] == "failure_mode"]
    assert "safety.hallucination" in mode
