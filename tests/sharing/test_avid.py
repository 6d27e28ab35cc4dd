"""Item 2, AVID interop: `failcat import avid` of all 1,745 published reports, idempotent, and
`failcat export avid` giving back every field failcat models (services/sharing/avid.py)."""

from __future__ import annotations

import json
import uuid
from collections import Counter

from sqlalchemy import text

from services.sharing.avid import stream_reports
from shared.security import SYSTEM
from tests.cli_run import failcat, indexed
from tests.corpus import CORPORA
from tests.gateway.helpers import INGEST, case_input, data, gql
from tests.sharing.avid_diff import differences, not_modelled

REPORTS = CORPORA / "avid_reports.jsonl"
ANNOTATIONS = """query($id: ID!) { case(id: $id) {
  externalId title severity failureMode tags environment links { url title }
  annotations(taxonomy: "AVID") { annotator status values } } }"""


def originals() -> dict[str, dict]:
    with REPORTS.open(encoding="utf-8") as fh:
        records = [json.loads(line) for line in fh if line.strip()]
    return {r["metadata"]["report_id"]: r for r in records}


async def _case(app, external_id: str) -> tuple[str, str | None, str | None]:
    async with app.state.db.transaction() as s:
        row = (
            await s.execute(
                text(
                    "select id, failure_mode, severity from failure_case"
                    " where external_id = :e and data_source_id in"
                    " (select id from data_source where name = 'avid')"
                ),
                {"e": external_id},
            )
        ).one()
    return tuple(row)  # type: ignore[return-value]


async def test_round_trip_of_every_avid_report(
    monkeypatch, settings, capsys, app, client, admin_token, tmp_path
):
    published = originals()
    assert len(published) == 1745

    code, out, err = await failcat(monkeypatch, settings, capsys, "import", "avid", str(REPORTS))
    assert code == 0, err
    first = json.loads(out)
    assert "avid reports 1745/1745" in err
    assert first["cases"].get("invalid", 0) == 0 and not first["errors"]
    assert first["cases"].get("created", 0) + first["cases"].get("duplicate", 0) == 1745
    assert first["annotations"] + first["unchanged"] == 1745

    # Idempotent: the report id is the external id; nothing is stored twice.
    code, out, err = await failcat(monkeypatch, settings, capsys, "import", "avid", str(REPORTS))
    again = json.loads(out)
    assert again["cases"] == {"duplicate": 1745}
    assert (again["annotations"], again["unchanged"]) == (0, 1745)

    assert await indexed(app.state.search, "data_source:avid", 1745) >= 1745
    out_file = tmp_path / "avid.jsonl"
    code, _, err = await failcat(
        monkeypatch,
        settings,
        capsys,
        "export",
        "avid",
        "--query",
        "data_source:avid",
        "--out",
        str(out_file),
    )
    assert code == 0, err
    exported = {}
    for line in out_file.read_text().splitlines():
        report = json.loads(line)
        exported.setdefault(report["metadata"]["report_id"], report)
    assert set(published) <= set(exported)

    masked: list[str] = []
    diffs = {rid: differences(rec, exported[rid], masked) for rid, rec in published.items()}
    wrong = {rid: d for rid, d in diffs.items() if d}
    assert not wrong, dict(list(wrong.items())[:5])
    # Real reports name hosts now and then: those texts come back with the PII masked.
    assert len(masked) < 10, masked
    print(f"AVID round trip: {len(masked)} texts came back with PII masked: {masked}")
    unmodelled = Counter(p for rec in published.values() for p in not_modelled(rec))
    print(f"AVID round trip: {len(published)} reports, 0 differences on the modelled fields")
    print(f"not modelled by failcat: {dict(unmodelled) or 'nothing'}")

    # Native fields carry what they mean: SEP view -> failure mode, CVSS -> severity, and the
    # originals are the AVID annotation.
    case_id, mode, severity = await _case(app, "AVID-2022-R0001")
    assert (mode, severity) == ("fairness.disparate_performance", None)  # E0101 Group fairness
    body = data(await gql(client, admin_token, ANNOTATIONS, {"id": case_id}))["case"]
    assert body["title"].startswith("Gender Bias in Sentence Completion Tasks")
    assert body["environment"] == {"deployer": "HuggingFace"}
    [note] = body["annotations"]
    assert note["annotator"] == "AVID" and note["status"] == "SUBMITTED"
    assert note["values"]["sep_view"] == ["E0101: Group fairness"]
    assert note["values"]["risk_domain"] == ["Ethics"]
    with_cvss = next(
        r
        for r in published.values()
        if (r.get("impact") or {}).get("cvss", {}).get("baseSeverity") == "HIGH"
    )
    _, _, severity = await _case(app, with_cvss["metadata"]["report_id"])
    assert severity == "S1"
    software = next(
        r
        for r in published.values()
        if (r.get("impact") or {}).get("avid", {}).get("sep_view")
        == ["S0100: Software Vulnerability"]
    )
    assert (await _case(app, software["metadata"]["report_id"]))[1] is None  # no defensible mode


async def test_a_failcat_case_exports_as_an_avid_report(app, client, token_for):
    token = await token_for("cases:ingest cases:read", clearance="restricted")
    case = {
        "external_id": "native-avid-1",
        "title": "Chat model insults a user",
        "summary": "It answered a refund question with an insult.",
        "model": {"name": "support-chat", "version": "4.1"},
        "data_source": "sharing-native",
        "occurred_at": "2026-05-04T10:00:00Z",
        "failure_mode": "safety.harmful_content",
        "severity": "S1",
        "environment": {"deployer": "Acme Support"},
        "team": "native-team",
        "links": [{"kind": "ticket", "url": "https://tickets.example/T-1", "title": "T-1"}],
        "signals": {"metrics": [{"scorer": "toxicity", "metrics": "max", "value": 0.93}]},
    }
    [result] = data(await gql(client, token, INGEST, {"cases": [case_input(case)]}))["ingestCases"]
    assert result["status"] in ("CREATED", "DUPLICATE")
    assert await indexed(app.state.search, "data_source:sharing-native", 1) == 1
    reports = [
        r
        async for r in stream_reports(
            app.state.search, app.state.db, SYSTEM, "data_source:sharing-native"
        )
    ]
    assert reports == [
        {
            "data_type": "AVID",
            "data_version": "0.3.3",
            "metadata": {"report_id": f"FAILCAT-{result['id']}"},
            "affects": {
                "developer": [],
                "deployer": ["Acme Support"],
                "artifacts": [{"type": "Model", "name": "support-chat"}],
            },
            "problemtype": {
                "classof": "failcat case",
                "type": "Issue",
                "description": {"lang": "eng", "value": "Chat model insults a user"},
            },
            "metrics": [{"scorer": "toxicity", "metrics": "max", "value": 0.93}],
            "references": [
                {"type": "source", "label": "T-1", "url": "https://tickets.example/T-1"}
            ],
            "description": {
                "lang": "eng",
                "value": "It answered a refund question with an insult.",
            },
            "impact": {
                "avid": {
                    "risk_domain": ["Ethics"],
                    "sep_view": ["E0301: Toxicity"],
                    "lifecycle_view": ["L06: Deployment"],
                    "taxonomy_version": "0.2",
                }
            },
            "reported_date": "2026-05-04",
        }
    ]
    # The caller's visibility applies: a reader of another team sees no report of the case.
    other = await token_for("cases:read", team="someone-else")
    principal = app.state.auth.authenticate(f"Bearer {other}")
    hidden = [
        r
        async for r in stream_reports(
            app.state.search, app.state.db, principal, "data_source:sharing-native"
        )
    ]
    assert hidden == []


async def test_a_report_whose_artifact_has_no_name_imports_as_model_unknown(
    monkeypatch, settings, capsys, app, tmp_path
):
    """AVID does not require an artifact's name: such a report is imported (model `unknown`)
    with its artifacts kept as published, and the other reports of the run are not lost."""
    tag = uuid.uuid4().hex[:8]
    reports = [dict(r) for r in list(originals().values())[:5]]
    for r in reports:
        r["metadata"] = {**r["metadata"], "report_id": f"{r['metadata']['report_id']}-{tag}"}
    nameless = [
        [{"type": "Model"}],  # no name at all
        [{"type": "Model", "name": None}],
        [{"type": "Model", "name": "  "}],
        [],  # no artifact
    ]
    for r, artifacts in zip(reports[1:], nameless, strict=True):
        r["affects"] = {**r["affects"], "artifacts": artifacts}
    path = tmp_path / "nameless.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in reports))

    code, out, err = await failcat(monkeypatch, settings, capsys, "import", "avid", str(path))
    assert code == 0, err
    summary = json.loads(out)
    assert summary["cases"] == {"created": 5} and summary["errors"] == []
    async with app.state.db.transaction() as s:
        rows = await s.execute(
            text(
                "select c.external_id, m.name from failure_case c join model m"
                " on m.id = c.model_id where c.external_id like :e"
            ),
            {"e": f"%-{tag}"},
        )
        models = dict(rows.all())
    first = reports[0]
    assert models == {
        first["metadata"]["report_id"]: first["affects"]["artifacts"][0]["name"],
        **{r["metadata"]["report_id"]: "unknown" for r in reports[1:]},
    }


async def test_a_report_shaped_otherwise_is_one_error_line_and_the_rest_import(
    monkeypatch, settings, capsys, tmp_path
):
    """A part of a report that is not what AVID's schema says is refused for that report alone,
    naming the part; before, the first one ended the whole import (nothing stored)."""
    tag = uuid.uuid4().hex[:8]
    reports = [dict(r) for r in list(originals().values())[:4]]
    for r in reports:
        r["metadata"] = {**r["metadata"], "report_id": f"{r['metadata']['report_id']}-{tag}"}
    ids = [r["metadata"]["report_id"] for r in reports]
    reports[1]["references"] = ["https://example.org/report"]  # a URL, not a reference object
    reports[2]["problemtype"] = {**reports[2]["problemtype"], "description": "text"}
    # The annotation's values are checked before anything is stored: a refusal there used to
    # end the import after its cases were stored.
    reports[3]["impact"] = {**reports[3].get("impact", {}), "cvss": {"baseScore": "high"}}
    path = tmp_path / "shapes.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in reports))

    code, out, err = await failcat(monkeypatch, settings, capsys, "import", "avid", str(path))
    assert code == 1, err
    summary = json.loads(out)
    assert summary["cases"] == {"invalid": 3, "created": 1}
    assert summary["errors"] == [
        f"{ids[1]}: not read as a case (references.0: expected an object, got a string)",
        f"{ids[2]}: not read as a case (problemtype.description: expected an object, got a string)",
        f"{ids[3]}: values.cvss.baseScore: expected a finite number",
    ]


def test_a_bad_file_is_one_line(monkeypatch, settings, capsys, tmp_path):
    from tests.cli_run import _failcat

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"data_type": "AVID"}\nnot json\n')
    code, _, err = _failcat(monkeypatch, settings, capsys, "import", "avid", str(bad))
    assert code == 2 and err.startswith(f"failcat: {bad}:2: not JSON")


async def test_a_summary_lists_twenty_errors_and_counts_the_rest(
    monkeypatch, settings, capsys, tmp_path
):
    tag = uuid.uuid4().hex[:8]
    report = next(iter(originals().values()))
    bad = [
        {
            **report,
            "metadata": {**report["metadata"], "report_id": f"{tag}-{n}"},
            "references": ["https://example.org/report"],  # a URL, not a reference object
        }
        for n in range(25)
    ]
    path = tmp_path / "many.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in bad))

    code, out, err = await failcat(monkeypatch, settings, capsys, "import", "avid", str(path))
    summary = json.loads(out)
    assert code == 1 and summary["cases"] == {"invalid": 25}, err
    assert [e.split(":")[0] for e in summary["errors"]] == [f"{tag}-{n}" for n in range(20)]
    assert summary["errors_left_off"] == 5


def test_a_line_that_is_not_utf8_is_named_by_byte_and_column(
    monkeypatch, settings, capsys, tmp_path
):
    """It said 'not JSON: str is not valid UTF-8: surrogates not allowed': no byte, no column,
    no hint that the file's encoding is what is wrong."""
    from tests.cli_run import _failcat

    lines = (CORPORA / "avid_reports.jsonl").read_bytes().split(b"\n")[:2]
    lines[1] = lines[1].replace(b'"value":"', b'"value":"\x92', 1)
    column = len(lines[1][: lines[1].index(b"\x92")].decode("utf-8")) + 1
    bad = tmp_path / "cp1252.jsonl"
    bad.write_bytes(b"\n".join(lines))
    code, _, err = _failcat(monkeypatch, settings, capsys, "import", "avid", str(bad))
    assert code == 2
    assert err == (
        f"failcat: {bad}:2: not UTF-8 text: byte 0x92 at column {column} (save the file as UTF-8)\n"
    )
