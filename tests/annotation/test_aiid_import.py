"""Item 6: `failcat import aiid DIR` on the real corpora, idempotent with progress, and
`agreement(taxonomy: "CSETv1", field: "AI Harm Level")` answering with real disagreement."""

from __future__ import annotations

import asyncio
import json

import pytest
from sklearn.metrics import cohen_kappa_score

from services.annotation.aiid_import import PLACEHOLDER_MODEL, read_jsonl
from services.gateway.cli import main
from tests.annotation.helpers import REVIEWER, caller, codes, data, gql
from tests.corpus import CORPORA

AGREEMENT = """
query($tax: String!, $field: String!, $who: [String!], $q: String) {
  agreement(taxonomy: $tax, field: $field, annotators: $who, query: $q) {
    n level fleissKappa fleissKappaInterval { low high n }
    krippendorffAlpha { value low high n }
    pairs { a b n cohenKappa cohenKappaInterval { low high } }
    distribution { annotator values { value count } }
    byMonth { month n krippendorffAlpha }
  }
}"""

CASE = """
query($id: ID!) { case(id: $id) {
  externalId title occurredAt model { name } modelVersion { version } dataSource { name }
  annotations(taxonomy: "CSETv1") { annotator status values }
  reviewTrail { action actor values } } }"""


def _failcat(monkeypatch, settings, capsys, *argv: str) -> tuple[int, str, str]:
    monkeypatch.setenv("FAILCAT_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("FAILCAT_DATABASE_URL", settings.catalog_url)
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


async def failcat(*args):
    return await asyncio.to_thread(_failcat, *args)


@pytest.fixture(scope="module")
def expected_kappa() -> float:
    levels: dict[str, dict[str, str]] = {}
    for n in (1, 2):
        for rec in read_jsonl(CORPORA / f"aiid_classifications_CSETv1_Annotator-{n}.jsonl"):
            if rec["AI Harm Level"]:
                levels.setdefault(rec["Namespace"], {})[rec["Incident ID"]] = rec["AI Harm Level"]
    a, b = levels["CSETv1_Annotator-1"], levels["CSETv1_Annotator-2"]
    shared = sorted(set(a) & set(b))
    return cohen_kappa_score([a[i] for i in shared], [b[i] for i in shared])


async def test_import_aiid_then_agreement_with_real_disagreement(
    monkeypatch, settings, capsys, client, admin_token, token_for, expected_kappa
):
    code, out, err = await failcat(monkeypatch, settings, capsys, "import", "aiid", str(CORPORA))
    assert code == 0, err
    first = json.loads(out)
    assert "cases 913/913" in err and "aiid_classifications_CSETv1_Annotator-1.jsonl 298/298" in err
    assert first["cases"].get("invalid", 0) == 0
    assert first["cases"].get("created", 0) + first["cases"].get("duplicate", 0) == 913
    assert first["annotations"] + first["unchanged"] == 298 + 106 + 81
    assert first["unknown_incidents"] == 0

    # Idempotent: a second run stores nothing new.
    code, out, err = await failcat(monkeypatch, settings, capsys, "import", "aiid", str(CORPORA))
    again = json.loads(out)
    assert again["cases"] == {"duplicate": 913}
    assert (again["annotations"], again["adjudicated"]) == (0, 0)
    assert again["unchanged"] == 298 + 106 + 81

    body = await gql(client, admin_token, AGREEMENT, {"tax": "CSETv1", "field": "AI Harm Level"})
    agreement = data(body)["agreement"]
    assert agreement["level"] == "nominal" and agreement["n"] >= 150
    alpha = agreement["krippendorffAlpha"]
    assert 0.0 < alpha["value"] < 0.95  # real disagreement, yet better than chance
    assert alpha["low"] < alpha["value"] < alpha["high"] and alpha["n"] == agreement["n"]
    pairs = {(p["a"], p["b"]): p for p in agreement["pairs"]}
    one_two = pairs[("CSETv1_Annotator-1", "CSETv1_Annotator-2")]
    assert one_two["cohenKappa"] == pytest.approx(expected_kappa, abs=1e-9)
    assert one_two["n"] >= 80
    assert {d["annotator"] for d in agreement["distribution"]} == {
        "CSETv1_Annotator-1",
        "CSETv1_Annotator-2",
        "CSETv1_Annotator-3",
    }
    assert agreement["byMonth"] and sum(m["n"] for m in agreement["byMonth"]) == agreement["n"]

    # Two annotators only: one pair, and the statistics over their shared incidents.
    body = await gql(
        client,
        admin_token,
        AGREEMENT,
        {
            "tax": "CSETv1",
            "field": "AI Harm Level",
            "who": ["CSETv1_Annotator-1", "CSETv1_Annotator-2"],
        },
    )
    narrowed = data(body)["agreement"]
    assert [(p["a"], p["b"]) for p in narrowed["pairs"]] == [
        ("CSETv1_Annotator-1", "CSETv1_Annotator-2")
    ]
    assert narrowed["n"] == one_two["n"]

    # The CLI prints the same figures.
    code, out, _ = await failcat(
        monkeypatch,
        settings,
        capsys,
        "agreement",
        "--taxonomy",
        "CSETv1",
        "--field",
        "AI Harm Level",
        "--resamples",
        "100",
    )
    printed = json.loads(out)
    assert printed["n"] == agreement["n"]
    assert printed["alpha"]["value"] == pytest.approx(alpha["value"])

    # A case as imported: its annotations and the final classification as adjudicated values.
    reviewer = await caller(token_for, REVIEWER, clearance="restricted")
    incident = next(read_jsonl(CORPORA / "aiid_classifications_CSETv1_Annotator-2.jsonl"))
    ids = await _case_id(client, admin_token, f"AIID-{incident['Incident ID']}")
    case = data(await gql(client, reviewer.token, CASE, {"id": ids}))["case"]
    assert case["model"]["name"] == PLACEHOLDER_MODEL["name"]
    assert case["dataSource"]["name"] == "aiid"
    annotators = {a["annotator"] for a in case["annotations"]}
    assert "CSETv1_Annotator-2" in annotators
    assert all(a["status"] == "SUBMITTED" for a in case["annotations"])


async def _case_id(client, token, external_id: str) -> str:
    query = (
        "query($f: CaseFilterInput, $a: String) { cases(filter: $f, first: 500, after: $a)"
        " { nodes { id externalId } pageInfo { endCursor } } }"
    )
    after = None
    while True:
        page = data(await gql(client, token, query, {"f": {"dataSource": "aiid"}, "a": after}))
        nodes, after = page["cases"]["nodes"], page["cases"]["pageInfo"]["endCursor"]
        assert nodes, f"{external_id} not found"
        for n in nodes:
            if n["externalId"] == external_id:
                return n["id"]


async def test_agreement_over_a_search_query(monkeypatch, settings, capsys, client, admin_token):
    # Idempotent: a no-op after the test above, the import itself when run alone.
    code, _, err = await failcat(monkeypatch, settings, capsys, "import", "aiid", str(CORPORA))
    assert code == 0, err
    for _ in range(100):
        body = await gql(
            client, admin_token, '{ search(query: "source:aiid", first: 1) { total } }'
        )
        if data(body)["search"]["total"] >= 913:
            break
        await asyncio.sleep(0.2)
    args = {"tax": "CSETv1", "field": "AI Harm Level"}
    everything = data(await gql(client, admin_token, AGREEMENT, args))["agreement"]
    narrowed = data(
        await gql(client, admin_token, AGREEMENT, {**args, "q": "source:aiid occurred:<2018-01-01"})
    )["agreement"]
    assert 0 < narrowed["n"] < everything["n"]
    nothing = data(await gql(client, admin_token, AGREEMENT, {**args, "q": "source:nowhere"}))
    assert nothing["agreement"]["n"] == 0 and nothing["agreement"]["pairs"] == []


@pytest.mark.parametrize(
    ("field", "level", "labels"),
    [
        ("Quality Control", "nominal", {"True", "False"}),
        ("Lives Lost", "nominal", None),
        ("Harm Distribution Basis", "set", None),
        ("Sector of Deployment", "set", None),
    ],
)
async def test_agreement_on_bool_int_and_set_fields(
    monkeypatch, settings, capsys, client, admin_token, field, level, labels
):
    code, _, err = await failcat(monkeypatch, settings, capsys, "import", "aiid", str(CORPORA))
    assert code == 0, err
    body = await gql(client, admin_token, AGREEMENT, {"tax": "CSETv1", "field": field})
    got = data(body)["agreement"]
    assert got["level"] == level and got["n"] > 20
    assert got["krippendorffAlpha"]["value"] is not None
    values = {v["value"] for d in got["distribution"] for v in d["values"]}
    if labels is not None:
        assert values <= labels  # the same labels on both backends
    if field == "Lives Lost":
        assert "0" in values and all(v.isdigit() for v in values)


async def test_agreement_bad_input_is_coded(client, admin_token):
    body = await gql(client, admin_token, AGREEMENT, {"tax": "nope", "field": "x"})
    assert (
        codes(body) == ["BAD_USER_INPUT"]
        and "unknown taxonomy nope" in body["errors"][0]["message"]
    )
    body = await gql(client, admin_token, AGREEMENT, {"tax": "failcat", "field": "colour"})
    assert codes(body) == ["BAD_USER_INPUT"]
    assert "unknown field colour of taxonomy failcat" in body["errors"][0]["message"]


def test_every_alleged_party_of_a_long_list_is_kept():
    """Parties were cut at 200 characters (the catalog takes 1,000): four incidents lost
    deployers, the last one cut mid-name."""
    from services.annotation.aiid_import import incident_case

    key = "Alleged deployer of AI system"
    long = [
        rec
        for rec in read_jsonl(CORPORA / "aiid_incidents.jsonl")
        if len(", ".join(json.loads(rec.get(key) or "[]"))) > 200
    ]
    assert long
    for rec in long:
        assert incident_case(rec)["environment"]["deployer"] == ", ".join(json.loads(rec[key]))


async def test_a_line_that_is_not_json_is_named_by_file_and_line(
    monkeypatch, settings, capsys, tmp_path
):
    """It stopped with 'unexpected error: JSONDecodeError: ... line 1 column 2', naming
    neither the file nor its line."""
    import shutil

    for source in CORPORA.glob("aiid_*.jsonl"):
        shutil.copy(source, tmp_path / source.name)
    incidents = tmp_path / "aiid_incidents.jsonl"
    lines = incidents.read_text(encoding="utf-8").splitlines(keepends=True)
    incidents.write_text("".join([*lines[:4], '{"incident_id": "5", oops\n', *lines[4:]]))
    code, out, err = await failcat(monkeypatch, settings, capsys, "import", "aiid", str(tmp_path))
    assert code == 2 and out == ""
    assert err == (
        f"failcat: {incidents}:5: not JSON: Expecting property name enclosed in double quotes "
        "at column 22\n"
    )


async def test_a_line_that_is_not_utf8_is_named_by_file_line_and_byte(
    monkeypatch, settings, capsys, tmp_path
):
    """A Windows-1252 quote stopped it with 'unexpected error: UnicodeDecodeError ...
    position 3601' (the file's, no line)."""
    import shutil

    for source in CORPORA.glob("aiid_*.jsonl"):
        shutil.copy(source, tmp_path / source.name)
    incidents = tmp_path / "aiid_incidents.jsonl"
    lines = incidents.read_bytes().split(b"\n")
    lines[6] = lines[6].replace(b'"title": "', b'"title": "\x93', 1)
    incidents.write_bytes(b"\n".join(lines))
    column = len(lines[6][: lines[6].index(b"\x93")].decode("utf-8")) + 1  # in characters
    code, out, err = await failcat(monkeypatch, settings, capsys, "import", "aiid", str(tmp_path))
    assert code == 2 and out == ""
    assert err == (
        f"failcat: {incidents}:7: not UTF-8 text: byte 0x93 at column {column} (save the file "
        "as UTF-8)\n"
    )
