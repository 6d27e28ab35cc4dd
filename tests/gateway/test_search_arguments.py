"""Query.search's arguments reach the search service as REST's do (the heatmap took three
values where the service takes two fields, and every heatmap was refused)."""

from __future__ import annotations

import asyncio

from tests.gateway.helpers import codes, data, gql, ingest_corpus

HEATMAP = """query($q: String!, $heatmap: HeatmapInput) {
  search(query: $q, heatmap: $heatmap) { total heatmap { x y count } }
}"""


async def test_heatmap_of_two_fields(client, admin_token):
    ids = await ingest_corpus(client, admin_token, 3)
    variables = {
        "q": " OR ".join(f"id:{i}" for i in ids),
        "heatmap": {"x": "severity", "y": "model_version"},
    }
    for _ in range(100):  # until the indexer has taken the three cases
        search = data(await gql(client, admin_token, HEATMAP, variables))["search"]
        if search["total"] == 3:
            break
        await asyncio.sleep(0.1)
    # The corpus cases are S0, S1, S2 of versions 1.0.0, 1.1.0, 1.2.0.
    assert sorted((c["x"], c["y"], c["count"]) for c in search["heatmap"]) == [
        ("S0", "1.0.0", 1),
        ("S1", "1.1.0", 1),
        ("S2", "1.2.0", 1),
    ]


async def test_a_heatmap_size_other_than_the_services_is_refused(client, admin_token):
    body = await gql(
        client,
        admin_token,
        HEATMAP,
        {"q": "", "heatmap": {"x": "severity", "y": "team", "size": 5}},
    )
    assert codes(body) == ["BAD_USER_INPUT"]
    assert body["errors"][0]["extensions"]["errors"][0]["path"] == "heatmap.size"
