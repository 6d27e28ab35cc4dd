"""Database.transaction(): one unit of work, committed on success and rolled back on error,
with driver errors surfacing as SQLAlchemy's."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, OperationalError

from shared.db import Database


@pytest.fixture
async def db(tmp_path):
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    async with database.transaction() as s:
        await s.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT UNIQUE)"))
    yield database
    await database.dispose()


async def test_writes_commit_and_roll_back(db):
    async with db.transaction() as s:
        await s.execute(text("INSERT INTO t (v) VALUES (:v)"), [{"v": "a"}, {"v": "b"}])
        result = await s.execute(text("UPDATE t SET v = v || '!' WHERE v IN ('a', 'b')"))
        assert result.rowcount == 2
        inserted = await s.execute(text("INSERT INTO t (v) VALUES ('c') RETURNING id, v"))
        assert inserted.one().v == "c"
    with pytest.raises(RuntimeError):
        async with db.transaction() as s:
            await s.execute(text("INSERT INTO t (v) VALUES ('lost')"))
            raise RuntimeError
    async with db.transaction() as s:
        rows = (await s.execute(text("SELECT v FROM t ORDER BY id"))).scalars()
        assert list(rows) == ["a!", "b!", "c"]
        result = await s.execute(text("SELECT v FROM t ORDER BY id"))
        assert result.fetchone() == ("a!",)
        assert result.fetchmany(5) == [("b!",), ("c",)]
        assert result.fetchone() is None


async def test_driver_errors_are_sqlalchemy_errors(db):
    with pytest.raises(IntegrityError):
        async with db.transaction() as s:
            await s.execute(text("INSERT INTO t (v) VALUES ('x'), ('x')"))
    with pytest.raises(OperationalError):
        async with db.transaction() as s:
            await s.execute(text("SELECT nope FROM t"))
    async with db.transaction() as s:  # the connection is still usable
        assert (await s.execute(text("SELECT count(*) FROM t"))).scalar() == 0


async def test_commit_listeners_hear_recorded_changes_only_after_commit(db):
    from shared.changes import record_change

    heard: list[dict] = []
    db.on_commit(heard.append)
    async with db.transaction() as s:
        await record_change(s, "ingested", ["a", "b"])
        await record_change(s, "changed", ["c"])
        assert heard == []  # not before the commit
    assert heard == [{"ingested": ["a", "b"], "changed": ["c"]}]
    with pytest.raises(RuntimeError):
        async with db.transaction() as s:
            await record_change(s, "changed", ["lost"])
            raise RuntimeError
    async with db.transaction() as s:
        await s.execute(text("SELECT 1"))  # a commit with nothing recorded
    assert heard == [{"ingested": ["a", "b"], "changed": ["c"]}]


async def test_a_committed_sqlite_connection_goes_back_without_a_rollback(db, monkeypatch):
    """The pool rolls back on return only what is still open: after a commit, no trip to
    aiosqlite's thread for a rollback; a connection returned inside a write transaction it
    began itself (behind SQLAlchemy's back) is rolled back, its write gone, the file free."""
    from sqlalchemy.dialects.sqlite.aiosqlite import AsyncAdapt_aiosqlite_connection

    rollbacks: list[object] = []
    rollback = AsyncAdapt_aiosqlite_connection.rollback

    def counted(self):
        rollbacks.append(self)
        return rollback(self)

    monkeypatch.setattr(AsyncAdapt_aiosqlite_connection, "rollback", counted)
    for _ in range(3):
        async with db.transaction() as s:
            await s.execute(text("INSERT INTO t (v) VALUES (hex(randomblob(8)))"))
    assert rollbacks == []

    async with db.engine.connect() as conn:
        driver = (await conn.get_raw_connection()).driver_connection
        await driver.execute("INSERT INTO t (v) VALUES ('uncommitted')")
        assert driver.in_transaction
    assert len(rollbacks) == 1
    async with db.transaction() as s:
        assert (
            await s.execute(text("SELECT count(*) FROM t WHERE v = 'uncommitted'"))
        ).scalar() == 0
        await s.execute(text("INSERT INTO t (v) VALUES ('next writer')"))
