"""The one audit append: stage entries in the unit of work, chain them at its commit.

Every service records what it audits with `audit(session, principal, action, target, ...)`.
The entries wait on the session and are written by the `before_commit` hook that
`shared.db.Database` installs, in the transaction of the change: a write is never stored
without its entry, and a rolled-back write leaves none. Chaining at commit keeps the head row
(the lock that makes `seq` gap-free) held for the last few statements of a transaction only.

Outcomes that roll their transaction back (refused tokens, authorization failures) are written
with `audit_now`, in a transaction of their own.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import (
    bindparam,
    column,
    insert,
    literal_column,
    select,
    table,
    text,
    type_coerce,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session

try:  # the greenlet bridge: run a driver coroutine from SQLAlchemy's sync hook
    from sqlalchemy.util import await_ as _await  # SQLAlchemy 2.1
except ImportError:  # pragma: no cover - SQLAlchemy 2.0
    from sqlalchemy.util import await_only as _await

from shared.db import utcnow
from shared.logging import correlation_id

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from shared.db import Database
    from shared.security import Principal

GENESIS = "0" * 64
# session.info key: the entries this unit of work will append when it commits.
STAGED = "failcat.audit"


@dataclass(frozen=True, slots=True)
class Actor:
    """Who did it, as the audit trail keeps it (a Principal, or a system job by name)."""

    subject: str | None
    client: str | None = None
    team: str | None = None

    @classmethod
    def of(cls, principal: Principal | Actor | str | None) -> Actor:
        if principal is None:
            return cls(subject=None)
        if isinstance(principal, Actor):
            return principal
        if isinstance(principal, str):
            return cls(subject=principal)
        return cls(subject=principal.subject, client=principal.client_id, team=principal.team)


@dataclass(slots=True)
class Staged:
    at: datetime
    actor: Actor
    action: str
    target: str | None
    outcome: str
    correlation_id: str | None
    details: Mapping[str, Any] | None = field(default=None)
    read: bool = False


# The columns an entry's hash covers, in this order (everything but `hash`).
FIELDS = (
    "seq",
    "at",
    "actor_subject",
    "actor_client",
    "actor_team",
    "action",
    "target",
    "outcome",
    "correlation_id",
    "details",
)


def at_text(at: datetime | str) -> str:
    return at.isoformat(timespec="microseconds") if isinstance(at, datetime) else at


def canonical_values(values: tuple[Any, ...] | list[Any]) -> bytes:
    """The bytes an entry's hash covers, from its FIELDS values in order: a JSON array (so no
    key sorting at the top level), `at` in ISO 8601 UTC with microseconds, the keys of
    `details` sorted, so any reader recomputes them identically. Append and verify both go
    through here."""
    row = list(values)
    row[1] = at_text(row[1])
    return orjson.dumps(row, option=orjson.OPT_SORT_KEYS)


def canonical(entry: Mapping[str, Any]) -> bytes:
    return canonical_values([entry[name] for name in FIELDS])


def chain(previous: str, entry: Mapping[str, Any]) -> str:
    return hashlib.sha256(previous.encode() + canonical(entry)).hexdigest()


def chain_values(previous: str, values: tuple[Any, ...] | list[Any]) -> str:
    return hashlib.sha256(previous.encode() + canonical_values(values)).hexdigest()


def audit(
    session: AsyncSession | Session,
    principal: Principal | Actor | str | None,
    action: str,
    target: str | None = None,
    *,
    outcome: str = "ok",
    details: Mapping[str, Any] | None = None,
    read: bool = False,
) -> None:
    """Stage one entry; it is appended when `session` commits, and dropped if it rolls back.
    `details` must never carry payload values (they may be personal data): counts, ids, names
    of fields and kinds only. `read` marks the read of a case's details (dropped only where
    the Database was built with audit_reads=False, for the cost benchmark)."""
    stage(session, entry(principal, action, target, outcome=outcome, details=details, read=read))


def entry(
    principal: Principal | Actor | str | None,
    action: str,
    target: str | None = None,
    *,
    outcome: str = "ok",
    details: Mapping[str, Any] | None = None,
    read: bool = False,
) -> Staged:
    """The entry `audit` stages, made now (its time and correlation id are this moment's)."""
    return Staged(
        utcnow(),
        Actor.of(principal),
        action,
        target,
        outcome,
        correlation_id.get(),
        details,
        read,
    )


def stage(session: AsyncSession | Session, staged: Staged) -> None:
    session.info.setdefault(STAGED, []).append(staged)  # AsyncSession.info is its sync Session's


async def audit_now(
    db: Database,
    principal: Principal | Actor | str | None,
    action: str,
    target: str | None = None,
    *,
    outcome: str,
    details: Mapping[str, Any] | None = None,
) -> None:
    """Append one entry in a transaction of its own: for outcomes whose request rolls back."""
    async with db.transaction() as session:
        audit(session, principal, action, target, outcome=outcome, details=details)


def append_staged(session: Session) -> None:
    """The `before_commit` hook: chain and insert what the unit of work staged."""
    staged: list[Staged] | None = session.info.pop(STAGED, None)
    if staged and not getattr(session, "audit_reads", True):
        staged = [s for s in staged if not s.read]
    if not staged:
        return
    if session.get_bind().dialect.name == "sqlite":
        if len(staged) == 1:
            _append_one_sqlite(session, staged[0])
        else:
            _append_sqlite(session, staged)
        return
    if len(staged) == 1:
        _append_one_pg(session, staged[0])
        return
    # Taking the head row first is the lock (a row lock held to the commit).
    head_seq, prev = session.execute(text(HEAD_SQL.replace("?", ":n")), {"n": len(staged)}).one()
    first_seq = head_seq - len(staged) + 1
    for start in range(0, len(staged), PG_ROWS_PER_STATEMENT):  # under the 32767 parameters
        chunk = staged[start : start + PG_ROWS_PER_STATEMENT]
        params: dict[str, Any] = {}
        for i, s in enumerate(chunk):
            values = _values(first_seq + start + i, s)
            prev = chain_values(prev, values)
            details = values[9]
            row = (*values[:9], None if details is None else orjson.dumps(details).decode(), prev)
            params.update({f"{name}_{i}": v for name, v in zip(_COLUMNS, row, strict=True)})
        params["head_hash"] = prev
        session.execute(_pg_append(len(chunk)), params)


_COLUMNS = (*FIELDS, "hash")
PG_ROWS_PER_STATEMENT = 500

# One entry (a read's, most often) in one round trip, bound as one value: `rest`, the entry's
# canonical text after its seq (canonical_values is "[" + seq + "," + the rest, and the seq is
# the one part Python cannot know in advance). Postgres takes the head's row lock, chains the
# hash itself (sha256 of the previous hash's text, then "[seq," and the rest) and inserts the
# row, its columns read back out of the canonical array. One bound value instead of ten: the
# binding (SQLAlchemy's, then asyncpg's) was most of what an audited read cost in Python.
# `verify` recomputes the same bytes in Python.
_ENTRY_ARRAY = "CAST('[0,' || :audit_rest AS JSONB)"
# The stored columns FIELDS[1:] from that array, `e`: a JSON null in `details` is SQL NULL.
_UNPACKED = (
    "CAST(e ->> 1 AS TIMESTAMPTZ)",
    *(f"e ->> {i}" for i in range(2, 9)),
    "NULLIF(e -> 9, 'null'::jsonb)",
)
_CHAINED = (
    "encode(sha256(convert_to(hash || '[' || (seq + 1)::text || ',' || :audit_rest, 'UTF8')),"
    " 'hex')"
)
_HEAD = table("audit_head", column("id"), column("seq"), column("hash"))
_LOG = table("audit_log", *(column(c) for c in _COLUMNS))


def _one_entry_append(condition: Any | None) -> tuple[Any, Any]:
    """The one-entry append: the head's move (a CTE; only when `condition` holds, if one is
    given) and the insert of the entry's row, chained from it. The staged path runs it as
    a statement (_PG_APPEND_ONE), a read carries it as CTEs (read_entry_ctes)."""
    rest = bindparam("audit_rest")  # bound twice, numbered once
    one = literal_column("1")  # not a bound value: the entry's is the statement's only one
    moved = (
        _HEAD.update()
        .where(_HEAD.c.id == one, *([] if condition is None else [condition]))
        .values(seq=_HEAD.c.seq + one, hash=text(_CHAINED).bindparams(rest))
        .returning(
            _HEAD.c.seq,
            _HEAD.c.hash,
            type_coerce(text(_ENTRY_ARRAY).bindparams(rest), JSONB).label("e"),
        )
        .cte("audit_head_moved")
    )
    unpacked = (literal_column(u) for u in _UNPACKED)
    row = select(moved.c.seq, *unpacked, moved.c.hash)
    return moved, insert(_LOG).from_select(list(_COLUMNS), row)


def _append_statement() -> Any:
    moved, appended = _one_entry_append(None)
    return appended.add_cte(moved)  # WITH at the top: Postgres allows a write nowhere else


_PG_APPEND_ONE = _append_statement()


def _append_one_pg(session: Session, entry: Staged) -> None:
    session.execute(_PG_APPEND_ONE, read_entry_params(entry))


# --- a read's entry in the read's own statement (Postgres) -------------------------------------
# A read that is audited costs a statement of its own at commit, one more round trip on a
# request that is otherwise two or three. On Postgres the entry can instead ride on the read:
# `read_entry_ctes` gives the same append as _PG_APPEND_ONE as two data-modifying CTEs to add
# to the read's SELECT (Select.add_cte), guarded by the read's own visibility condition, so a
# case the reader may not see appends nothing, as a refused read stages nothing. The head row
# is locked from that statement to the commit, as a staged entry's is from the append to the
# commit. SQLite has no data-modifying CTEs: there the entry is staged as usual.


def folds_reads(session: AsyncSession | Session) -> bool:
    """True when a read's entry should ride on the read's statement (`read_entry_ctes`)."""
    sync = getattr(session, "sync_session", session)
    return sync.get_bind().dialect.name == "postgresql" and getattr(sync, "audit_reads", True)


def read_entry_ctes(condition: Any | None) -> tuple[Any, Any]:
    """The head's move and the entry's insert, appended when `condition` (an EXISTS on the
    read's row) holds, or always when it is None (a search's entry: `take_along`); the
    entry's value is bound as `read_entry_params` names it."""
    moved, appended = _one_entry_append(condition)
    return moved, appended.cte("audit_appended")


def read_entry_params(entry: Staged) -> dict[str, str]:
    """The one bound value of a one-entry append: `audit_rest`, the canonical text after
    the seq (which Postgres chains, and reads the columns back out of). The name is unique
    among the names of the reads that carry the entry."""
    return {"audit_rest": canonical_values(_values(0, entry))[len(b"[0,") :].decode()}


def take_along(session: AsyncSession | Session) -> dict[str, Any] | None:
    """When `session` (on Postgres) has exactly one entry staged (a search's): unstage it and
    return the values with which `read_entry_ctes(None)`, added to the next statement, append
    it in that statement's round trip. None otherwise: the entries are appended at commit, as
    always (and a read's entry where reads are not audited is dropped there)."""
    sync = getattr(session, "sync_session", session)
    staged: list[Staged] | None = sync.info.get(STAGED)
    if not staged or len(staged) != 1 or not folds_reads(sync):
        return None
    [entry] = sync.info.pop(STAGED)
    return read_entry_params(entry)


@functools.lru_cache(maxsize=64)
def _pg_append(n: int) -> Any:
    """The rows and the head's new hash in one statement (a data-modifying CTE), so an entry
    costs two round trips. Plain SQL, one text per row count: SQLAlchemy does not cache the
    compiled form of a multi-row insert inside a CTE, and compiling it cost more than the
    round trip it saves."""
    rows = ", ".join(
        "("
        + ", ".join(f"CAST(:{c}_{i} AS JSONB)" if c == "details" else f":{c}_{i}" for c in _COLUMNS)
        + ")"
        for i in range(n)
    )
    return text(
        f"WITH appended AS (INSERT INTO audit_log ({', '.join(_COLUMNS)}) VALUES {rows}) "
        "UPDATE audit_head SET hash = :head_hash WHERE id = 1"
    )


HEAD_SQL = "UPDATE audit_head SET seq = seq + ? WHERE id = 1 RETURNING seq, hash"
_INSERT_SQLITE = f"INSERT INTO audit_log ({', '.join(FIELDS)}, hash) VALUES ({', '.join('?' * 11)})"


def _values(seq: int, s: Staged) -> tuple[Any, ...]:
    details = dict(s.details) if s.details is not None else None
    actor = s.actor
    return (
        seq,
        s.at,
        actor.subject,
        actor.client,
        actor.team,
        s.action,
        s.target,
        s.outcome,
        s.correlation_id,
        details,
    )


def _append_sqlite(session: Session, staged: list[Staged]) -> None:
    """The same append through the driver in three calls: each statement SQLAlchemy runs on
    aiosqlite costs two or three hops to its thread, which was most of what auditing a read
    cost. The values are stored as SQLAlchemy stores them (UTCDateTime: naive UTC text with
    microseconds; JSON: orjson text), so ORM reads and verify see the same entries.
    Taking the head row first is the lock: this UPDATE also starts the write transaction (the
    driver begins lazily), so the head read is the newest one."""
    driver = session.connection().connection.driver_connection
    [(head_seq, prev)] = _await(driver.execute_fetchall(HEAD_SQL, (len(staged),)))
    rows = []
    for seq, s in enumerate(staged, start=head_seq - len(staged) + 1):
        values = _values(seq, s)
        prev = chain_values(prev, values)
        stored = values[9]
        rows.append(
            (
                *values[:1],
                s.at.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds"),
                *values[2:9],
                None if stored is None else orjson.dumps(stored).decode(),
                prev,
            )
        )
    _await(driver.executemany(_INSERT_SQLITE, rows))
    _await(driver.execute("UPDATE audit_head SET hash = ? WHERE id = 1", (prev,)))


# One entry (a read's, most often) in one statement through the driver: the head row is read
# by the INSERT itself (which holds the write lock from its start), the hash is chained by
# `_chain_after` (registered on each connection: SQLite has no sha256), and the trigger of
# migration 0018 moves the head to the new entry. The bytes hashed are canonical_values', as
# on Postgres: "[" + seq + "," + the rest.
_CHAIN_FUNCTION = "failcat_audit_chain"
_INSERT_ONE_SQLITE = (
    f"INSERT INTO audit_log ({', '.join(FIELDS)}, hash) SELECT seq + 1, "
    + ", ".join("?" * (len(FIELDS) - 1))
    + f", {_CHAIN_FUNCTION}(hash, seq + 1, ?) FROM audit_head WHERE id = 1"
)


def _chain_after(previous: str, seq: int, rest: bytes) -> str:
    return hashlib.sha256(previous.encode() + b"[%d," % seq + rest).hexdigest()


def register_chain_function(dbapi_connection: Any) -> None:
    """Once per SQLite connection, at connect (shared.db): registering a function expires
    the connection's prepared statements, so it must not happen per append."""
    dbapi_connection.create_function(_CHAIN_FUNCTION, 3, _chain_after, deterministic=True)


def _sqlite_row(entry: Staged) -> tuple[Any, ...]:
    """The bound values of _INSERT_ONE_SQLITE: FIELDS but seq, stored as SQLAlchemy stores
    them, and the canonical bytes after the seq (which `_chain_after` chains)."""
    values = _values(0, entry)
    stored = values[9]
    return (
        entry.at.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds"),
        *values[2:9],
        None if stored is None else orjson.dumps(stored).decode(),
        canonical_values(values)[len(b"[0,") :],
    )


def _append_one_sqlite(session: Session, entry: Staged) -> None:
    driver = session.connection().connection.driver_connection
    _await(driver.execute_fetchall(_INSERT_ONE_SQLITE, _sqlite_row(entry)))


# --- a read's entry on the read's own trip (SQLite) --------------------------------------------
# SQLite has no data-modifying CTEs, and staged for the commit a read's entry costs the append
# and the COMMIT, each a trip to the driver's thread, where the unaudited read has none after
# its statement. When the unit of work has written nothing yet, the entry is instead appended
# and committed on the read's own trip, right after its rows (shared.sqlite_onehop's
# AFTER_ROWS), in the writer turn: stored before the read can be served, as on Postgres, and
# only when the read found its row. It is not undone if the request fails later: the read
# happened. Inside a write, the entry waits for that write's commit, as any entry does.


def _append_after_rows(entry: Staged) -> Any:
    row = _sqlite_row(entry)

    def then(connection: Any, rows: Any) -> None:
        if not rows:  # not found or not visible: a refused read appends nothing
            return
        try:
            connection.execute(_INSERT_ONE_SQLITE, row)  # pysqlite begins the transaction
            connection.commit()
        except BaseException:
            connection.rollback()
            raise

    return then


async def execute_read(
    session: AsyncSession,
    statement: Any,
    params: Mapping[str, Any],
    entry: Staged | None,
    *,
    rows: bool = False,
) -> tuple[Any, bool]:
    """Run a read that records `entry` (None: no entry) when it finds its row, and say
    whether the entry is recorded already. The caller built `statement` with the entry's
    CTEs and `params` with its values when `folds_reads` (Postgres): the statement appends
    it. On SQLite it is appended on the read's own trip where it can be (`read_appending`).
    When this answers False, the caller stages the entry if the row was found. `rows`: the
    statement selects columns only, and runs on the session's connection, past the ORM's
    result loading (which it would only pass through)."""
    if entry is None or folds_reads(session):
        return await _execute(session, statement, params, rows), entry is not None
    result = await read_appending(session, statement, params, entry, rows=rows)
    if result is not None:
        return result, True
    return await _execute(session, statement, params, rows), False


async def read_appending(
    session: AsyncSession,
    statement: Any,
    params: Mapping[str, Any],
    entry: Staged,
    *,
    rows: bool = False,
) -> Any | None:
    """SQLite: the result of the read `statement`, whose `entry` was appended and committed
    on the read's trip when it returned a row. None where this does not apply (Postgres, a
    unit of work that has written, reads not audited): run the read and stage the entry."""
    from shared.db import holds_write_lock
    from shared.sqlite_onehop import AFTER_ROWS

    sync = session.sync_session
    turn = getattr(sync, "writer", None)
    if turn is None or not sync.audit_reads or await holds_write_lock(session):
        return None
    options = {AFTER_ROWS: _append_after_rows(entry)}
    async with turn:
        return await _execute(session, statement, params, rows, options)


async def _execute(
    session: AsyncSession,
    statement: Any,
    params: Mapping[str, Any],
    rows: bool,
    options: Mapping[str, Any] | None = None,
) -> Any:
    if rows:
        connection = await session.connection()
        return await connection.execute(statement, params, execution_options=options)
    return await session.execute(statement, params, execution_options=options or {})
