"""Database engine, column types and the one-transaction-per-unit-of-work session."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import JSON, DateTime, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session
from sqlalchemy.types import TypeDecorator
from sqlmodel import SQLModel

from shared import pg_deferred_begin, sqlite_onehop
from shared.errors import BadUserInput, FailcatError, Unavailable

# Constraint names are stable across backends, so migrations can refer to them.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = SQLModel.metadata

# JSONB on Postgres (indexable, @> containment), JSON text on SQLite.
JSONType = JSON().with_variant(JSONB(), "postgresql")


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on both backends (SQLite has no timezone type)."""

    impl = DateTime
    cache_ok = True

    def __init__(self, timezone: bool = True) -> None:
        super().__init__(timezone=True)

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    def result_processor(self, dialect: Any, coltype: Any) -> Any:
        # asyncpg decodes timestamptz as aware datetimes in UTC already: nothing to do per
        # value (a page of 20 search hits carries ~180 of them).
        if dialect.name == "postgresql" and dialect.driver == "asyncpg":
            return None
        return super().result_processor(dialect, coltype)


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(at: datetime) -> datetime:
    """A time from a caller, in UTC: one given without a zone is read as UTC (as ingestion
    reads it), so it compares with the stored, zoned times instead of raising."""
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


_EARLIEST, _LATEST = datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC)


def shifted(at: datetime, delta: timedelta) -> datetime:
    """`at + delta`, held to the years 1-9999 a datetime has: a case dated 0001-01-01 (or
    9999-12-31) is valid input, and the window around it must not overflow (that error
    stopped the indexer at such a case for good)."""
    try:
        return at + delta
    except OverflowError:
        return _EARLIEST if delta < timedelta(0) else _LATEST


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    # WAL lets readers run beside the single writer; busy_timeout queues writers instead of
    # failing them with "database is locked".
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _sqlite_functions(dbapi_conn: Any, _record: Any) -> None:
    from shared.audit import register_chain_function  # shared.audit imports this module

    register_chain_function(dbapi_conn)


def _reset_sqlite(dbapi_conn: Any, _record: Any, state: Any) -> None:
    """A pooled SQLite connection checked in: rolled back only if a transaction is still
    open (aiosqlite's `in_transaction` reads the connection's state without a trip to its
    thread). An error path that left one open is rolled back exactly as before."""
    if state.asyncio_safe and dbapi_conn.driver_connection.in_transaction:
        dbapi_conn.rollback()


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def json_value(value: Any) -> Any:
    # A JSON column has NUMERIC affinity on SQLite: a top-level number ('5') comes back as an
    # INTEGER or REAL, not text. SQLAlchemy's own SQLite JSON type lets numbers through on a
    # TypeError, but orjson raises a ValueError.
    if isinstance(value, int | float):
        return value
    return orjson.loads(value)


def make_engine(url: str, **kwargs: Any) -> AsyncEngine:
    # orjson: JSON columns are the bulk of an ingested row; the stdlib encoder is 5x slower.
    kwargs.setdefault("json_serializer", _json_dumps)
    kwargs.setdefault("json_deserializer", json_value)
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            from pathlib import Path

            Path(path).parent.mkdir(parents=True, exist_ok=True)
        if path and path != ":memory:":
            # Every request holds a connection for its duration; past pool_size each checkout
            # would open (a thread, the file, the pragmas) and close a connection.
            kwargs.setdefault("pool_size", 16)
            kwargs.setdefault("max_overflow", 16)
        # The pool's rollback-on-return runs after every commit too (SQLAlchemy skips it only
        # when the Connection itself rolled back), and on aiosqlite a rollback is one more
        # trip to the driver's thread: `_reset_sqlite` rolls back only what is still open.
        kwargs.setdefault("pool_reset_on_return", None)
        engine = create_async_engine(url, **kwargs)
        # First: the pragmas below already run through a one-hop cursor (shared.sqlite_onehop).
        event.listen(engine.sync_engine, "connect", sqlite_onehop.install)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        event.listen(engine.sync_engine, "connect", _sqlite_functions)
        event.listen(engine.sync_engine, "before_cursor_execute", sqlite_onehop.hand_over)
        if kwargs["pool_reset_on_return"] is None:
            event.listen(engine.sync_engine.pool, "reset", _reset_sqlite)
        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 10)
    engine = create_async_engine(url, **kwargs)
    if engine.dialect.driver == "asyncpg":
        pg_deferred_begin.install(engine)
    if not kwargs.get("pool_pre_ping"):
        _ping_when_idle(engine)
    return engine


# A pooled connection unused this long is pinged before it is handed out again.
IDLE_PING_S = 5.0
_CHECKED_IN = "failcat.checked_in"


def _ping_when_idle(engine: AsyncEngine) -> None:
    """SQLAlchemy's pool_pre_ping, but only for a connection that sat idle IDLE_PING_S: the
    ping costs three round trips on asyncpg (BEGIN, ";", ROLLBACK), which on a busy server is
    most of a primary-key read, while a connection that served a request a moment ago is
    unlikely to be stale. One that died since (a restart, a failover) is discarded and
    replaced here; one that dies under a request answers 503 (database_unreachable), as
    it always could between the ping and the statement."""
    dialect = engine.dialect

    def checked_in(_dbapi_conn: Any, record: Any) -> None:
        record.info[_CHECKED_IN] = time.monotonic()

    def checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        last = record.info.get(_CHECKED_IN)
        if last is None or time.monotonic() - last < IDLE_PING_S:
            return
        try:
            alive = dialect.do_ping(dbapi_conn)
        except Exception as exc:
            if not dialect.is_disconnect(exc, dbapi_conn, None):
                raise
            alive = False
        if not alive:
            # The pool discards this connection and checks out another (up to 3 tries).
            raise sa_exc.DisconnectionError("a pooled connection died while idle")

    event.listen(engine.sync_engine.pool, "checkin", checked_in)
    event.listen(engine.sync_engine.pool, "checkout", checkout)


# SQLSTATE classes that mean "the server cannot serve this connection now", not "this statement
# is wrong": connection exceptions (08xxx), shutdown or start-up in progress (57P01-57P03) and
# too many connections (53300).
_UNREACHABLE_SQLSTATES = ("08", "57P01", "57P02", "57P03", "53300")


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """`exc`, the driver error SQLAlchemy wraps, and what each was raised from."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        err = todo.pop()
        if err is None or id(err) in seen or len(seen) > 20:
            continue
        seen.add(id(err))
        yield err
        todo += [getattr(err, "orig", None), err.__cause__, err.__context__]


def database_unreachable(exc: BaseException) -> bool:
    """True when `exc` says the database cannot be reached now (down, restarting, failing
    over, out of connections): a retry later may succeed, so callers answer 503, not 500."""
    for err in _causes(exc):
        if isinstance(err, sa_exc.DBAPIError) and err.connection_invalidated:
            return True
        if isinstance(err, sa_exc.TimeoutError):  # no pooled connection freed in time
            return True
        # The driver's connect() raises plain socket errors (refused, reset, timed out).
        if isinstance(err, ConnectionError | TimeoutError):
            return True
        state = getattr(err, "sqlstate", None) or getattr(err, "pgcode", None)
        if isinstance(state, str) and state.startswith(_UNREACHABLE_SQLSTATES):
            return True
        # SQLite: another writer held the file past busy_timeout.
        if isinstance(err, sqlite3.OperationalError) and "database is locked" in str(err):
            return True
    return False


def database_rejected_value(exc: BaseException) -> bool:
    """True when the database refused a value it was given: SQLSTATE class 22 (a NUL
    character in text, a string too long for its column, a number or date out of range, text
    that is not a valid id), or a Python int too large for SQLite. Input validation should
    have caught it first; when it did not, the value is still the caller's, not a crash."""
    causes = list(_causes(exc))
    for err in causes:
        state = getattr(err, "sqlstate", None) or getattr(err, "pgcode", None)
        if isinstance(state, str) and state.startswith("22"):
            return True
        if isinstance(err, sqlite3.DataError):
            return True
    statement = any(isinstance(err, sa_exc.StatementError) for err in causes)
    return statement and any(isinstance(err, OverflowError) for err in causes)


def database_error(exc: BaseException) -> FailcatError | None:
    """The client-facing error for a database failure, or None for a bug (an INTERNAL)."""
    if isinstance(exc, FailcatError):
        return exc
    if database_unreachable(exc):
        return Unavailable("the catalog database is unavailable")
    if database_rejected_value(exc):
        return BadUserInput(
            "a value in the request cannot be stored (a NUL character, or a number, date or "
            "text out of range)"
        )
    return None


# session.info key: what a unit of work changed, by kind ({"ingested": [case ids], ...});
# written by shared.changes.record_change, handed to commit listeners after the commit.
CHANGES = "failcat.changes"
# session.info key: the unit of work wrote to the search outbox (set by the catalog repository);
# after its commit the outbox listeners are called, so this process's indexer wakes at once.
WROTE_OUTBOX = "failcat.wrote_outbox"


@asynccontextmanager
async def driver_connection(session: Any) -> AsyncIterator[Any]:
    """The driver's own connection (asyncpg, aiosqlite) under `session`'s transaction, for
    reads that skip SQLAlchemy's per-row work. A session shared by concurrent resolvers (the
    gateway's SerializedSession) is held for its turn meanwhile: a driver connection must
    never run two statements at once."""
    connection = await session.connection()  # (outside the turn: it may take the turn)
    async with getattr(session, "turn", None) or contextlib.nullcontext():
        yield await _driver_begun(connection)


async def driver_in_transaction(session: Any) -> Any:
    """The driver's own connection under `session`'s transaction, that transaction begun: on
    Postgres BEGIN waits for the first statement needing it (shared.pg_deferred_begin), and
    the driver's own statements are not seen by SQLAlchemy."""
    return await _driver_begun(await session.connection())


async def _driver_begun(connection: Any) -> Any:
    raw = await connection.get_raw_connection()
    if connection.dialect.driver == "asyncpg":
        await pg_deferred_begin.begin_now(raw.dbapi_connection)
    return raw.driver_connection


def _append_audit(session: Session) -> None:
    from shared.audit import append_staged  # shared.audit imports this module

    append_staged(session)


def _forget_staged(session: Session) -> None:
    from shared.audit import STAGED

    session.info.pop(CHANGES, None)
    session.info.pop(WROTE_OUTBOX, None)
    session.info.pop(STAGED, None)


async def holds_write_lock(session: AsyncSession) -> bool:
    """Whether the session's SQLite connection holds the write lock already (pysqlite begins
    a transaction only before a data-changing statement). Such a unit of work commits
    without queueing for the writer turn: the turn's holder may be in the busy handler
    waiting for this very lock, and would wait out the busy timeout."""
    if not session.in_transaction():
        return False
    connection = await session.connection()
    return bool((await connection.get_raw_connection()).driver_connection.in_transaction)


class Database:
    """The engine and session factory, built once in the lifespan."""

    def __init__(self, url: str, *, audit_reads: bool = True, **engine_kwargs: Any) -> None:
        self.url = url
        self.engine = make_engine(url, **engine_kwargs)
        self._commit_listeners: list[Callable[[dict[str, list[str]]], None]] = []
        self._outbox_listeners: list[Callable[[], None]] = []
        # This process's SQLite writers take turns here. An audited read is a write (its
        # entry), and SQLite admits one writer at a time: a writer finding the file locked
        # sleeps in its busy handler (1, 2, 5, 10 ... 100 ms between tries), so 16 concurrent
        # reads spent most of their time asleep. Queued on a lock, the next one starts as soon
        # as the previous commits. Other processes (a worker) still meet the busy handler.
        self._writer = asyncio.Lock() if self.engine.dialect.name == "sqlite" else None
        audit_reads_setting = audit_reads
        writer_turn = self._writer

        class UnitOfWork(Session):
            """This database's sessions: commit listeners are per Database, not global."""

            # Settings.audit_reads: False only to measure what auditing reads costs.
            audit_reads = audit_reads_setting
            # This process's SQLite writer turn (None on Postgres): shared.audit's appending
            # read takes it for the one trip that writes.
            writer = writer_turn

        event.listen(UnitOfWork, "before_commit", _append_audit)
        event.listen(UnitOfWork, "after_commit", self._after_commit)
        event.listen(UnitOfWork, "after_rollback", _forget_staged)
        self.sessionmaker = async_sessionmaker(
            self.engine, expire_on_commit=False, sync_session_class=UnitOfWork
        )

    def on_commit(self, listener: Callable[[dict[str, list[str]]], None]) -> None:
        """Call `listener(changes)` after each commit that recorded changes (any path:
        REST, GraphQL, jobs). Listeners run in the committing task and must not block."""
        self._commit_listeners.append(listener)

    def on_outbox_commit(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call `listener()` after each commit that wrote to the search outbox (WROTE_OUTBOX),
        in the committing task: it must not block. Returns what stops the calls."""
        self._outbox_listeners.append(listener)
        return lambda: self._outbox_listeners.remove(listener)

    def _after_commit(self, session: Session) -> None:
        if session.info.pop(WROTE_OUTBOX, False):
            for wake in self._outbox_listeners:
                wake()
        changes = session.info.pop(CHANGES, None)
        if changes:
            for listener in self._commit_listeners:
                listener(changes)

    async def commit(self, session: AsyncSession) -> None:
        """Commit a unit of work (the GraphQL request's, `transaction`'s); on SQLite, one that
        carries audit entries and has not written yet waits for this process's previous
        writer."""
        from shared.audit import STAGED  # shared.audit imports this module

        if self._writer is None or not session.info.get(STAGED) or await holds_write_lock(session):
            await session.commit()
            return
        async with self._writer:
            await session.commit()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """One unit of work: commit on success, roll back on any error. Losing the database
        (at connect, mid-statement or at commit) raises Unavailable, a value it refuses
        BadUserInput (database_error). A commit whose answer was lost may have been applied:
        retries must be idempotent, as ingestion's are."""
        try:
            async with self.sessionmaker() as session:
                try:
                    yield session
                except BaseException:
                    await session.rollback()
                    raise
                # Through `commit`: audited REST reads take this process's writer turn as the
                # GraphQL request's do, instead of meeting each other in the busy handler.
                await self.commit(session)
        except Exception as exc:
            translated = database_error(exc)
            if translated is None or translated is exc:
                raise
            raise translated from exc

    async def dispose(self) -> None:
        await self.engine.dispose()
