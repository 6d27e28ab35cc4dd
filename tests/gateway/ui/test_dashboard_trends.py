"""The dashboard's trends: context events drawn on the severity series, drift arrows between
two versions of the heatmap, and the remediation-time trend, in the one dashboard request."""

from __future__ import annotations

import re
import secrets

from tests.conftest import auth_header


async def test_dashboard_draws_events_drift_and_remediation(curator, corpus, admin_token, client):
    title = f"rollout-{secrets.token_hex(3)}"
    event = {
        "kind": "deploy",
        "occurred_at": "2024-05-20T00:00:00+00:00",  # inside the corpus's span of months
        "scope": {"model": "incident-classifier", "version": "1.2.0"},
        "title": title,
    }
    resp = await client.post("/catalog/v1/events", json=event, headers=auth_header(admin_token))
    assert resp.status_code in (200, 201), resp.text

    page = await curator.http.get(
        "/ui/",
        params={"q": corpus.scope, "interval": "month", "f.model": "incident-classifier"},
    )
    assert page.status_code == 200
    html = page.text
    series = html.split('id="severity-series"', 1)[1].split("</figure>", 1)[0]
    assert re.search(
        rf'<g class="event event-deploy"><title>deploy 2024-05-20 00:00: {title}', series
    )

    drift = html.split('id="drift"', 1)[1].split("</section>", 1)[0]
    # The corpus's AIID cases are spread over 1.0.0, 1.1.0 and 1.2.0: the newest two compare.
    assert "1.1.0 → 1.2.0" in drift
    assert re.search(r'<tr class="drift-(up|down|flat)" data-mode="[^"]+">', drift)
    shares = [float(x) for x in re.findall(r"<td>([\d.]+)% \(\d+\)</td>", drift)]
    assert shares and all(0 <= s <= 100 for s in shares)

    chosen = await curator.http.get(
        "/ui/", params={"q": corpus.scope, "from": "1.0.0", "to": "1.1.0"}
    )
    assert "1.0.0 → 1.1.0" in chosen.text

    # The corpus resolved one group (in 1.1.0) just now: this month's remediation row.
    remediation = html.split('id="remediation"', 1)[1].split("</section>", 1)[0]
    assert "incident-classifier" in remediation
