"""Database.transaction commits through Database.commit: on SQLite an audited unit of work
takes the process's writer turn (REST reads queue there as GraphQL's do), and one that has
written already commits without it (the turn's holder may be waiting for its lock)."""

from __future__ import annotations

import asyncio
import secrets

import pytest
from sqlalchemy import func, select, text

from services.audit.models import AuditEntry
from shared.audit import audit
from shared.db import Database
from shared.migrate import upgrade_async
from tests.catalog.builders import unique
from tests.conftest import auth_header, make_settings
from tests.corpus import aiid_cases
from tests.gateway.helpers import ingest_corpus

BULK = "/catalog/v1/cases:bulk"


@pytest.fixture
async def sqlite_db(tmp_path):
    """A migrated SQLite database of the test's own: the writer turn is SQLite's (Postgres
    admits concurrent writers), so these run once, not per backend."""
    settings = await make_settings("embedded", tmp_path / "data")
    await upgrade_async(settings.catalog_url)
    database = Database(settings.catalog_url)
    try:
        yield database
    finally:
        await database.dispose()


async def _entries(db, actor: str, action: str) -> int:
    async with db.transaction() as s:
        stmt = select(func.count()).select_from(AuditEntry)
        stmt = stmt.where(AuditEntry.actor_subject == actor, AuditEntry.action == action)
        return (await s.execute(stmt)).scalar_one()


async def test_an_audited_transaction_waits_for_the_writer_turn(sqlite_db):
    db = sqlite_db
    actor = f"turn-{secrets.token_hex(3)}"
    committed = asyncio.Event()

    async def audited_read() -> None:
        async with db.transaction() as s:
            await s.execute(text("SELECT 1"))
            audit(s, actor, "test.read", "case:x", read=True)
        committed.set()

    async with db._writer:  # another writer's turn
        task = asyncio.create_task(audited_read())
        await asyncio.sleep(0.3)
        assert not committed.is_set(), "the audited commit did not queue for the writer turn"
    await asyncio.wait_for(task, 10)
    assert await _entries(db, actor, "test.read") == 1


async def test_a_transaction_that_wrote_commits_without_queueing(sqlite_db):
    """Otherwise: it holds SQLite's write lock and waits for the turn, while the turn's holder
    waits in the busy handler (30 s) for that lock."""
    db = sqlite_db
    actor = f"wrote-{secrets.token_hex(3)}"

    async def audited_write() -> None:
        async with db.transaction() as s:
            await s.execute(
                text("UPDATE audit_head SET seq = seq WHERE id = 1")
            )  # takes the write lock, changes nothing
            audit(s, actor, "test.write", "case:x")

    async with db._writer:
        await asyncio.wait_for(audited_write(), 10)
    assert await _entries(db, actor, "test.write") == 1


async def test_concurrent_audited_rest_reads_and_writes_all_succeed_with_entries(
    client, token_for, db, backend
):
    token = await token_for("cases:ingest cases:read")
    [case_id] = await ingest_corpus(client, token, 1)
    me = (await client.get(f"/catalog/v1/cases/{case_id}", headers=auth_header(token))).status_code
    assert me == 200
    async with db.transaction() as s:
        [subject] = (
            await s.execute(
                select(AuditEntry.actor_subject)
                .where(AuditEntry.action == "case.read", AuditEntry.target == f"case:{case_id}")
                .limit(1)
            )
        ).one()
    reads_before = await _entries(db, subject, "case.read")
    ingests_before = await _entries(db, subject, "cases.ingest")

    n_reads, n_writes = 32, 8
    batches = [unique(aiid_cases(3)) for _ in range(n_writes)]
    calls = [
        client.get(f"/catalog/v1/cases/{case_id}", headers=auth_header(token))
        for _ in range(n_reads)
    ] + [client.post(BULK, json=b, headers=auth_header(token)) for b in batches]
    answers = await asyncio.gather(*calls)
    assert [a.status_code for a in answers] == [200] * (n_reads + n_writes), [
        a.text for a in answers if a.status_code != 200
    ]
    for a in answers[n_reads:]:
        assert a.json()["counts"]["created"] == 3
    assert await _entries(db, subject, "case.read") == reads_before + n_reads
    assert await _entries(db, subject, "cases.ingest") == ingests_before + n_writes
