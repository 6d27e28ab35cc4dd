"""The case page marks what the reader may not see: payload fields above their clearance are
shown as redacted (never their values), and the kinds of personal data masked at capture."""

from __future__ import annotations

import secrets

from tests.catalog.builders import unique
from tests.corpus import aiid_cases
from tests.gateway.ui.conftest import bulk


async def test_a_payload_above_the_readers_clearance_is_marked_redacted(
    curator, low_clearance, corpus, client, admin_token
):
    [case] = unique(aiid_cases(1))
    secret_input = f"wire-transfer-{secrets.token_hex(4)}"
    case.update(
        data_source=corpus.source,
        team=corpus.team,
        sensitivity="internal",
        payload_sensitivity="restricted",
        input={"text": secret_input},
        summary=case["summary"] + " Reported by ops-lead@example.com.",
    )
    [case_id] = await bulk(client, admin_token, [case])

    seen = (await curator.http.get(f"/ui/cases/{case_id}")).text
    assert secret_input in seen and 'data-redacted="input"' not in seen

    page = await low_clearance.http.get(f"/ui/cases/{case_id}")
    assert page.status_code == 200  # the case is theirs to see; its payload is not
    html = page.text
    assert secret_input not in html
    for name in ("environment", "input", "prediction", "expected", "signals"):
        assert f'data-redacted="{name}"' in html
    assert "payload is restricted, above your clearance" in html
    # The address was masked at capture: the page names the kind, never the value.
    assert "ops-lead@example.com" not in html
    assert '<span class="tag" title="summary">email</span>' in html
