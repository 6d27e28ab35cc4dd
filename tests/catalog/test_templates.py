"""Write-up templates: one per failure-mode family of the default taxonomy, served by REST."""

from __future__ import annotations

from services.catalog.reference import DEFAULT_TAXONOMY
from services.catalog.templates import WRITEUP_FIELDS
from tests.conftest import auth_header
from tests.gateway.helpers import codes, data, gql


async def test_every_family_of_the_taxonomy_has_a_template(client, token_for):
    token = await token_for("cases:read")
    resp = await client.get("/catalog/v1/writeup-templates", headers=auth_header(token))
    assert resp.status_code == 200
    families = {t["family"] for t in resp.json()}
    assert families == {code for code, _, _ in DEFAULT_TAXONOMY if "." not in code}
    for template in resp.json():
        assert set(template["prompts"]) == set(WRITEUP_FIELDS)
        assert template["markdown"]["summary"].startswith("## ")


async def test_a_sub_mode_gets_its_family_template(client, token_for):
    token = await token_for("cases:read")
    resp = await client.get(
        "/catalog/v1/writeup-templates/safety.hallucination", headers=auth_header(token)
    )
    assert resp.status_code == 200
    assert resp.json()["family"] == "safety"
    assert "policy" in resp.json()["prompts"]["hypothesis"]


async def test_an_unknown_family_is_not_found_naming_the_families(client, token_for):
    token = await token_for("cases:read")
    resp = await client.get("/catalog/v1/writeup-templates/nonsense", headers=auth_header(token))
    assert resp.status_code == 404
    assert "data_quality" in resp.json()["detail"]


async def test_templates_need_a_token(client):
    resp = await client.get("/catalog/v1/writeup-templates")
    assert resp.status_code == 401


TEMPLATE_QUERY = """
query T($mode: String!) {
  writeupTemplate(failureMode: $mode) {
    family title summaryOutline evidence
    prompts { field question }
    markdown { summary hypothesis experiments results rationale }
  }
}"""


async def test_graphql_serves_the_same_template_as_rest(client, token_for):
    token = await token_for("cases:read")
    body = await gql(client, token, TEMPLATE_QUERY, {"mode": "label_noise.ambiguous"})
    got = data(body)["writeupTemplate"]
    rest = await client.get(
        "/catalog/v1/writeup-templates/label_noise.ambiguous", headers=auth_header(token)
    )
    want = rest.json()
    assert got["family"] == want["family"] == "label_noise"
    assert got["title"] == want["title"]
    assert got["summaryOutline"] == want["summary_outline"]
    assert got["evidence"] == want["evidence"]
    assert [p["field"] for p in got["prompts"]] == list(WRITEUP_FIELDS)
    assert {p["field"]: p["question"] for p in got["prompts"]} == want["prompts"]
    assert got["markdown"] == want["markdown"]
    assert got["markdown"]["summary"].startswith("## Disputed labels")


async def test_graphql_unknown_family_is_not_found_and_needs_cases_read(client, token_for):
    token = await token_for("cases:read")
    body = await gql(client, token, TEMPLATE_QUERY, {"mode": "nonsense"})
    assert codes(body) == ["NOT_FOUND"]
    assert "data_quality" in body["errors"][0]["message"]
    other = await token_for("evals:write")
    assert codes(await gql(client, other, TEMPLATE_QUERY, {"mode": "safety"})) == ["FORBIDDEN"]
