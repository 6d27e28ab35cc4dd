"""The embedded index's connections: one writer behind a lock, a few readers in a queue.

WAL mode lets the readers keep answering from the last committed state while the writer
works; each reader has its own temp table `m` for the matching set of the search it runs.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import aiosqlite

READERS = 4
PRAGMAS = (
    "journal_mode=WAL",
    "synchronous=NORMAL",
    "busy_timeout=30000",
    "temp_store=MEMORY",
    "cache_size=-65536",
    "mmap_size=268435456",
)


class Pool:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.writer: aiosqlite.Connection | None = None
        self._write_lock = asyncio.Lock()
        self._readers: asyncio.Queue[aiosqlite.Connection] = asyncio.Queue()
        self._all_readers: list[aiosqlite.Connection] = []

    @property
    def open(self) -> bool:
        return bool(self._all_readers)

    async def _connect(self) -> aiosqlite.Connection:
        conn = await aiosqlite.connect(self.path, isolation_level=None)
        for pragma in PRAGMAS:
            await conn.execute(f"PRAGMA {pragma}")
        return conn

    async def open_writer(self) -> aiosqlite.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.writer = await self._connect()
        return self.writer

    async def open_readers(self) -> None:
        for _ in range(READERS):
            conn = await self._connect()
            # Per connection: the matching rowids of the search running on it.
            await conn.execute("CREATE TEMP TABLE m (pk INTEGER PRIMARY KEY, score REAL)")
            self._all_readers.append(conn)
            self._readers.put_nowait(conn)

    async def close(self) -> None:
        for conn in [*self._all_readers, *([self.writer] if self.writer else [])]:
            await conn.close()
        self._all_readers.clear()
        self._readers = asyncio.Queue()
        self.writer = None

    @contextlib.asynccontextmanager
    async def reader(self) -> AsyncIterator[aiosqlite.Connection]:
        conn = await self._readers.get()
        try:
            yield conn
        finally:
            self._readers.put_nowait(conn)

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[aiosqlite.Connection]:
        """One write transaction; the lock keeps a rebuild and the indexer from interleaving."""
        assert self.writer is not None, "ensure_ready() first"
        async with self._write_lock:
            await self.writer.execute("BEGIN IMMEDIATE")
            try:
                yield self.writer
            except BaseException:
                await self.writer.execute("ROLLBACK")
                raise
            await self.writer.execute("COMMIT")
