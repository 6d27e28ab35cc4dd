"""Item 2 for imported records: the free text of annotations and adjudications that AVID,
ATLAS and AIID imports store goes through the same detectors and source policy as ingest
(default mask); what was found is on the case (kinds and paths) and searchable; imports
stay idempotent; a whole-URL reference is a link and is left as it is."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from pathlib import Path
from typing import Any

from services.annotation import service as annotations
from services.annotation.aiid_import import import_aiid
from services.sharing.atlas import import_case_studies
from services.sharing.avid import ensure_taxonomy, import_reports
from shared.security import SYSTEM
from tests.corpus import CORPORA
from tests.gateway.helpers import INGEST, case_input, data, gql
from tests.gateway.test_query_count import outbox_drained
from tests.governance.redaction.test_policies import _case, _policy, _source

EMAIL = "grace.hopper@example.org"
PHONE = "+44 20 7946 0958"
SSN = "078-05-1120"
LINK = "https://lists.example.org/archives/list/announce@lists.example.org/message/X1/"
CASE = """query($id: ID!, $tax: String!) { case(id: $id) {
  title piiFindings { kind path } piiRestrictedValues { kind path value }
  annotations(taxonomy: $tax) { annotator values }
  reviewTrail { action values }
} }"""
CASE_ID = """query($id: ID!) { case(id: $id) { id } }"""
SEARCH = """query($q: String!) { search(query: $q, first: 20) { total hits { case { id } } } }"""


def _first(name: str, n: int) -> list[dict[str, Any]]:
    with (CORPORA / name).open(encoding="utf-8") as fh:
        return [json.loads(line) for line, _ in zip(fh, range(n), strict=False)]


async def _case_of(app, external_id: str) -> str:
    from sqlalchemy import text

    async with app.state.db.transaction() as s:
        return (
            await s.execute(
                text("select id from failure_case where external_id = :e"), {"e": external_id}
            )
        ).scalar_one()


async def test_imported_avid_annotation_is_redacted_recorded_and_idempotent(
    app, client, admin_token
):
    salt = secrets.token_hex(4)
    reports = _first("avid_reports.jsonl", 2)
    for report in reports:
        report["metadata"]["report_id"] += f"-{salt}"
        report["problemtype"]["description"]["value"] += f" {salt}"
    reports[0]["credit"] = [{"lang": "eng", "value": f"Reported by {EMAIL}, call {PHONE}"}]
    reports[0]["references"] = [{"type": "source", "label": f"mail {EMAIL}", "url": LINK}]
    async with app.state.db.transaction() as s:
        first = await import_reports(s, reports, SYSTEM)
    assert first["annotations"] == 2 and not first["errors"]

    case_id = await _case_of(app, reports[0]["metadata"]["report_id"])
    got = data(await gql(client, admin_token, CASE, {"id": case_id, "tax": "AVID"}))["case"]
    [annotation] = got["annotations"]
    stored = json.dumps(annotation["values"])
    assert EMAIL not in stored and PHONE not in stored
    assert annotation["values"]["credit"] == [
        {"lang": "eng", "value": "Reported by [EMAIL], call [PHONE]"}
    ]
    # A reference's URL is a link, as on the case: not rewritten.
    assert annotation["values"]["references"] == [
        {"type": "source", "label": "mail [EMAIL]", "url": LINK}
    ]
    findings = {(f["kind"], f["path"]) for f in got["piiFindings"]}
    assert {
        ("email", "annotation.AVID.credit[0].value"),
        ("phone", "annotation.AVID.credit[0].value"),
        ("email", "annotation.AVID.references[0].label"),
    } <= findings
    # The untouched report records nothing.
    other = await _case_of(app, reports[1]["metadata"]["report_id"])
    clean = data(await gql(client, admin_token, CASE, {"id": other, "tax": "AVID"}))["case"]
    assert not [f for f in clean["piiFindings"] if f["path"].startswith("annotation.")]

    # Searchable: the case was queued for re-indexing with its new findings.
    await outbox_drained(app.state.db)
    deadline = time.monotonic() + 10
    while True:  # OpenSearch shows a write after its refresh
        hits = data(await gql(client, admin_token, SEARCH, {"q": f"{salt} pii:phone"}))
        found = [h["case"]["id"] for h in hits["search"]["hits"]]
        if found or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert found == [case_id]

    # Idempotent: the redacted values are what is stored, so a second run stores nothing.
    async with app.state.db.transaction() as s:
        again = await import_reports(s, reports, SYSTEM)
    assert (again["annotations"], again["unchanged"]) == (0, 2)


async def test_imported_atlas_procedure_is_redacted(app, client, admin_token):
    salt = secrets.token_hex(4)
    [study] = _first("atlas_case_studies.jsonl", 1)
    study["id"] = f"{study['id']}-{salt}"
    study["procedure"][0]["description"] += f" The operator's SSN {SSN} was in the prompt."
    async with app.state.db.transaction() as s:
        result = await import_case_studies(s, [study], SYSTEM)
    assert result["annotations"] == 1
    case_id = await _case_of(app, study["id"])
    got = data(await gql(client, admin_token, CASE, {"id": case_id, "tax": "ATLAS"}))["case"]
    values = got["annotations"][0]["values"]
    assert SSN not in json.dumps(values)
    assert "SSN [SSN] was in the prompt" in values["procedure"][0]["description"]
    assert ("ssn", "annotation.ATLAS.procedure[0].description") in {
        (f["kind"], f["path"]) for f in got["piiFindings"]
    }


async def test_record_submitted_follows_the_source_policy(app, client, admin_token):
    """A source whose policy keeps raw values restricted: the annotation stores the masked
    form, the case keeps the raw value for restricted readers only."""
    source = _source()
    await _policy(client, admin_token, source, "KEEP_RESTRICTED")
    case = _case(source)
    case["summary"], case["input"] = "clean", None
    body = await gql(client, admin_token, INGEST, {"cases": [case_input(case)]})
    case_id = data(body)["ingestCases"][0]["id"]
    async with app.state.db.transaction() as s:
        taxonomy = await ensure_taxonomy(s, SYSTEM)
        changed = await annotations.record_submitted(
            s, case_id, "avid", taxonomy, {"credit": [{"lang": "eng", "value": EMAIL}]}, SYSTEM
        )
    assert changed
    got = data(await gql(client, admin_token, CASE, {"id": case_id, "tax": "AVID"}))["case"]
    assert got["annotations"][0]["values"]["credit"] == [{"lang": "eng", "value": "[EMAIL]"}]
    assert got["piiRestrictedValues"] == [
        {"kind": "email", "path": "annotation.AVID.credit[0].value", "value": EMAIL}
    ]


def _aiid_dir(tmp: Path, salt: int) -> tuple[Path, list[str]]:
    """Three real incidents (ids moved out of the way of other tests) with their
    classifications; PII written into a free-text field of an annotator's and the final one."""
    incidents = _first("aiid_incidents.jsonl", 400)
    classified = {
        r["Incident ID"] for r in _first("aiid_classifications_CSETv1_Annotator-1.jsonl", 300)
    } & {r["Incident ID"] for r in _first("aiid_classifications_CSETv1.jsonl", 300)}
    chosen = [r for r in incidents if str(r["incident_id"]) in classified][:3]
    assert len(chosen) == 3
    ids = {str(r["incident_id"]): str(salt + i) for i, r in enumerate(chosen)}
    for r in chosen:
        r["incident_id"] = int(ids[str(r["incident_id"])])
    (tmp / "aiid_incidents.jsonl").write_text("\n".join(json.dumps(r) for r in chosen))
    (tmp / "aiid_taxa.jsonl").write_text((CORPORA / "aiid_taxa.jsonl").read_text())
    note = f"Witness reachable at {EMAIL}."
    for name in ("CSETv1_Annotator-1", "CSETv1"):
        rows = [
            {**r, "Incident ID": ids[r["Incident ID"]]}
            for r in _first(f"aiid_classifications_{name}.jsonl", 300)
            if r["Incident ID"] in ids
        ]
        rows[0]["AI Tangible Harm Level Notes"] = note
        (tmp / f"aiid_classifications_{name}.jsonl").write_text(
            "\n".join(json.dumps(r) for r in rows)
        )
    return tmp, list(ids.values())


async def test_aiid_import_redacts_annotations_and_adjudications(
    app, client, admin_token, tmp_path
):
    directory, numbers = _aiid_dir(tmp_path, 9_000_000 + secrets.randbelow(10**6) * 10)
    async with app.state.db.transaction() as s:
        result = await import_aiid(s, directory, SYSTEM, progress=lambda _: None)
    assert result["annotations"] >= 3 and result["adjudicated"] >= 1
    ids = [await _case_of(app, f"AIID-{n}") for n in numbers]
    leaked, found = [], set()
    for case_id in ids:
        got = data(await gql(client, admin_token, CASE, {"id": case_id, "tax": "CSETv1"}))["case"]
        text_of = json.dumps([got["annotations"], got["reviewTrail"]])
        if EMAIL in text_of:
            leaked.append(case_id)
        found |= {(f["kind"], f["path"]) for f in got["piiFindings"]}
    assert not leaked
    assert ("email", "annotation.CSETv1.AI Tangible Harm Level Notes") in found
    assert ("email", "adjudication.CSETv1.AI Tangible Harm Level Notes") in found


async def test_a_link_title_is_redacted_at_ingest_and_a_url_title_kept(client, admin_token):
    """An imported reference's label becomes a link title: free text, scanned like the
    summary; a title that is a URL whole is a link, as the URL itself."""
    case = _case(_source())
    case["links"] = [
        {"kind": "other", "url": "https://example.org/a", "title": f"Thread with {EMAIL}"},
        {"kind": "other", "url": "https://example.org/b", "title": LINK},
    ]
    [case_id] = [
        r["id"]
        for r in data(await gql(client, admin_token, INGEST, {"cases": [case_input(case)]}))[
            "ingestCases"
        ]
    ]
    got = data(
        await gql(
            client,
            admin_token,
            "query($id: ID!) { case(id: $id) { links { url title } piiFindings { kind path } } }",
            {"id": case_id},
        )
    )["case"]
    assert sorted((lk["url"], lk["title"]) for lk in got["links"]) == [
        ("https://example.org/a", "Thread with [EMAIL]"),
        ("https://example.org/b", LINK),
    ]
    assert ("email", "links[0].title") in {(f["kind"], f["path"]) for f in got["piiFindings"]}
