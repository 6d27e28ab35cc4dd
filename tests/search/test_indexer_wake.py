"""The indexer wakes on this process's commits that wrote the outbox, and polls for the rest.

Writes made by this process (its API, its jobs) wake the indexer as they commit; writes made
elsewhere (a CLI job, another API worker) are found by a poll that slows down, from
indexer_poll_s up to IDLE_POLL_MAX_S, while nothing comes. Both backends.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from services.catalog import service as catalog
from services.search import service as search_service
from services.search.service import SearchService
from shared.db import Database
from shared.migrate import upgrade_async
from shared.security import SYSTEM
from tests.conftest import make_settings
from tests.corpus import aiid_cases
from tests.search.builders import outbox_size


class Indexer:
    """A search service whose indexer runs in the background, its drains counted."""

    def __init__(self, service: SearchService) -> None:
        self.service = service
        self.drains = 0
        drain = service._drain_batch

        async def counted() -> int:
            self.drains += 1
            return await drain()

        service._drain_batch = counted  # type: ignore[method-assign]
        self.task = asyncio.create_task(service.run_indexer())


@pytest.fixture
async def indexer(
    backend: str, tmp_path: Path
) -> AsyncIterator[Callable[[float], Awaitable[Indexer]]]:
    started: list[tuple[Indexer, Database]] = []

    async def start(poll_s: float) -> Indexer:
        settings = await make_settings(backend, tmp_path, indexer_poll_s=poll_s)
        await upgrade_async(settings.catalog_url)
        db = Database(settings.catalog_url)
        running = Indexer(await SearchService.start(settings, db))
        started.append((running, db))
        return running

    yield start
    for running, db in started:
        running.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running.task
        await running.service.backend.drop()
        await db.dispose()


async def ingest(db: Database, n: int) -> None:
    async with db.transaction() as s:
        results = await catalog.ingest_cases(s, aiid_cases(n), SYSTEM)
    assert all(r.id for r in results)


async def outbox_drained_within(db: Database, seconds: float) -> float:
    """Seconds until the outbox is empty; fails after `seconds`."""
    begun = time.monotonic()
    while time.monotonic() - begun < seconds:
        async with db.transaction() as s:
            if await outbox_size(s) == 0:
                return time.monotonic() - begun
        await asyncio.sleep(0.02)
    raise AssertionError(f"the outbox was not drained within {seconds} s")


async def test_a_commit_that_writes_the_outbox_wakes_the_indexer(indexer):
    # A poll of 30 s: only the wake can index these within the 10 s allowed.
    running = await indexer(30.0)
    await asyncio.sleep(0.5)  # the first drain (of nothing) is done; the indexer waits
    assert running.drains == 1
    await ingest(running.service.db, 3)
    await outbox_drained_within(running.service.db, 10)
    await running.service.backend.refresh()
    found = await running.service.search(SYSTEM, "", first=10)
    assert found.total == 3
    drains = running.drains

    # The other writer of the outbox: an event re-queues the cases it now precedes.
    first = aiid_cases(1)[0]
    occurred = datetime.fromisoformat(first["occurred_at"]) - timedelta(hours=1)
    scope = {"model": first["model"]["name"], "version": first["model"]["version"]}
    event = {"kind": "deploy", "occurred_at": occurred, "scope": scope}
    async with running.service.db.transaction() as s:
        [recorded] = await catalog.record_events(s, [event], SYSTEM)
        assert recorded.status == "created", recorded.errors
        assert await outbox_size(s) > 0  # queued, not yet committed
    await outbox_drained_within(running.service.db, 10)
    assert running.drains > drains


async def test_an_idle_indexer_polls_less_and_less(indexer):
    running = await indexer(0.05)
    await asyncio.sleep(2.0)
    # At a steady 0.05 s that would be 40 drains; doubling: 0.05, 0.1, 0.2, 0.4, 0.8, 1.0.
    assert 2 <= running.drains <= 8, running.drains


async def test_another_process_s_writes_are_found_by_the_poll(indexer, monkeypatch):
    monkeypatch.setattr(search_service, "IDLE_POLL_MAX_S", 0.5)
    running = await indexer(0.05)
    await asyncio.sleep(1.5)  # idle: the poll has slowed to its longest
    elsewhere = Database(running.service.db.url)  # another process's: nobody listens to it
    try:
        await ingest(elsewhere, 2)
    finally:
        await elsewhere.dispose()
    waited = await outbox_drained_within(running.service.db, 10)
    assert running.drains >= 3
    assert waited < 5, waited
