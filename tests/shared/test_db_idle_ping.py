"""A pooled Postgres connection is pinged only after sitting idle (shared.db.IDLE_PING_S): a
busy connection skips the ping's round trips, and one that died while idle is replaced before
a request gets it."""

from __future__ import annotations

import asyncpg
import pytest
from sqlalchemy import text

from shared import db as shared_db
from shared.db import Database
from tests.conftest import postgres_url


async def _backend_pid(database: Database) -> int:
    async with database.transaction() as s:
        return (await s.execute(text("SELECT pg_backend_pid()"))).scalar_one()


async def _terminate(pid: int) -> None:
    conn = await asyncpg.connect(postgres_url().replace("postgresql+asyncpg://", "postgresql://"))
    try:
        assert await conn.fetchval("SELECT pg_terminate_backend($1)", pid)
    finally:
        await conn.close()


@pytest.fixture
async def one_connection_pool():
    database = Database(postgres_url(), pool_size=1, max_overflow=0)
    yield database
    await database.dispose()


async def test_a_connection_killed_while_idle_is_replaced_before_use(
    one_connection_pool: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = await _backend_pid(one_connection_pool)
    await _terminate(first)
    monkeypatch.setattr(shared_db, "IDLE_PING_S", 0.0)  # every checkout counts as idle
    second = await _backend_pid(one_connection_pool)
    assert second != first


async def test_a_busy_connection_is_not_pinged(one_connection_pool: Database) -> None:
    pid = await _backend_pid(one_connection_pool)
    # Used a moment ago, so the next checkout skips the ping: a connection that died in
    # between surfaces as a database error on its first statement (answered 503), not as
    # a silent reconnect, which proves no ping ran.
    await _terminate(pid)
    with pytest.raises(Exception) as failure:
        await _backend_pid(one_connection_pool)
    assert shared_db.database_unreachable(failure.value)
    assert await _backend_pid(one_connection_pool) != pid  # the pool then replaced it
