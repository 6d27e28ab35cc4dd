"""Search's concurrency: the embedded index runs a read whole in a worker thread and gets its
reader back only when that thread is done with it (a cancelled request included); a search
request's session connects beside the index request and is never left mid-checkout."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from services.search.backends.embedded import EmbeddedBackend
from services.search.backends.embedded.pool import READERS


async def test_a_cancelled_read_keeps_its_reader_until_the_thread_is_done(tmp_path: Path) -> None:
    backend = EmbeddedBackend(tmp_path / "search.db")
    await backend.ensure_ready()
    pool = backend.pool
    started, release = threading.Event(), threading.Event()
    used: list[object] = []

    def slow(conn: object) -> int:
        used.append(conn)
        started.set()
        release.wait(10)
        return 1

    try:
        task = asyncio.create_task(pool.read(slow))
        await asyncio.to_thread(started.wait, 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # The statement is still running on that reader: no other read may be given it.
        others = await asyncio.gather(*(pool.read(lambda c: c) for _ in range(READERS * 3)))
        assert used[0] not in others
        release.set()
        for _ in range(100):
            if pool._readers.qsize() == READERS:
                break
            await asyncio.sleep(0.01)
        assert pool._readers.qsize() == READERS
        # Reads still answer from the index afterwards.
        assert await backend.revisions() == {}
    finally:
        release.set()
        await backend.drop()


async def test_a_read_after_close_is_refused(tmp_path: Path) -> None:
    backend = EmbeddedBackend(tmp_path / "search.db")
    await backend.ensure_ready()
    await backend.drop()
    assert await backend.ping() is False


async def test_alongside_waits_for_its_side_task_even_when_the_work_fails() -> None:
    """The search's session connects beside the index request (shared.web.alongside): when
    the search fails, the connect must be over before the request's rollback runs."""
    from shared.web import alongside

    done: list[str] = []

    async def connect() -> None:
        await asyncio.sleep(0.05)
        done.append("connected")

    async def failing_search() -> None:
        raise ValueError("index refused")

    with pytest.raises(ValueError, match="index refused"):
        await alongside(connect(), failing_search())
    assert done == ["connected"]

    async def search() -> str:
        return "hits"

    assert await alongside(connect(), search()) == "hits"
    assert done == ["connected", "connected"]
