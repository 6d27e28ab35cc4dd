"""The embedded index's read pool: a read runs whole in a worker thread, and its reader goes
back to the pool only when that thread is done with it (a cancelled request included)."""

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
