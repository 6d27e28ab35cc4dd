"""Small async builders for catalog tests."""

from __future__ import annotations

import copy
import secrets
from typing import Any

from services.catalog import service
from shared.security import SYSTEM, Principal
from tests.corpus import aiid_cases


def unique(cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Corpus cases made unique to one test (the session database is shared)."""
    salt = secrets.token_hex(4)
    out = copy.deepcopy(cases)
    for c in out:
        c["external_id"] = f"{c['external_id']}-{salt}"
        c["data_source"] = f"{c['data_source']}-{salt}"
        c.setdefault("provenance", {})["source"] = f"src-{salt}"
    return out


async def ingest(
    session: Any, cases: list[dict[str, Any]], actor: Principal = SYSTEM, **kw: Any
) -> list[str]:
    results = await service.ingest_cases(session, cases, actor, **kw)
    assert all(r.status == "created" for r in results), [
        r for r in results if r.status != "created"
    ]
    return [r.id for r in results]


async def a_case(session: Any, **overrides: Any) -> str:
    case = unique(aiid_cases(1))[0]
    case.update(overrides)
    [case_id] = await ingest(session, [case])
    return case_id
