"""The embedded index's connections: one writer behind a lock, a few readers in a queue.

WAL mode lets the readers keep answering from the last committed state while the writer
works; each reader has its own temp table `m` for the matching set of the search it runs.

Readers are plain sqlite3 connections, and a read runs whole in one worker thread
(`Pool.read`): a search is a dozen statements, and through aiosqlite each would be a hop to
its thread and back, which cost more than the statements themselves on a small index.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import aiosqlite

T = TypeVar("T")

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
        self._readers: asyncio.Queue[sqlite3.Connection] = asyncio.Queue()
        self._all_readers: list[sqlite3.Connection] = []
        self._threads: ThreadPoolExecutor | None = None

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

    def _connect_reader(self) -> sqlite3.Connection:
        # check_same_thread=False: a reader moves between the pool's threads, but only one
        # read at a time uses it (it is out of the queue meanwhile).
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        for pragma in PRAGMAS:
            conn.execute(f"PRAGMA {pragma}")
        # Per connection: the matching rowids of the search running on it.
        conn.execute("CREATE TEMP TABLE m (pk INTEGER PRIMARY KEY, score REAL)")
        # Documents a query excludes, while m holds the matching set (counts.py).
        conn.execute("CREATE TEMP TABLE x (pk INTEGER PRIMARY KEY)")
        # Each word's document frequency in the unstemmed index (similar.py's key terms).
        conn.execute("CREATE VIRTUAL TABLE temp.plain_vocab USING fts5vocab(main, doc_plain, row)")
        return conn

    async def open_readers(self) -> None:
        self._threads = ThreadPoolExecutor(READERS, thread_name_prefix="failcat-search-read")
        loop = asyncio.get_running_loop()
        for _ in range(READERS):
            conn = await loop.run_in_executor(self._threads, self._connect_reader)
            self._all_readers.append(conn)
            self._readers.put_nowait(conn)

    async def close(self) -> None:
        if self.writer is not None:
            await self.writer.close()
        if self._threads is not None:
            self._threads.shutdown(wait=True)  # reads in progress finish first
            self._threads = None
        for conn in self._all_readers:
            conn.close()
        self._all_readers.clear()
        self._readers = asyncio.Queue()
        self.writer = None

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """`fn(connection)` on a free reader, in one of the pool's threads."""
        if self._threads is None:
            raise ValueError("the search index is closed")
        conn = await self._readers.get()
        try:
            future = asyncio.get_running_loop().run_in_executor(self._threads, fn, conn)
        except BaseException:
            self._readers.put_nowait(conn)
            raise
        # The reader goes back when the thread is done with it, not when the caller stops
        # waiting: a cancelled request must not hand a busy connection to the next one.
        future.add_done_callback(lambda _: self._readers.put_nowait(conn))
        return await asyncio.shield(future)

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
