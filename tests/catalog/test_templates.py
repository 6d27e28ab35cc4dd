"""Write-up templates: one per failure-mode family of the default taxonomy, served by REST."""

from __future__ import annotations

from services.catalog.reference import DEFAULT_TAXONOMY
from services.catalog.templates import WRITEUP_FIELDS
from tests.conftest import auth_header


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
