"""Query filters and keyset pagination of the catalog listing."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

from services.catalog import service
from services.catalog.schemas import CaseFilter
from shared.security import SYSTEM
from tests.catalog.builders import ingest, unique
from tests.corpus import aiid_cases


async def listed(session, **filters) -> list[str]:
    rows = await service.list_cases(session, CaseFilter(**filters), SYSTEM, 500, None)
    return [r.id for r in rows]


async def test_every_filter_narrows_to_the_matching_cases(session):
    tag = "t-" + secrets.token_hex(3)
    model = "m-" + secrets.token_hex(3)
    cases = unique(aiid_cases(20, model=model, tag=tag))
    for i, c in enumerate(cases):
        c["environment"] = {"region": "eu-west-1" if i % 2 else "us-east-1"}
        c["team"] = "fraud" if i % 4 == 0 else "search"
        c["sensitivity"] = "confidential" if i % 5 == 0 else "internal"
    ids = await ingest(session, cases)
    by = dict(zip(ids, cases, strict=True))
    mine = set(ids)

    def expect(pred) -> set[str]:
        return {i for i, c in by.items() if pred(c)}

    assert set(await listed(session, tags=[tag])) == mine
    assert set(await listed(session, model=model)) == mine
    assert set(await listed(session, model=model, model_version="1.1.0")) == expect(
        lambda c: c["model"]["version"] == "1.1.0"
    )
    assert set(await listed(session, tags=[tag], failure_mode="safety")) == expect(
        lambda c: c.get("failure_mode", "").startswith("safety")
    )
    assert set(await listed(session, tags=[tag], failure_mode="robustness.input_noise")) == expect(
        lambda c: c.get("failure_mode") == "robustness.input_noise"
    )
    assert set(await listed(session, tags=[tag], severity_min="S1", severity_max="S2")) == expect(
        lambda c: c["severity"] in ("S1", "S2")
    )
    assert set(await listed(session, tags=[tag], team="fraud")) == expect(
        lambda c: c["team"] == "fraud"
    )
    assert set(await listed(session, tags=[tag], sensitivity=["confidential"])) == expect(
        lambda c: c["sensitivity"] == "confidential"
    )
    assert set(await listed(session, tags=[tag], environment={"region": "eu-west-1"})) == expect(
        lambda c: c["environment"]["region"] == "eu-west-1"
    )
    assert set(await listed(session, tags=[tag], status=["new"])) == mine
    assert set(await listed(session, tags=[tag], status=["resolved"])) == set()
    start, end = datetime(2016, 1, 1, tzinfo=UTC), datetime(2018, 1, 1, tzinfo=UTC)
    assert set(
        await listed(session, tags=[tag], occurred_after=start, occurred_before=end)
    ) == expect(lambda c: "2016" <= c["occurred_at"][:4] < "2018")
    assert set(await listed(session, data_source=cases[0]["data_source"])) == mine


async def test_keyset_pages_are_stable_while_cases_arrive(session):
    tag = "p-" + secrets.token_hex(3)
    ids = await ingest(session, unique(aiid_cases(25, tag=tag)))
    f = CaseFilter(tags=[tag])
    seen: list[str] = []
    after = None
    while True:
        page = await service.list_cases(session, f, SYSTEM, 7, after)
        seen += [c.id for c in page]
        if len(page) < 7:
            break
        after = (page[-1].occurred_at, page[-1].id)
        # A newer case arriving mid-walk must not shift or repeat what follows.
        [newer] = unique(aiid_cases(1, tag=tag))
        newer["occurred_at"] = datetime.now(UTC).isoformat()
        await ingest(session, [newer])
    assert sorted(seen) == sorted(ids)
    assert len(seen) == len(set(seen))
