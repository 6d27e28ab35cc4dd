"""Committed changes, announced to every API process.

The indexer, draining the catalog's outbox, records what changed (`record_change`) in its own
transaction. On Postgres that is also a NOTIFY: Postgres delivers it when, and only if, the
transaction commits, to every process that listens (`ChangeFeed`), so subscribers on any API
process hear every change, whatever path made it (REST, GraphQL, the CLI) and whichever
process indexed it. SQLite serves a single process: there the database's after-commit hook
delivers in-process.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any

import orjson
from sqlalchemy import ARRAY, Text, func, literal, literal_column, select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db import CHANGES, Database

log = logging.getLogger("failcat.changes")

CHANNEL = "failcat_changes"
# NOTIFY payloads must stay under 8000 bytes: ids go out in chunks.
MAX_PAYLOAD = 7000
MAX_BACKOFF_S = 10.0

Listener = Callable[[dict[str, list[str]]], None]


async def record_change(session: AsyncSession, kind: str, ids: Iterable[str]) -> None:
    """Note what this unit of work changed; listeners hear it only once it commits."""
    ids = list(ids)
    if not ids:
        return
    session.info.setdefault(CHANGES, {}).setdefault(kind, []).extend(ids)
    if session.bind.dialect.name == "postgresql":
        # One round trip for all chunks; delivered by Postgres only if this transaction commits.
        payloads = func.unnest(literal(list(_payloads(kind, ids)), ARRAY(Text))).alias("p")
        await session.execute(
            select(func.pg_notify(CHANNEL, literal_column("p"))).select_from(payloads)
        )


def _payloads(kind: str, ids: list[str]) -> Iterable[str]:
    chunk: list[str] = []
    size = len(kind) + 20
    for i in ids:
        if chunk and size + len(i) + 3 > MAX_PAYLOAD:
            yield orjson.dumps({"kind": kind, "ids": chunk}).decode()
            chunk, size = [], len(kind) + 20
        chunk.append(i)
        size += len(i) + 3
    if chunk:
        yield orjson.dumps({"kind": kind, "ids": chunk}).decode()


class ChangeFeed:
    """Delivers committed changes to this process's listeners, from every process."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._listeners: list[Listener] = []
        self._task: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    async def start(self, wait_s: float = 5.0) -> None:
        if self.db.dialect != "postgresql":
            self.db.on_commit(self._deliver)
            self._listening.set()
            return
        self._task = asyncio.create_task(self._listen_forever(), name="change-feed")
        try:
            await asyncio.wait_for(self._listening.wait(), wait_s)
        except TimeoutError:
            log.warning("change feed not listening yet; it keeps retrying")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def _deliver(self, changes: dict[str, list[str]]) -> None:
        for listener in self._listeners:
            listener(changes)

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        message = orjson.loads(payload)
        self._deliver({message["kind"]: message["ids"]})

    async def _listen_forever(self) -> None:
        """One dedicated connection LISTENs; when it drops (Postgres restarted), reconnect."""
        import asyncpg

        dsn = self.db.url.replace("postgresql+asyncpg://", "postgresql://")
        backoff = 0.0
        while True:
            conn = None
            try:
                conn = await asyncpg.connect(dsn)
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _c, lost=lost: lost.set())
                await conn.add_listener(CHANNEL, self._on_notify)
                self._listening.set()
                backoff = 0.0
                await lost.wait()
                log.warning("change feed connection lost; reconnecting")
            except (OSError, asyncpg.PostgresError) as exc:
                backoff = min(MAX_BACKOFF_S, backoff * 2 or 0.5)
                log.warning("change feed cannot listen (%s); retrying in %.1fs", exc, backoff)
                await asyncio.sleep(backoff)
            finally:
                self._listening.clear()
                if conn is not None and not conn.is_closed():
                    await conn.close()
