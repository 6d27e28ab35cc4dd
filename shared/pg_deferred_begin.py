"""Postgres: a unit of work opens its transaction at its first statement that needs one.

SQLAlchemy's asyncpg adapter sends BEGIN before a unit of work's first statement and COMMIT
at its end: a read-only request (a case read, a search page) costs three round trips for its
one statement. Here the statements that come before anything needing a transaction run on
their own instead, each in Postgres's implicit transaction of one statement, and BEGIN is sent
before the first statement that needs one; a unit of work that never needs one commits
nothing at its end. Straight on asyncpg a primary-key read takes 0.19 ms alone and 0.54 ms
between BEGIN and COMMIT (benchmarks: the note of the session that added this).

What runs alone: a SELECT, or a WITH whose main statement is a SELECT (an audited read, whose
audit entry is appended by data-modifying CTEs of that same statement: stored by it, as
`shared.audit` requires, and atomic with it). Under READ COMMITTED, Postgres's default and the
only level failcat uses, every statement takes its own snapshot anyway, so reads see the
same data alone as inside a transaction. Everything else opens the transaction first and the
unit of work stays in it to its commit or rollback, as before: writes, locking reads (FOR
UPDATE / SHARE), transaction-scoped advisory locks and settings (`set_config(..., true)`; a
SET LOCAL is no read), server-side cursors, and any statement sent on the driver's own
connection (`begin_now`, which `shared.db.driver_in_transaction` calls). When in doubt: a
transaction.

A read that ran alone is not undone if the unit of work later fails: it happened, and its
audit entry stays, as on SQLite (shared.audit's "read's own trip").

This reads the adapter's private state (`_transaction`, `isolation_level`,
`_isolation_setting`, `_start_transaction`): SQLAlchemy is pinned, and
tests/shared/test_pg_deferred_begin.py checks each of them.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

# What a read can hold to the end of its transaction: a row lock, an advisory lock, a setting.
_NEEDS_TRANSACTION = re.compile(
    r"\bFOR\s+(?:NO\s+KEY\s+UPDATE|UPDATE|KEY\s+SHARE|SHARE)\b|pg_advisory_xact_lock|\bset_config\b",
    re.IGNORECASE,
)


@functools.lru_cache(maxsize=2048)
def runs_alone(statement: str) -> bool:
    """Whether `statement` may run outside the unit of work's transaction: a plain read, or a
    read whose CTEs write (its own atomic unit). Statements are few and recur (SQLAlchemy's
    compiled cache hands out the same strings), hence the cache."""
    head = statement.lstrip()[:6].upper()
    if head == "SELECT":
        return _NEEDS_TRANSACTION.search(statement) is None
    if head[:4] != "WITH":
        return False
    return _main_is_select(statement) and _NEEDS_TRANSACTION.search(statement) is None


def _main_is_select(statement: str) -> bool:
    """A WITH statement's main statement (after its last CTE's closing parenthesis at depth
    zero) is a SELECT."""
    depth, end = 0, -1
    quoted = False
    for i, ch in enumerate(statement):
        if ch == "'":
            quoted = not quoted
        elif quoted:
            continue
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                end = i
        elif depth == 0 and end >= 0 and not ch.isspace():
            if ch == ",":  # another CTE follows
                end = -1
                continue
            return statement[i : i + 6].upper() == "SELECT"
    return False


def _before_statement(
    conn: Any, _cursor: Any, statement: str, _params: Any, context: Any, executemany: bool
) -> None:
    adapter = conn.connection.dbapi_connection
    if adapter._transaction is not None:
        return
    alone = (
        not executemany
        and runs_alone(statement)
        and not (context is not None and context.execution_options.get("stream_results"))
    )
    adapter.isolation_level = "autocommit" if alone else adapter._isolation_setting


def install(engine: AsyncEngine) -> None:
    """On an asyncpg engine: defer each unit of work's BEGIN as the module says."""
    event.listen(engine.sync_engine, "before_cursor_execute", _before_statement)


async def begin_now(adapter: Any) -> None:
    """Open the unit of work's transaction now if it is not open yet: its next statements
    go through the driver's own connection, which the deferral does not see."""
    if adapter._transaction is None:
        adapter.isolation_level = adapter._isolation_setting
        await adapter._start_transaction()
