"""`after_event:<kind>` end to end on both stacks: cases indexed before an event are re-queued
when it is recorded and found after the indexer runs; cases ingested after an event carry it
from their first indexing. Real AIID incidents."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from services.catalog import service as catalog
from services.search.service import SearchService
from shared.db import Database
from shared.errors import BadUserInput
from shared.migrate import upgrade_async
from shared.security import SYSTEM
from tests.catalog.builders import ingest, unique
from tests.conftest import make_settings
from tests.corpus import aiid_cases

T0 = datetime(2026, 9, 1, 8, 0, tzinfo=UTC)


def iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


@pytest.fixture(scope="module")
async def search(
    backend: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[SearchService]:
    settings = await make_settings(
        backend, tmp_path_factory.mktemp("context-events"), indexer_batch=5
    )
    await upgrade_async(settings.catalog_url)
    db = Database(settings.catalog_url)
    svc = await SearchService.start(settings, db)
    yield svc
    await svc.backend.drop()
    await db.dispose()


async def settle(svc: SearchService) -> None:
    await svc.drain_outbox()
    await svc.backend.refresh()


async def found(svc: SearchService, query: str) -> set[str]:
    return {h.id for h in (await svc.search(SYSTEM, query, first=100)).hits}


async def test_after_event_finds_cases_in_the_window_after_an_event_of_their_scope(search):
    model = f"incident-classifier-{secrets.token_hex(3)}"
    cases = unique(aiid_cases(12, model=model))
    for i, c in enumerate(cases):
        c["model"] = {"name": model, "version": "4.0" if i < 8 else "3.9"}
        c["occurred_at"] = iso(T0 + timedelta(days=i))  # one a day for 12 days
    async with search.db.transaction() as s:
        ids = await ingest(s, cases)
    await settle(search)
    assert await found(search, f'model:"{model}" after_event:deploy') == set()

    # Recorded after the cases were indexed: 4.0 rolled out just before the first case.
    async with search.db.transaction() as s:
        results = await catalog.record_events(
            s,
            [
                {
                    "kind": "deploy",
                    "occurred_at": iso(T0 - timedelta(hours=1)),
                    "scope": {"model": model, "version": "4.0"},
                    "link": "https://deploy.example/releases/4.0",
                    "details": {"rollout": "100%"},
                }
            ],
            SYSTEM,
        )
    assert results[0].status == "created"
    await settle(search)
    # Days 0..6 are within 7 days after it; day 7 is 7 days and 1 hour after; 8.. are 3.9.
    assert await found(search, f'model:"{model}" after_event:deploy') == set(ids[:7])
    assert await found(search, f'model:"{model}" -after_event:deploy') == set(ids[7:])
    res = await search.search(SYSTEM, f'model:"{model}"', facets=["after_event"], first=1)
    assert [(b.value, b.count) for b in res.facets["after_event"]] == [("deploy", 7)]
    # Text search and the filter together: the real titles are still what is searched.
    titled = cases[0]["title"].split()[0]
    assert ids[0] in await found(search, f'model:"{model}" after_event:deploy {titled}')

    # An event recorded before a case is indexed reaches it on its first indexing.
    async with search.db.transaction() as s:
        await catalog.record_events(
            s,
            [
                {
                    "kind": "drift_alert",
                    "occurred_at": iso(T0 + timedelta(days=20)),
                    "scope": {"model": model},
                    "details": {"metric": "psi", "value": 0.35, "threshold": 0.25},
                }
            ],
            SYSTEM,
        )
        late = unique(aiid_cases(1, model=model))[0]
        late["occurred_at"] = iso(T0 + timedelta(days=21))
        [late_id] = await ingest(s, [late])
    await settle(search)
    assert await found(search, f'model:"{model}" after_event:drift_alert') == {late_id}
    assert await found(search, "after_event:DRIFT_ALERT") >= {late_id}  # any case spelling

    # A full rebuild from the catalog keeps the field (documents built in batches of 5).
    await search.reindex()
    await search.backend.refresh()
    assert await found(search, f'model:"{model}" after_event:deploy') == set(ids[:7])


async def test_after_event_takes_only_the_kinds_there_are(search):
    with pytest.raises(BadUserInput) as err:
        search.build_request(SYSTEM, "after_event:rollback")
    assert "after_event" in str(err.value.errors)


async def test_cases_at_the_ends_of_time_are_indexed_and_so_is_what_follows(search):
    """A case dated in year 1 (or 9999) is valid input; the event window around it once
    overflowed, and the indexer retried that batch for ever: nothing after it was ever
    searchable. An event in year 1 re-queues its window without overflowing either."""
    model = f"edge-dates-{secrets.token_hex(3)}"
    cases = unique(aiid_cases(3, model=model))
    for c, at in zip(cases, ("0001-01-01T00:00:01Z", "9999-12-31T23:59:58Z", None), strict=True):
        c["model"] = {"name": model, "version": "1.0"}
        c["occurred_at"] = at
    async with search.db.transaction() as s:
        ids = await ingest(s, cases)
    await settle(search)
    assert await found(search, f'model:"{model}"') == set(ids)
    async with search.db.transaction() as s:
        results = await catalog.record_events(
            s,
            [
                {
                    "kind": "deploy",
                    "occurred_at": "0001-01-01T00:00:01Z",
                    "scope": {"model": model, "version": "1.0"},
                }
            ],
            SYSTEM,
        )
    assert [r.status for r in results] == ["created"]
    await settle(search)
    assert ids[0] in await found(search, f'model:"{model}" after_event:deploy')
