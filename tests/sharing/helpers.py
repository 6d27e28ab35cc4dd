"""A small world for the discussion and lesson tests: two teams' cases and groups."""

from __future__ import annotations

import secrets
from typing import Any

from tests.gateway.helpers import data, gql, ingest_corpus

EVERY = "cases:read cases:write cases:ingest annotations:write reviews:write plans:read plans:write"
GROUP_OF = "query($id: ID!) { case(id: $id) { group { id } } }"


async def world(client: Any, token_for: Any, n: int = 3) -> dict[str, Any]:
    """`n` cases of team A (each its own group) and one of team B; an A and a B caller."""
    salt = secrets.token_hex(3)
    team_a, team_b = f"share-a-{salt}", f"share-b-{salt}"
    a = await token_for(EVERY, team=team_a, clearance="restricted")
    b = await token_for(EVERY, team=team_b, clearance="restricted")
    model = f"share-model-{salt}"
    ids = []
    for i in range(n):
        ids += await ingest_corpus(
            client,
            a,
            1,
            team=team_a,
            model={"name": model, "version": "1.0"},
            fingerprint=f"share-{salt}-{i}",
        )
    [hidden] = await ingest_corpus(
        client,
        b,
        1,
        team=team_b,
        model={"name": model, "version": "1.0"},
        fingerprint=f"share-{salt}-b",
    )
    groups = [data(await gql(client, a, GROUP_OF, {"id": i}))["case"]["group"]["id"] for i in ids]
    hidden_group = data(await gql(client, b, GROUP_OF, {"id": hidden}))["case"]["group"]["id"]
    return {
        "salt": salt,
        "model": model,
        "a": a,
        "b": b,
        "cases": ids,
        "groups": groups,
        "hidden_case": hidden,
        "hidden_group": hidden_group,
    }
