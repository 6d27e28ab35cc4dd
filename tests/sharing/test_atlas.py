"""Item 2, ATLAS: `failcat import atlas` of all 57 published MITRE ATLAS case studies."""

from __future__ import annotations

import json

from sqlalchemy import text

from services.governance.redaction.service import mask_text
from services.sharing.atlas import technique_mode
from tests.cli_run import failcat
from tests.corpus import CORPORA
from tests.gateway.helpers import data, gql

STUDIES = CORPORA / "atlas_case_studies.jsonl"
CASE = """query($id: ID!) { case(id: $id) {
  externalId title summary occurredAt failureMode tags model { name }
  links { kind url title } writeup { experiments }
  annotations(taxonomy: "ATLAS") { annotator status values } } }"""


def studies() -> list[dict]:
    with STUDIES.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


async def test_every_atlas_case_study_is_imported_once(
    monkeypatch, settings, capsys, app, client, admin_token
):
    published = studies()
    assert len(published) == 57
    code, out, err = await failcat(monkeypatch, settings, capsys, "import", "atlas", str(STUDIES))
    assert code == 0, err
    first = json.loads(out)
    assert first["cases"].get("created", 0) + first["cases"].get("duplicate", 0) == 57
    assert first["annotations"] + first["unchanged"] == 57 and not first["errors"]
    code, out, _ = await failcat(monkeypatch, settings, capsys, "import", "atlas", str(STUDIES))
    again = json.loads(out)
    assert again["cases"] == {"duplicate": 57} and again["annotations"] == 0

    async with app.state.db.transaction() as s:
        rows = (
            await s.execute(
                text(
                    "select external_id, id from failure_case where data_source_id in"
                    " (select id from data_source where name = 'atlas')"
                )
            )
        ).all()
    # Other tests of the session may import their own (renamed) studies into `atlas`.
    published_ids = {s["id"] for s in published}
    ours = [external for external, _ in rows if external in published_ids]
    assert sorted(ours) == sorted(published_ids)  # each study once
    ids = dict(rows)

    wrong = []
    for study in published:
        case = data(await gql(client, admin_token, CASE, {"id": ids[study["id"]]}))["case"]
        steps = study["procedure"]
        tactics = {s["tactic"] for s in steps}
        techniques = {s["technique"] for s in steps}
        # Stored as ingest stores any text: through the default redaction policy (one study's
        # summary links `...?secret=confetti`, a secret by its key name, masked).
        if case["title"] != mask_text(study["name"]) or case["summary"] != mask_text(
            study["summary"]
        ):
            wrong.append(f"{study['id']}: title/summary")
        expected_tags = tactics | techniques | {"atlas", f"atlas:{study['case-study-type']}"}
        if expected_tags != set(case["tags"]):
            wrong.append(f"{study['id']}: tags {case['tags']}")
        if case["occurredAt"][:10] != study["incident-date"]:
            wrong.append(f"{study['id']}: date")
        # The catalog keeps links as a set (ordered by its own key), not in the given order.
        if sorted((r["url"], r["title"]) for r in study.get("references") or []) != sorted(
            (link["url"], link["title"]) for link in case["links"]
        ):
            wrong.append(f"{study['id']}: links {case['links']}")
        if len(case["writeup"]["experiments"].splitlines()) < len(steps):
            wrong.append(f"{study['id']}: procedure")
        [note] = case["annotations"]
        # The annotation's values meet the same policy (the same study's `secret=` link).
        masked = [
            {k: mask_text(v) if isinstance(v, str) else v for k, v in x.items()} for x in steps
        ]
        if note["annotator"] != "MITRE ATLAS" or note["values"]["procedure"] != masked:
            wrong.append(f"{study['id']}: annotation")
        modes = {technique_mode(t) for t in techniques} - {None}
        if (case["failureMode"] is None) != (not modes) or (
            case["failureMode"] and case["failureMode"] not in modes
        ):
            wrong.append(f"{study['id']}: failure mode {case['failureMode']} of {modes}")
    assert not wrong, wrong

    # The first case study is an evasion of a malware detector: AML.T0015 Evade AI Model.
    first_case = data(await gql(client, admin_token, CASE, {"id": ids["AML.CS0000"]}))["case"]
    assert first_case["failureMode"] == "adversarial_input.evasion"
    assert first_case["model"]["name"] == "Palo Alto Networks malware detection system"


def test_technique_mapping_falls_back_to_the_parent_technique():
    assert technique_mode("AML.T0051.001") == "adversarial_input.prompt_injection"
    assert technique_mode("AML.T0024.002") == "adversarial_input.model_extraction"
    assert technique_mode("AML.T0048.003") is None  # an external harm: a consequence, no mode
