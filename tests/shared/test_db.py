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


async def test_a_sqlite_statement_is_one_trip_to_the_driver_thread(db, monkeypatch):
    """shared.sqlite_onehop: a statement (cursor, execute, fetch, close) is one call on
    aiosqlite's thread, and what SQLAlchemy reads from the cursor is what sqlite3 reported:
    rows, rowcount of an UPDATE and an executemany, lastrowid, errors."""
    import aiosqlite

    trips: list[str] = []
    execute = aiosqlite.Connection._execute

    async def counted(self, fn, *args, **kwargs):
        trips.append(getattr(fn, "__name__", repr(fn)))
        return await execute(self, fn, *args, **kwargs)

    monkeypatch.setattr(aiosqlite.Connection, "_execute", counted)
    async with db.transaction() as s:
        trips.clear()
        rows = (await s.execute(text("SELECT 1 UNION ALL SELECT 2"))).scalars().all()
        assert rows == [1, 2] and trips == ["_run"]
        many = await s.execute(text("INSERT INTO t (v) VALUES (:v)"), [{"v": "m1"}, {"v": "m2"}])
        assert many.rowcount == 2
        one = await s.execute(text("INSERT INTO t (v) VALUES ('one')"))
        assert one.lastrowid == (await s.execute(text("SELECT max(id) FROM t"))).scalar()
        updated = await s.execute(text("UPDATE t SET v = v || '?' WHERE v LIKE 'm%'"))
        assert updated.rowcount == 2
        assert trips == ["_run"] * 5
        with pytest.raises(OperationalError):
            await s.execute(text("SELECT * FROM no_such_table"))


def test_the_one_hop_cursor_uses_what_it_relies_on():
    """The private parts shared.sqlite_onehop reaches (a library upgrade that moves them
    fails here, naming the part)."""
    import aiosqlite
    from sqlalchemy.connectors.asyncio import AsyncAdapt_dbapi_cursor

    from shared.sqlite_onehop import OneHopConnection, OneHopCursor

    assert callable(aiosqlite.Connection._execute), "aiosqlite.Connection._execute"
    assert isinstance(aiosqlite.Connection._conn, property), "aiosqlite.Connection._conn"
    assert isinstance(aiosqlite.Connection.in_transaction, property), "in_transaction"
    for slot in ("_adapt_connection", "_connection", "_cursor", "_rows", "_soft_closed_memoized"):
        assert slot in AsyncAdapt_dbapi_cursor.__slots__, slot
    for name in ("_execute_async", "_executemany_async", "_async_soft_close", "close"):
        assert name in vars(AsyncAdapt_dbapi_cursor), name
    assert OneHopConnection._cursor_cls is OneHopCursor
