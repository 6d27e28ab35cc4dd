"""SQLAlchemy's aiosqlite cursor, one trip to the driver's thread per statement instead of four.

aiosqlite runs every call on its connection's thread, and SQLAlchemy's adapted cursor makes
four such calls for each statement: open a cursor, execute, fetch all, close. Each trip is a
queue hand-off and a wake-up of the thread (and a fight for the GIL on a busy process): on
`case(id)` they were most of what a request waited for. Here the four happen in one function
run on that thread, which hands back the rows and what the cursor reported (description,
rowcount, lastrowid), so SQLAlchemy reads them as before.

A statement may carry one more step for the same trip (`AFTER_ROWS`, an execution option):
`then(connection, rows)` runs on the driver's thread once the rows are fetched. An audited read
appends and commits its entry that way (shared.audit.read_appending). COMMIT and ROLLBACK with
no transaction open (pysqlite opens one only before a data-changing statement) cost no trip.

Installed per pooled connection (`install`, from the engine's connect event) by giving the
adapted connection a subclass whose cursor is this one. Server-side cursors (stream) keep
SQLAlchemy's own class. This reaches below both libraries' public APIs (aiosqlite's
`Connection._execute`, the adapted cursor's slots): tests/shared/test_db.py checks them.
"""

from __future__ import annotations

import collections
import sqlite3
from collections.abc import Callable
from typing import Any

from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
)
from sqlalchemy.util import EMPTY_DICT

# What a finished statement reported: (description, rowcount, lastrowid).
_NOTHING: tuple[Any, int, Any] = (None, -1, None)

# The execution option naming a step run on the driver's thread after the statement's rows:
# `then(sqlite3_connection, rows)`. Read by `hand_over` (the engine's before_cursor_execute).
AFTER_ROWS = "failcat_after_rows"
Then = Callable[[sqlite3.Connection, collections.deque[Any]], None]


def _run(
    conn: sqlite3.Connection, operation: str, parameters: Any, many: bool, then: Then | None
) -> tuple[collections.deque[Any], tuple[Any, int, Any]]:
    """On the driver's thread: the statement from cursor to close, then `then`."""
    cursor = conn.cursor()
    try:
        if many:
            cursor.executemany(operation, parameters)
        elif parameters is None:
            cursor.execute(operation)
        else:
            cursor.execute(operation, parameters)
        description = cursor.description
        rows = collections.deque(cursor.fetchall() if description else ())
        reported = (description, cursor.rowcount, cursor.lastrowid)
    finally:
        cursor.close()
    if then is not None:
        then(conn, rows)
    return rows, reported


class OneHopCursor(AsyncAdapt_aiosqlite_cursor):
    __slots__ = ("_arraysize", "_reported", "then")

    def __init__(self, adapt_connection: Any) -> None:
        # No driver cursor is opened here: `_run` opens and closes its own.
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection
        self._cursor = None
        self._soft_closed_memoized = EMPTY_DICT
        self._rows = collections.deque()
        self._reported = _NOTHING
        self._arraysize = 1  # sqlite3's default
        self.then: Then | None = None  # set per statement by `hand_over`

    @property
    def description(self) -> Any:
        return self._reported[0]

    @property
    def rowcount(self) -> int:
        return self._reported[1]

    @property
    def lastrowid(self) -> Any:
        return self._reported[2]

    @property
    def arraysize(self) -> int:
        return self._arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._arraysize = value

    async def _execute_async(self, operation: Any, parameters: Any) -> Any:
        then, self.then = self.then, None
        async with self._adapt_connection._execute_mutex:
            self._rows, self._reported = await self._connection._execute(
                _run, self._connection._conn, operation, parameters, False, then
            )
        return self

    async def _executemany_async(self, operation: Any, seq_of_parameters: Any) -> Any:
        async with self._adapt_connection._execute_mutex:
            self._rows, self._reported = await self._connection._execute(
                _run, self._connection._conn, operation, seq_of_parameters, True, None
            )
        return self

    async def _async_soft_close(self) -> None:
        return None  # the driver's cursor is closed already; the rows stay readable

    def close(self) -> None:
        self._rows.clear()

    def setinputsizes(self, *inputsizes: Any) -> None:
        return None


class OneHopConnection(AsyncAdapt_aiosqlite_connection):
    __slots__ = ()
    _cursor_cls = OneHopCursor

    # With no transaction open there is nothing to end: no trip. `in_transaction` is the
    # sqlite3 connection's own state (aiosqlite reads it without a trip).
    def commit(self) -> None:
        if self._connection._connection and self._connection.in_transaction:
            super().commit()

    def rollback(self) -> None:
        if self._connection._connection and self._connection.in_transaction:
            super().rollback()


def install(dbapi_conn: Any, _record: Any = None) -> None:
    """The engine's connect event: this connection's cursors are OneHopCursors."""
    if type(dbapi_conn) is AsyncAdapt_aiosqlite_connection:
        dbapi_conn.__class__ = OneHopConnection


def hand_over(
    _conn: Any, cursor: Any, _statement: Any, _parameters: Any, context: Any, _many: bool
) -> None:
    """The engine's before_cursor_execute: a statement's AFTER_ROWS step goes to its cursor."""
    if context is not None:
        then = context.execution_options.get(AFTER_ROWS)
        if then is not None:
            cursor.then = then
