"""The export's reads, in pages: what a bundle costs per case is decided here.

- No query: every live case the reader may see, read from the catalog BATCH at a time by
  keyset on the (occurred_at, id) index (`live_pages`), the search's `occurred_at` order; the
  search and its index are not asked (nothing to match, and it would only add a lookup by id
  per case).
- A query: ids come from the search (the query's meaning and the reader's visibility), a page
  of 500 at a time, fetched by a task ahead of the writer (a few pages queued, never the whole
  set); the cases are read in batches of BATCH ids (`case_page`), their adjudicated decisions
  beside them on a second connection.
Either way cases are plain rows of the case table (attribute access as on the ORM object,
without building one per row) with their model, version and source names joined in the same
statement, under the catalog's visibility rule; links in one more statement, ids always one
parameter; a task reads AHEAD_PAGES pages ahead of the writer (`export_pages`), so the
database works while this process renders. Each page is its own short transaction, as
before: an export is not a snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import orjson

from services.sharing.anonymise import RAW_PAYLOAD
from shared import redaction
from shared.jsonutil import iso
from shared.security import Principal

BATCH = 2_000  # ids per database read: four search pages
AHEAD = 8  # search pages queued ahead of the writer (4,000 ids at most)
AHEAD_PAGES = 2  # pages of rows read ahead of the writer


async def id_batches(search: Any, request: Any) -> AsyncIterator[tuple[list[str], int | None]]:
    """The ids the search finds, in batches of about BATCH, with the search's total."""
    from services.search.request import decode_cursor

    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=AHEAD)

    async def produce() -> None:
        try:
            result = await search.execute(request)
            while True:
                await queue.put(([h.id for h in result.hits], result.total))
                if not result.next_cursor:
                    break
                after = decode_cursor(result.next_cursor, request.sort)
                result = await search.execute(replace(request, after=after))
            await queue.put(None)
        except Exception as exc:  # handed to the reader, which raises it
            await queue.put(exc)

    producer = asyncio.ensure_future(produce())
    try:
        batch: list[str] = []
        total: int | None = None
        while True:
            item = await queue.get()
            if isinstance(item, Exception):
                raise item
            if item is None:
                if batch or total is None:
                    yield batch, total
                return
            ids, total = item
            batch += ids
            if len(batch) >= BATCH:
                yield batch, total
                batch = []
    finally:
        producer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await producer


def _ids_clause(column: Any, ids: list[str], dialect: str) -> Any:
    """`column IN ids`: on Postgres one array parameter (`= ANY($1)`), not BATCH expanded
    ones, whose compilation alone costs more than the rows."""
    from sqlalchemy import String, any_, bindparam
    from sqlalchemy.dialects.postgresql import ARRAY

    if dialect == "postgresql":
        return column == any_(bindparam("ids", value=ids, type_=ARRAY(String)))
    # SQLite: one JSON text parameter unpacked by json_each, for the same reason.
    from sqlalchemy import Text, func, select

    each = func.json_each(bindparam("ids", value=orjson.dumps(ids).decode(), type_=Text()))
    return column.in_(select(each.table_valued("value").c.value))


# The case columns an exported case shows, read as the driver gives them (no SQLAlchemy
# result processing, the bulk of a row's cost): JSON text decoded by orjson, times made the
# wire's ISO text directly.
JSON_COLUMNS = (
    "environment",
    "input",
    "prediction",
    "expected",
    "signals",
    "provenance",
    "tags",
    "writeup",
    "pii_findings",
)
# Those the rendering reads (sub-fields left out, values generalised) are decoded; the others
# pass through as stored.
DECODED_COLUMNS = ("environment", "provenance", "writeup")
PASSED_COLUMNS = tuple(c for c in JSON_COLUMNS if c not in DECODED_COLUMNS)
TIME_COLUMNS = ("occurred_at", "captured_at", "received_at", "updated_at")
PLAIN_COLUMNS = (
    "id",
    "model_id",
    "model_version_id",
    "data_source_id",
    "confidence",
    "latency_ms",
    "external_id",
    "fingerprint",
    "content_hash",
    "group_id",
    "title",
    "summary",
    "failure_mode",
    "taxonomy_version",
    "severity",
    "impact",
    "status",
    "sensitivity",
    "team",
    "merged_into_id",
    "revision",
    "payload_sensitivity",
)
REF_COLUMNS = ("ref_model_name", "ref_version_name", "ref_source_name")


class CaseRow(dict[str, Any]):
    """A case row by column name; attributes too, for the shared redaction rule."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def _json(value: Any) -> Any:
    # SQLite gives a top-level JSON number back as a number (NUMERIC affinity), as
    # shared.db's deserializer knows.
    return orjson.loads(value) if isinstance(value, (str, bytes)) else value


def _passed(value: Any) -> Any:
    """A JSON column the export writes as it is stored, without decoding it: SQLite's text
    is orjson's own compact output (shared.db), so embedding it as a Fragment writes the
    bytes that decoding and encoding it again would. (Postgres's jsonb text is spaced:
    decoded there.)"""
    if value is None or value == "null":
        return None
    return orjson.Fragment(value) if isinstance(value, str) else value


def _time(value: Any) -> str | None:
    """A stored time (SQLite: naive UTC text; Postgres: an aware datetime) as the wire
    writes it (shared.jsonutil.iso of shared.db.UTCDateTime's value)."""
    if value is None:
        return None
    if isinstance(value, str):
        if len(value) == 27 and value[10] == "T":  # Postgres's _wire_time text
            return f"{value[:19]}Z" if value.endswith(".000000Z") else value
        # SQLAlchemy's SQLite storage format, `YYYY-MM-DD HH:MM:SS.ffffff`: the wire's text
        # by slicing (isoformat leaves a zero fraction out).
        if len(value) == 26 and value[10] == " " and value[19] == ".":
            if value.endswith(".000000"):
                return f"{value[:10]}T{value[11:19]}Z"
            return f"{value[:10]}T{value[11:]}Z"
        value = datetime.fromisoformat(value)
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return iso(value)


def _wire_time(column: Any) -> Any:
    """`column` (a stored time) as its text: on Postgres the wire's ISO text made by the
    server (`_time` then only drops a zero fraction), where the driver would build a
    datetime that Python formats again, a fifth of a case's cost; on SQLite the stored
    text, as it is."""
    from sqlalchemy import Text, type_coerce

    return type_coerce(_WireTime(column), Text()).label(column.name)


def _wire_time_class() -> Any:
    from sqlalchemy.ext.compiler import compiles
    from sqlalchemy.sql.functions import FunctionElement

    class WireTime(FunctionElement[Any]):
        name = "wire_time"
        inherit_cache = True

    @compiles(WireTime)
    def _as_stored(element: Any, compiler: Any, **kw: Any) -> str:
        return str(compiler.process(element.clauses, **kw))

    @compiles(WireTime, "postgresql")
    def _as_wire(element: Any, compiler: Any, **kw: Any) -> str:
        column = compiler.process(element.clauses, **kw)
        return f"""to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"""

    return WireTime


_WireTime = _wire_time_class()


def _case_select(principal: Principal, raw: bool = True) -> Any:
    """The columns an exported case shows, its model, version and source names joined,
    under the catalog's visibility rule; the caller adds which cases. Not `raw`: the raw
    payloads read as null (a profile that drops them neither transfers nor decodes them)."""
    from sqlalchemy import Text, cast, null, select

    from services.catalog import service as catalog
    from services.catalog.models import DataSource, FailureCase, Model, ModelVersion

    case = FailureCase.__table__
    model, version, source = Model.__table__, ModelVersion.__table__, DataSource.__table__
    return (
        select(
            *(case.c[n] for n in PLAIN_COLUMNS),
            # JSON as text in SQL: Postgres's driver would decode jsonb through a codec
            # (three Python calls a value); as text it is one orjson call here.
            *(
                cast(case.c[n], Text()) if raw or n not in RAW_PAYLOAD else null()
                for n in JSON_COLUMNS
            ),
            *(_wire_time(case.c[n]) for n in TIME_COLUMNS),
            model.c.name,
            version.c.version,
            source.c.name,
        )
        .select_from(
            case.outerjoin(model, model.c.id == case.c.model_id)
            .outerjoin(version, version.c.id == case.c.model_version_id)
            .outerjoin(source, source.c.id == case.c.data_source_id)
        )
        .where(catalog.visible_cases_clause(principal))
    )


_NAMES = (*PLAIN_COLUMNS, *JSON_COLUMNS, *TIME_COLUMNS, *REF_COLUMNS)
_OCCURRED = _NAMES.index("occurred_at")


async def _rows(session: Any, stmt: Any, raw: bool = True) -> tuple[list[CaseRow], Any, Any]:
    """The statement's rows as CaseRows, their PageRelations (links in one more
    statement, unless not `raw`: a profile that drops raw payloads drops links), and the
    last row's `occurred_at` as the driver gave it (a keyset's next start)."""
    from services.catalog.views import PageRelations

    # On the session's connection: a Core statement run by the session goes through the
    # ORM's result machinery, a third of a page's read.
    conn = await session.connection()
    fetched = (await conn.execute(stmt)).all()
    passed = _passed if conn.dialect.name == "sqlite" else _json
    last = fetched[-1][_OCCURRED] if fetched else None
    rows = [CaseRow(zip(_NAMES, r, strict=True)) for r in fetched]
    links = await _links(session, [r["id"] for r in rows]) if rows and raw else []
    refs = PageRelations()
    for r in rows:
        for name in DECODED_COLUMNS:
            r[name] = _json(r[name])
        for name in PASSED_COLUMNS:
            r[name] = passed(r[name])
        for name in TIME_COLUMNS:
            r[name] = _time(r[name])
        refs.models[r["model_id"]] = r.pop("ref_model_name")
        refs.versions[r["model_version_id"]] = r.pop("ref_version_name")
        refs.sources[r["data_source_id"]] = r.pop("ref_source_name")
    for case_id, kind, url, title in links:  # as catalog.page_relations renders them
        refs.links.setdefault(case_id, []).append({"kind": kind, "url": url, "title": title})
    return rows, refs, last


async def _links(session: Any, ids: list[str]) -> list[Any]:
    """The links of `ids` as plain rows, in the order catalog.links_of gives them (by link
    id), with the ids as one parameter (catalog.links_of binds one per id)."""
    from sqlalchemy import select

    from services.catalog.models import CaseLink

    link = CaseLink.__table__
    stmt = (
        select(link.c.case_id, link.c.kind, link.c.url, link.c.title)
        .where(_ids_clause(link.c.case_id, ids, session.bind.dialect.name))
        .order_by(link.c.id)
    )
    return list((await (await session.connection()).execute(stmt)).all())


async def case_page(
    db: Any, ids: list[str], principal: Principal, raw: bool = True
) -> tuple[list[CaseRow], Any]:
    """The cases among `ids` that `principal` may see, as CaseRows, and their
    PageRelations (`raw`: as _rows)."""
    from services.catalog.models import FailureCase

    async with db.transaction() as session:
        dialect = session.bind.dialect.name
        stmt = _case_select(principal, raw).where(
            _ids_clause(FailureCase.__table__.c.id, ids, dialect)
        )
        rows, refs, _ = await _rows(session, stmt, raw)
    return rows, refs


def _live(principal: Principal, public_only: bool, raw: bool = True) -> tuple[Any, Any]:
    """The live cases `principal` may see (tombstones are no live case: RETENTION.md, and
    the search, which has no document for them), `public_only` those of sensitivity
    public: the statement of their rows, oldest first, and of their count."""
    from sqlalchemy import func, literal_column, select

    from services.catalog import service as catalog
    from services.catalog.models import FailureCase

    case = FailureCase.__table__
    where = [case.c.purged_at.is_(None)]
    if public_only:
        # Written inline, not bound: the partial index of public cases by (occurred_at, id)
        # (migration 0023) serves only a statement whose WHERE names its predicate.
        where.append(case.c.sensitivity == literal_column("'public'"))
    rows = _case_select(principal, raw).where(*where).order_by(case.c.occurred_at, case.c.id)
    count = (
        select(func.count())
        .select_from(case)
        .where(catalog.visible_cases_clause(principal), *where)
    )
    return rows, count


async def live_pages(
    db: Any, principal: Principal, public_only: bool, raw: bool = True
) -> AsyncIterator[tuple[list[CaseRow], Any, int]]:
    """Every live case `principal` may see, oldest first (the search's `occurred_at` sort:
    time, then id), BATCH at a time, each page one statement in its own short transaction
    (keyset on the (occurred_at, id) index: no page re-reads the ones before); with their
    count. What an export of no query reads instead of the search's ids: the same cases,
    without the index and a second lookup by id."""
    from sqlalchemy import DateTime, String, Text, cast, literal, tuple_

    from services.catalog.models import FailureCase

    case = FailureCase.__table__
    rows_stmt, count_stmt = _live(principal, public_only, raw)
    after: tuple[Any, str] | None = None
    async with db.transaction() as session:
        total = int((await session.execute(count_stmt)).scalar_one())
        postgres = session.bind.dialect.name == "postgresql"
    while True:
        stmt = rows_stmt.limit(BATCH)
        if after is not None:
            # The time as read: SQLite's stored text (fixed width, so it sorts as the times
            # do), not through UTCDateTime's conversion.
            when = literal(after[0], Text())
            if postgres:  # _wire_time's text, read back as the timestamptz it came from
                when = cast(when, DateTime(True))
            stmt = stmt.where(
                tuple_(case.c.occurred_at, case.c.id) > tuple_(when, literal(after[1], String()))
            )
        async with db.transaction() as session:
            await _walk_index(session)
            rows, refs, last = await _rows(session, stmt, raw)
        if rows:
            yield rows, refs, total
        if len(rows) < BATCH:
            return
        after = (last, rows[-1]["id"])


async def _walk_index(session: Any) -> None:
    """On Postgres, make the keyset page walk the (occurred_at, id) index in order and stop at
    BATCH rows, whatever the planner's statistics say: until autovacuum has analyzed a
    freshly loaded table, it estimates the page's filter (visibility, purged_at) to keep one
    row, and reads, joins and sorts every case after the keyset instead (each page then
    scans the rest of the table: 560 ms a page at 30,000 cases, 18 ms by the index). A sort
    is never needed here (the index gives the order), so the transaction's planner is told
    not to choose one; SET LOCAL ends with the page's transaction."""
    conn = await session.connection()
    if conn.dialect.name == "postgresql":
        await conn.exec_driver_sql("SET LOCAL enable_sort = off")


GROUP_TIMES = ("first_seen", "last_seen", "resolved_at", "regressed_at")
GROUP_BATCH = 5_000


async def group_rows(db: Any, ids: list[str]) -> AsyncIterator[CaseRow]:
    """The groups `ids` names (the bundle's cases' groups, whose visibility those cases
    carry), by id, as plain rows with their times as the wire writes them: what
    bundle.group_json reads of each, without an ORM object per group."""
    from sqlalchemy import select

    from services.catalog.models import FailureGroup

    group = FailureGroup.__table__
    plain = [c for c in group.c if c.name not in GROUP_TIMES]
    names = [c.name for c in plain] + list(GROUP_TIMES)
    ordered = sorted(ids)
    for start in range(0, len(ordered), GROUP_BATCH):
        async with db.transaction() as session:
            conn = await session.connection()
            stmt = (
                select(*plain, *(_wire_time(group.c[n]) for n in GROUP_TIMES))
                .where(
                    _ids_clause(group.c.id, ordered[start : start + GROUP_BATCH], conn.dialect.name)
                )
                .order_by(group.c.id)
            )
            raw = (await conn.execute(stmt)).all()
        for values in raw:
            row = CaseRow(zip(names, values, strict=True))
            for name in GROUP_TIMES:
                row[name] = _time(row[name])
            yield row


async def adjudications_page(db: Any, ids: list[str], principal: Principal) -> dict[str, Any]:
    """The adjudicated decisions of `ids` as `principal` reads them (blind-read rule
    included), by case."""
    from services.annotation import service as annotations

    async with db.transaction() as session:
        return await annotations.adjudications(session, ids, principal)


@dataclass
class Page:
    """A page of an export: its visible cases in the order they are written, their
    relations and adjudicated decisions, how many ids it covered and the total."""

    rows: list[CaseRow]
    refs: Any
    decisions: dict[str, list[Any]]
    covered: int
    total: int | None


async def export_pages(
    db: Any,
    principal: Principal,
    *,
    search: Any = None,
    request: Any = None,
    public_only: bool = False,
    raw: bool = True,
) -> AsyncIterator[Page]:
    """The pages an export writes: the search's ids (`request`) read by id, or with no
    request every live case read by keyset (`live_pages`). A task reads up to AHEAD_PAGES
    pages ahead of the caller, so the database works while the caller renders and writes.
    Not `raw`: without raw payloads and links (see _case_select)."""
    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=AHEAD_PAGES)

    async def read_search() -> None:
        async for ids, total in id_batches(search, request):
            (rows, refs), decisions = await asyncio.gather(
                case_page(db, ids, principal, raw), adjudications_page(db, ids, principal)
            )
            by_id = {r["id"]: r for r in rows}
            ordered = [by_id[i] for i in ids if i in by_id]
            await queue.put(Page(ordered, refs, decisions, len(ids), total))

    async def read_live() -> None:
        async for rows, refs, total in live_pages(db, principal, public_only, raw):
            decisions = await adjudications_page(db, [r["id"] for r in rows], principal)
            await queue.put(Page(rows, refs, decisions, len(rows), total))

    async def produce() -> None:
        try:
            await (read_live() if request is None else read_search())
            await queue.put(None)
        except Exception as exc:  # handed to the reader, which raises it
            await queue.put(exc)

    producer = asyncio.ensure_future(produce())
    try:
        while True:
            item = await queue.get()
            if isinstance(item, Exception):
                raise item
            if item is None:
                return
            yield item
    finally:
        producer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await producer


def wire_row(row: CaseRow, refs: Any, viewer: Principal) -> dict[str, Any]:
    """A case row in the wire format with `_meta`, as `wire_case(case_json(case, refs,
    viewer=viewer))` renders the ORM object (the catalog's redaction rule applied the same
    way), built in one pass: an export's per-case cost. tests/sharing/test_bundle.py
    compares the two on every exported case."""
    hidden = redaction.redacted_fields(viewer, row)
    provenance, writeup = row["provenance"], row["writeup"]
    return {
        "external_id": row["external_id"],
        "title": row["title"],
        "summary": row["summary"],
        "model": {
            "name": refs.models.get(row["model_id"]),
            "version": refs.versions.get(row["model_version_id"]),
        },
        "data_source": refs.sources.get(row["data_source_id"]),
        "occurred_at": row["occurred_at"],
        "captured_at": row["captured_at"],
        "environment": None if "environment" in hidden else row["environment"],
        "input": None if "input" in hidden else row["input"],
        "prediction": None if "prediction" in hidden else row["prediction"],
        "expected": None if "expected" in hidden else row["expected"],
        "confidence": row["confidence"],
        "latency_ms": row["latency_ms"],
        "failure_mode": row["failure_mode"],
        "severity": row["severity"],
        "impact": row["impact"],
        "signals": None if "signals" in hidden else row["signals"],
        "tags": row["tags"] or [],
        "sensitivity": row["sensitivity"],
        "payload_sensitivity": row["payload_sensitivity"],
        "team": row["team"],
        "links": refs.links.get(row["id"], []),
        "writeup": _present(writeup),
        "provenance": _present(provenance),
        "fingerprint": row["fingerprint"],
        "_meta": {
            "id": row["id"],
            "revision": row["revision"],
            "status": row["status"],
            "content_hash": row["content_hash"],
            "group_id": row["group_id"],
            "merged_into_id": row["merged_into_id"],
            "taxonomy_version": row["taxonomy_version"],
            "received_at": row["received_at"],
            "updated_at": row["updated_at"],
            "redacted_fields": list(hidden),
            "pii_findings": row["pii_findings"] or [],
        },
    }


def _present(value: Any) -> Any:
    # Stored with every sub-field; exported as sent (absent sub-fields stay absent).
    return {k: v for k, v in value.items() if v is not None} if isinstance(value, dict) else value
