"""The embedded backend: SQLite FTS5 in its own file (search.db), through aiosqlite.

Layout: `doc` holds one row per case (filter, facet and sort columns, and the text);
`doc_fts` is an external-content FTS5 index over doc's text, kept in sync by triggers, so
the two can never disagree (a trigger runs inside the writing transaction); tags and
environment pairs sit in their own indexed tables so filters and facets are joins on rowid.

bm25() has no top-k pruning in FTS5, so it only runs when the caller sorts by relevance,
and then only for the rows of the filtered matching set (see _score). A plain page with
nothing to aggregate (a deep cursor page) never materializes the set: it reads doc in sort
order, and its count stops just past the exact-total limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiosqlite

from services.search.backends.base import Progress
from services.search.documents import KEYWORDS, iso_utc, normalize, to_epoch_ms
from services.search.fields import TEXT_FIELDS
from services.search.query import (
    And,
    Exists,
    MatchAll,
    Node,
    Not,
    Or,
    Range,
    Term,
    Text,
    positive_text,
)
from services.search.request import (
    TOTAL_EXACT_UP_TO,
    Bucket,
    HeatmapCell,
    Hit,
    SearchRequest,
    SearchResult,
    Visibility,
)

# The document's keyword fields other than the id: one column each in the doc table.
SCALARS = tuple(k for k in KEYWORDS if k != "id")
COLUMNS = (
    "id",
    "revision",
    *SCALARS,
    "severity_rank",
    "occurred_at",
    "received_at",
    "confidence",
    "latency_ms",
    "tags",
    "environment",
)
NUMERIC = ("severity_rank", "occurred_at", "received_at", "confidence", "latency_ms")
# bm25 column weights, in TEXT_FIELDS order: a title match counts most (as title^3 does in
# the OpenSearch query).
WEIGHTS = (3.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0)
HL_OPEN, HL_CLOSE = "\x02", "\x03"

_text_cols = ", ".join(TEXT_FIELDS)
_new_text = ", ".join(f"new.{c}" for c in TEXT_FIELDS)
_old_text = ", ".join(f"old.{c}" for c in TEXT_FIELDS)

_DELETE_TRIGGER = """CREATE TRIGGER IF NOT EXISTS doc_ad AFTER DELETE ON doc BEGIN
    DELETE FROM doc_text WHERE pk = old.pk;
    DELETE FROM doc_tag WHERE pk = old.pk;
    DELETE FROM doc_env WHERE pk = old.pk;
END"""

_TEXT_DELETE_TRIGGER = f"""CREATE TRIGGER IF NOT EXISTS doc_text_ad AFTER DELETE ON doc_text
BEGIN
    INSERT INTO doc_fts(doc_fts, rowid, {_text_cols}) VALUES ('delete', old.pk, {_old_text});
END"""

# `doc` is kept narrow (no text): facets and filters scan it, and SQLite reads a row's
# columns in order, so long text in the same row would drag overflow pages into every scan.
SCHEMA = f"""
CREATE TABLE IF NOT EXISTS doc (
    pk INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    revision INTEGER NOT NULL,
    {", ".join(f"{c} TEXT" for c in SCALARS)},
    severity_rank INTEGER,
    occurred_at INTEGER,
    received_at INTEGER,
    confidence REAL,
    latency_ms REAL,
    tags TEXT,
    environment TEXT
);
CREATE TABLE IF NOT EXISTS doc_text (
    pk INTEGER PRIMARY KEY,
    {", ".join(f"{c} TEXT" for c in TEXT_FIELDS)}
);
CREATE TABLE IF NOT EXISTS doc_tag (
    tag TEXT NOT NULL, pk INTEGER NOT NULL, PRIMARY KEY (tag, pk)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS ix_doc_tag_pk ON doc_tag (pk);
CREATE TABLE IF NOT EXISTS doc_env (
    key TEXT NOT NULL, value TEXT NOT NULL, pk INTEGER NOT NULL,
    PRIMARY KEY (key, value, pk)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS ix_doc_env_pk ON doc_env (pk);
CREATE INDEX IF NOT EXISTS ix_doc_occurred ON doc (occurred_at, id);
CREATE INDEX IF NOT EXISTS ix_doc_severity ON doc (severity_rank, occurred_at);
{"".join(f"CREATE INDEX IF NOT EXISTS ix_doc_{c} ON doc ({c});" for c in SCALARS)}
CREATE INDEX IF NOT EXISTS ix_doc_confidence ON doc (confidence);
CREATE INDEX IF NOT EXISTS ix_doc_latency ON doc (latency_ms);
CREATE VIRTUAL TABLE IF NOT EXISTS doc_fts USING fts5(
    {_text_cols}, content='doc_text', content_rowid='pk',
    tokenize='porter unicode61 remove_diacritics 2');
{_DELETE_TRIGGER};
CREATE TRIGGER IF NOT EXISTS doc_text_ai AFTER INSERT ON doc_text BEGIN
    INSERT INTO doc_fts(rowid, {_text_cols}) VALUES (new.pk, {_new_text});
END;
{_TEXT_DELETE_TRIGGER};
CREATE TRIGGER IF NOT EXISTS doc_text_au AFTER UPDATE ON doc_text BEGIN
    INSERT INTO doc_fts(doc_fts, rowid, {_text_cols}) VALUES ('delete', old.pk, {_old_text});
    INSERT INTO doc_fts(rowid, {_text_cols}) VALUES (new.pk, {_new_text});
END;
"""

_UPSERT = (
    f"INSERT INTO doc ({', '.join(COLUMNS)}) VALUES ({', '.join('?' for _ in COLUMNS)}) "
    f"ON CONFLICT (id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in COLUMNS[1:])
    + " WHERE excluded.revision > doc.revision"
)
_UPSERT_TEXT = (
    f"INSERT INTO doc_text (pk, {_text_cols}) VALUES (?, {', '.join('?' for _ in TEXT_FIELDS)})"
    " ON CONFLICT (pk) DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in TEXT_FIELDS)
)

READERS = 4


def fts_phrase(text: str) -> str:
    """A value as an FTS5 string: FTS5 tokenizes it, so it matches as a phrase."""
    return '"' + text.replace('"', '""') + '"'


class _Sql:
    """A WHERE fragment and its parameters, built up from the AST."""

    def __init__(self) -> None:
        self.params: list[Any] = []

    def add(self, *values: Any) -> str:
        self.params.extend(values)
        return ", ".join("?" for _ in values)


def _fts_expr(node: Node) -> str | None:
    """The FTS5 MATCH expression of a purely full-text subtree, or None if it is not one."""
    if isinstance(node, Text):
        phrase = fts_phrase(node.value)
        return f"{node.field} : {phrase}" if node.field else phrase
    if isinstance(node, And | Or):
        parts = [_fts_expr(c) for c in node.children]
        if any(p is None for p in parts):
            return None
        joiner = " AND " if isinstance(node, And) else " OR "
        return "(" + joiner.join(parts) + ")"  # type: ignore[arg-type]
    return None


def _where(node: Node, sql: _Sql, probe: bool = False) -> str:
    """`probe`: the condition will not drive the query (it sits under a negation, or beside
    a text match whose rowids do), so tag and environment tests look up the current row (a
    primary-key probe) rather than first list every matching rowid, which for a common tag
    or region is a large part of the corpus."""
    if isinstance(node, MatchAll):
        return "1"
    expr = _fts_expr(node)
    if expr is not None:
        return f"d.pk IN (SELECT rowid FROM doc_fts WHERE doc_fts MATCH {sql.add(expr)})"
    if isinstance(node, And):
        # Text children share one MATCH: one FTS lookup instead of one per word.
        texts = [c for c in node.children if _fts_expr(c) is not None]
        rest = [c for c in node.children if _fts_expr(c) is None]
        parts = (
            [_where(And(tuple(texts)) if len(texts) > 1 else texts[0], sql, probe)] if texts else []
        )
        # With a text conjunct, the FTS rowid list drives the query; the other tests then
        # probe each candidate row instead of listing every tag/environment match.
        parts += [_where(c, sql, probe or bool(texts)) for c in rest]
        return "(" + " AND ".join(parts) + ")"
    if isinstance(node, Or):
        return "(" + " OR ".join(_where(c, sql, probe) for c in node.children) + ")"
    if isinstance(node, Not):
        if isinstance(node.child, MatchAll):
            return "0"
        # NULL (no value) is "not matching", as must_not treats a missing field.
        return f"NOT coalesce({_where(node.child, sql, True)}, 0)"
    if isinstance(node, Term):
        return _term(node.field, node.values, sql, probe)
    if isinstance(node, Range):
        ops = {"gte": ">=", "gt": ">", "lte": "<=", "lt": "<"}
        conds = [
            f"d.{node.field} {ops[k]} {sql.add(getattr(node, k))}"
            for k in ("gte", "gt", "lte", "lt")
            if getattr(node, k) is not None
        ]
        return "(" + " AND ".join(conds or [f"d.{node.field} IS NOT NULL"]) + ")"
    if isinstance(node, Exists):
        if node.field == "tags":
            return "d.pk IN (SELECT pk FROM doc_tag)"
        if node.field.startswith("env."):
            return f"d.pk IN (SELECT pk FROM doc_env WHERE key = {sql.add(node.field[4:])})"
        if node.field in TEXT_FIELDS:
            return f"d.pk IN (SELECT pk FROM doc_text WHERE {node.field} IS NOT NULL)"
        return f"d.{node.field} IS NOT NULL"
    raise TypeError(f"unknown node {node!r}")  # pragma: no cover


def _term(field: str, values: tuple[str, ...], sql: _Sql, probe: bool = False) -> str:
    if probe and field == "tags":
        return f"EXISTS (SELECT 1 FROM doc_tag WHERE tag IN ({sql.add(*values)}) AND pk = d.pk)"
    if probe and field.startswith("env."):
        return (
            f"EXISTS (SELECT 1 FROM doc_env WHERE key = {sql.add(field[4:])} "
            f"AND value IN ({sql.add(*values)}) AND pk = d.pk)"
        )
    if field == "tags":
        return f"d.pk IN (SELECT pk FROM doc_tag WHERE tag IN ({sql.add(*values)}))"
    if field.startswith("env."):
        return (
            f"d.pk IN (SELECT pk FROM doc_env WHERE key = {sql.add(field[4:])} "
            f"AND value IN ({sql.add(*values)}))"
        )
    return f"d.{field} IN ({sql.add(*values)})"


def _visibility(vis: Visibility, sql: _Sql) -> str:
    # Unary + keeps SQLite from driving the query off these barely selective indexes.
    return vis.sql_text("+d.team", "+d.sensitivity", sql.add)


# (expression, descending?) per sort; the last key is always the unique id.
def _sort_keys(sort: str, scored: bool) -> list[tuple[str, bool]]:
    match sort:
        case "relevance":
            return [("score", True), ("d.id", False)] if scored else [("d.id", False)]
        case "occurred_at":
            return [("d.occurred_at", False), ("d.id", False)]
        case "-occurred_at":
            return [("d.occurred_at", True), ("d.id", False)]
        case "severity":
            return [
                ("coalesce(d.severity_rank, 99)", False),
                ("d.occurred_at", True),
                ("d.id", False),
            ]
        case _:
            return [
                ("coalesce(d.severity_rank, -1)", True),
                ("d.occurred_at", True),
                ("d.id", False),
            ]


def _after(keys: list[tuple[str, bool]], values: tuple[Any, ...], sql: _Sql) -> str:
    """Keyset condition: rows strictly after `values` in the sort order (search_after)."""
    if len(values) != len(keys):
        from services.search.request import _bad

        raise _bad("after", "not a cursor returned by this search")
    ors = []
    for i, (expr, desc) in enumerate(keys):
        eqs = [f"{keys[j][0]} = {sql.add(values[j])}" for j in range(i)]
        eqs.append(f"{expr} {'<' if desc else '>'} {sql.add(values[i])}")
        ors.append("(" + " AND ".join(eqs) + ")")
    return "(" + " OR ".join(ors) + ")"


_MS = {"hour": 3_600_000, "day": 86_400_000, "week": 7 * 86_400_000}


def _histogram_key(interval: str) -> str:
    if interval == "month":
        return (
            "CAST(strftime('%s', strftime('%Y-%m-01', d.occurred_at / 1000, 'unixepoch'))"
            " AS INTEGER) * 1000"
        )
    if interval == "week":
        # Weeks start on Monday (as in OpenSearch); 1970-01-01 was a Thursday, so shift by
        # 3 days before flooring. The double modulo floors negative (pre-1970) times too.
        m, shift = _MS["week"], 3 * 86_400_000
        return (
            f"(d.occurred_at + {shift} - (((d.occurred_at + {shift}) % {m}) + {m}) % {m} - {shift})"
        )
    m = _MS[interval]
    return f"(d.occurred_at - ((d.occurred_at % {m}) + {m}) % {m})"


def _value_source(field: str, sql: _Sql) -> tuple[str, str]:
    """(join clause, value expression) to group a facet field by.

    CROSS JOIN keeps the rows being counted as the outer loop, probing the (pk)-indexed
    value tables per row; left to itself SQLite may walk every tag or environment row and
    probe the (small) matching set instead."""
    if field == "tags":
        return "CROSS JOIN doc_tag v ON v.pk = d.pk", "v.tag"
    if field == "env":
        return "CROSS JOIN doc_env v ON v.pk = d.pk", "v.key"
    if field.startswith("env."):
        return f"CROSS JOIN doc_env v ON v.pk = d.pk AND v.key = {sql.add(field[4:])}", "v.value"
    return "", f"d.{field}"


def _doc_row(doc: dict[str, Any]) -> tuple[Any, ...]:
    row = []
    for c in COLUMNS:
        value = doc.get(c)
        if c in ("occurred_at", "received_at"):
            value = to_epoch_ms(value)
        elif c == "tags":
            value = json.dumps(value)
        elif c == "environment":
            value = json.dumps(value, sort_keys=True)
        row.append(value)
    return tuple(row)


def _highlight(snippet: str) -> str:
    """Escape the snippet as OpenSearch's html encoder does, then mark the matches."""
    return html.escape(snippet, quote=False).replace(HL_OPEN, "<em>").replace(HL_CLOSE, "</em>")


class EmbeddedBackend:
    name = "embedded"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._writer: aiosqlite.Connection | None = None
        self._write_lock = asyncio.Lock()
        self._readers: asyncio.Queue[aiosqlite.Connection] = asyncio.Queue()
        self._all_readers: list[aiosqlite.Connection] = []

    # ---- lifecycle ----------------------------------------------------------------------

    async def _connect(self) -> aiosqlite.Connection:
        conn = await aiosqlite.connect(self.path, isolation_level=None)
        for pragma in (
            "journal_mode=WAL",
            "synchronous=NORMAL",
            "busy_timeout=30000",
            "temp_store=MEMORY",
            "cache_size=-65536",
            "mmap_size=268435456",
        ):
            await conn.execute(f"PRAGMA {pragma}")
        return conn

    async def ensure_ready(self) -> None:
        if self._writer is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = await self._connect()
        await self._writer.executescript(SCHEMA)
        for _ in range(READERS):
            conn = await self._connect()
            # Per connection: the matching rowids of the search running on it.
            await conn.execute("CREATE TEMP TABLE m (pk INTEGER PRIMARY KEY, score REAL)")
            self._all_readers.append(conn)
            self._readers.put_nowait(conn)

    async def close(self) -> None:
        for conn in [*self._all_readers, *([self._writer] if self._writer else [])]:
            await conn.close()
        self._all_readers.clear()
        self._readers = asyncio.Queue()
        self._writer = None

    async def ping(self) -> bool:
        if not self._all_readers:
            return False  # not opened (yet), or closed
        try:
            async with self._reader() as conn:
                await conn.execute_fetchall("SELECT 1 FROM doc LIMIT 1")
            return True
        except Exception:
            return False

    @contextlib.asynccontextmanager
    async def _reader(self) -> AsyncIterator[aiosqlite.Connection]:
        conn = await self._readers.get()
        try:
            yield conn
        finally:
            self._readers.put_nowait(conn)

    @contextlib.asynccontextmanager
    async def _write(self) -> AsyncIterator[aiosqlite.Connection]:
        """One write transaction; the lock keeps a rebuild and the indexer from interleaving."""
        assert self._writer is not None, "ensure_ready() first"
        async with self._write_lock:
            await self._writer.execute("BEGIN IMMEDIATE")
            try:
                yield self._writer
            except BaseException:
                await self._writer.execute("ROLLBACK")
                raise
            await self._writer.execute("COMMIT")

    # ---- writes -------------------------------------------------------------------------

    async def index(self, docs: list[dict[str, Any]]) -> int:
        if not docs:
            return 0
        async with self._write() as conn:
            return await self._index_in(conn, [normalize(d) for d in docs])

    async def _index_in(self, conn: aiosqlite.Connection, docs: list[dict[str, Any]]) -> int:
        # Highest revision per id within the batch, then only those newer than the index.
        latest: dict[str, dict[str, Any]] = {}
        for d in docs:
            if d["id"] not in latest or d["revision"] > latest[d["id"]]["revision"]:
                latest[d["id"]] = d
        ids = list(latest)
        stored: dict[str, int] = {}
        for chunk in _chunks(ids, 500):
            rows = await conn.execute_fetchall(
                f"SELECT id, revision FROM doc WHERE id IN ({', '.join('?' for _ in chunk)})", chunk
            )
            stored.update({r[0]: r[1] for r in rows})
        fresh = [d for d in latest.values() if d["revision"] > stored.get(d["id"], -1)]
        if not fresh:
            return 0
        await conn.executemany(_UPSERT, [_doc_row(d) for d in fresh])
        pks: dict[str, int] = {}
        for chunk in _chunks([d["id"] for d in fresh], 500):
            rows = await conn.execute_fetchall(
                f"SELECT id, pk FROM doc WHERE id IN ({', '.join('?' for _ in chunk)})", chunk
            )
            pks.update({r[0]: r[1] for r in rows})
        await conn.executemany(
            _UPSERT_TEXT, [(pks[d["id"]], *(d[c] for c in TEXT_FIELDS)) for d in fresh]
        )
        touched = [(pks[d["id"]],) for d in fresh if d["id"] in stored]
        if touched:
            await conn.executemany("DELETE FROM doc_tag WHERE pk = ?", touched)
            await conn.executemany("DELETE FROM doc_env WHERE pk = ?", touched)
        await conn.executemany(
            "INSERT INTO doc_tag (tag, pk) VALUES (?, ?)",
            [(t, pks[d["id"]]) for d in fresh for t in d["tags"]],
        )
        await conn.executemany(
            "INSERT INTO doc_env (key, value, pk) VALUES (?, ?, ?)",
            [(k, v, pks[d["id"]]) for d in fresh for k, v in d["environment"].items()],
        )
        return len(fresh)

    async def delete(self, ids: list[str]) -> None:
        if ids:
            async with self._write() as conn:
                await conn.executemany("DELETE FROM doc WHERE id = ?", [(i,) for i in ids])

    async def rebuild(
        self, batches: AsyncIterator[list[dict[str, Any]]], progress: Progress | None = None
    ) -> int:
        # One write transaction: searches keep reading the last committed state (WAL
        # snapshots) until the new contents commit all at once, which is the swap.
        done = 0
        async with self._write() as conn:
            # Clear the FTS index in one step; without the delete triggers, so that FTS5
            # is not asked to remove rows one by one (or rows it no longer holds).
            await conn.execute("INSERT INTO doc_fts(doc_fts) VALUES ('delete-all')")
            await conn.execute("DROP TRIGGER doc_ad")
            await conn.execute("DROP TRIGGER doc_text_ad")
            for table in ("doc", "doc_text", "doc_tag", "doc_env"):
                await conn.execute(f"DELETE FROM {table}")
            await conn.execute(_DELETE_TRIGGER)
            await conn.execute(_TEXT_DELETE_TRIGGER)
            async for batch in batches:
                await self._index_in(conn, [normalize(d) for d in batch])
                done += len(batch)
                if progress:
                    progress(done, None)
            await conn.execute("INSERT INTO doc_fts(doc_fts) VALUES ('optimize')")
        return done

    async def refresh(self) -> None:
        return None  # a committed write is searchable at once

    # ---- reads --------------------------------------------------------------------------

    async def revisions(self) -> dict[str, int]:
        async with self._reader() as conn:
            rows = await conn.execute_fetchall("SELECT id, revision FROM doc")
        return {r[0]: r[1] for r in rows}

    async def search(self, req: SearchRequest) -> SearchResult:
        async with self._reader() as conn:
            # One read transaction: hits, counts and facets all see the same snapshot.
            await conn.execute("BEGIN")
            try:
                return await self._search(conn, req)
            finally:
                await conn.execute("COMMIT")

    def _filters(
        self, req: SearchRequest, skip: str | None = None, selections: bool = True
    ) -> tuple[str, list[Any]]:
        sql = _Sql()
        parts = [_visibility(req.visibility, sql), _where(req.query, sql)]
        if selections:
            parts += [_term(f, vs, sql) for f, vs in req.selections.items() if f != skip]
        return " AND ".join(parts), sql.params

    async def _search(self, conn: aiosqlite.Connection, req: SearchRequest) -> SearchResult:
        where, params = self._filters(req)
        texts = positive_text(req.query)
        score_expr = " OR ".join(_fts_expr(t) or "" for t in texts) if texts else None
        scored = req.sort == "relevance" and score_expr is not None
        if scored or req.facets or req.histogram or req.heatmap:
            # The matching set is computed once into a temp table (rowids, then scores), and
            # hits, count, facets, histogram and heatmap all read it instead of re-running
            # the filters.
            await conn.execute("DELETE FROM temp.m")
            await conn.execute(
                f"INSERT INTO temp.m (pk) SELECT d.pk FROM doc d WHERE {where}", params
            )
            if scored:
                await self._score(conn, score_expr)  # type: ignore[arg-type]
            hits, has_more, by_pk = await self._hits(conn, req, scored, "temp.m m", "1", [])
            total = (await conn.execute_fetchall("SELECT count(*) FROM temp.m"))[0][0]
        else:
            # Nothing needs the whole set (a plain page, such as a deep cursor page): the
            # page reads doc in sort order and the count stops past the exact limit, so the
            # cost follows the page, not the number of matches.
            hits, has_more, by_pk = await self._hits(conn, req, False, "", where, params)
            total = (
                await conn.execute_fetchall(
                    f"SELECT count(*) FROM (SELECT 1 FROM doc d WHERE {where} "
                    f"LIMIT {TOTAL_EXACT_UP_TO + 1})",
                    params,
                )
            )[0][0]
        if req.highlight and score_expr and hits:
            await self._highlights(conn, score_expr, by_pk)
        facets = {f: await self._facet(conn, req, f) for f in req.facets}
        histogram = await self._histogram(conn, req) if req.histogram else []
        heatmap = await self._heatmap(conn, req) if req.heatmap else []
        return SearchResult(
            hits=hits,
            total=min(total, TOTAL_EXACT_UP_TO),
            total_is_lower_bound=total > TOTAL_EXACT_UP_TO,
            facets=facets,
            histogram=histogram,
            heatmap=heatmap,
            next_cursor="more" if has_more else None,
        )

    async def _score(self, conn: aiosqlite.Connection, match: str) -> None:
        """bm25 of the matching set's rows. The FTS scan drives (a cheap walk of rowids)
        and probes temp.m by primary key; bm25, which reads each row's sizes and positions,
        only runs for the rows that pass the probe, as it sits in the flattened subquery.
        (A materialized CTE would score every match; `rowid IN temp.m` would restart the
        FTS query once per row.)"""
        weights = ", ".join(str(w) for w in WEIGHTS)
        await conn.execute(
            f"UPDATE temp.m SET score = s.score FROM (SELECT rowid AS pk, "
            f"-bm25(doc_fts, {weights}) AS score FROM doc_fts WHERE doc_fts MATCH ?) AS s "
            f"WHERE temp.m.pk = s.pk",
            [match],
        )

    async def _hits(
        self,
        conn: aiosqlite.Connection,
        req: SearchRequest,
        scored: bool,
        source: str,
        where: str,
        params: list[Any],
    ) -> tuple[list[Hit], bool, dict[int, Hit]]:
        """One page in sort order, from the matching set (`source` "temp.m m") or straight
        from doc under `where`."""
        keys = _sort_keys(req.sort, scored)
        if scored:
            keys = [(k.replace("score", "coalesce(m.score, 0.0)"), d) for k, d in keys]
        sql = _Sql()
        sql.params.extend(params)
        conds = [where]
        if req.after is not None:
            conds.append(_after(keys, req.after, sql))
        elif scored:
            # First page: the page's lowest score, read from temp.m alone, so that only rows
            # scoring at least that (ties included) are joined to doc and sorted, rather
            # than the whole set.
            floor = await conn.execute_fetchall(
                "SELECT coalesce(score, 0.0) AS s FROM temp.m ORDER BY s DESC LIMIT 1 OFFSET ?",
                [req.first],
            )
            if floor:
                conds.append(f"coalesce(m.score, 0.0) >= {sql.add(floor[0][0])}")
        order = ", ".join(f"{k} {'DESC' if d else 'ASC'}" for k, d in keys)
        frm = f"{source} CROSS JOIN doc d ON d.pk = m.pk" if source else "doc d"
        stmt = (
            f"SELECT d.pk, d.id, {', '.join(k for k, _ in keys)} FROM {frm} "
            f"WHERE {' AND '.join(conds)} ORDER BY {order} LIMIT {sql.add(req.first + 1)}"
        )
        rows = await conn.execute_fetchall(stmt, sql.params)
        has_more = len(rows) > req.first
        hits, by_pk = [], {}
        for row in rows[: req.first]:
            values = tuple(row[2:])
            score = values[0] if scored else None
            hit = Hit(id=row[1], score=score, highlights={}, sort_values=values)
            hits.append(hit)
            by_pk[row[0]] = hit
        return hits, has_more, by_pk

    async def _highlights(
        self, conn: aiosqlite.Connection, match: str, by_pk: dict[int, Hit]
    ) -> None:
        cols = ", ".join(
            f"snippet(doc_fts, {i}, '{HL_OPEN}', '{HL_CLOSE}', '…', 24)"
            for i in range(len(TEXT_FIELDS))
        )
        pks = list(by_pk)
        rows = await conn.execute_fetchall(
            f"SELECT rowid, {cols} FROM doc_fts WHERE doc_fts MATCH ? "
            f"AND rowid IN ({', '.join('?' for _ in pks)})",
            [match, *pks],
        )
        for row in rows:
            hit = by_pk[row[0]]
            for name, snippet in zip(TEXT_FIELDS, row[1:], strict=True):
                if snippet and HL_OPEN in snippet:
                    hit.highlights[name] = [_highlight(snippet)]

    async def _facet(
        self, conn: aiosqlite.Connection, req: SearchRequest, field: str
    ) -> list[Bucket]:
        sql = _Sql()
        join, value = _value_source(field, sql)
        if field in req.selections:
            # Multi-select: this facet's own selection must not narrow its counts, so it
            # counts over the filters without it instead of over the matching set.
            where, params = self._filters(req, skip=field)
            source, params = f"doc d {join} WHERE {where} AND", [*sql.params, *params]
        else:
            source, params = f"temp.m m CROSS JOIN doc d ON d.pk = m.pk {join} WHERE", sql.params
        rows = await conn.execute_fetchall(
            f"SELECT {value}, count(*) AS c FROM {source} {value} IS NOT NULL "
            f"GROUP BY {value} ORDER BY c DESC, {value} ASC LIMIT {int(req.facet_size)}",
            params,
        )
        return [Bucket(str(r[0]), r[1]) for r in rows]

    async def _histogram(self, conn: aiosqlite.Connection, req: SearchRequest) -> list[Bucket]:
        key = _histogram_key(req.histogram or "day")
        rows = await conn.execute_fetchall(
            f"SELECT {key} AS k, count(*) FROM temp.m m CROSS JOIN doc d ON d.pk = m.pk "
            f"WHERE d.occurred_at IS NOT NULL GROUP BY k ORDER BY k"
        )
        return [Bucket(iso_utc(r[0]), r[1]) for r in rows]

    async def _heatmap(self, conn: aiosqlite.Connection, req: SearchRequest) -> list[HeatmapCell]:
        assert req.heatmap is not None
        sx, sy = _Sql(), _Sql()
        jx, vx = _value_source(req.heatmap.x, sx)
        jy, vy = _value_source(req.heatmap.y, sy)
        jx, vx = jx.replace(" v ", " vx ").replace("v.", "vx."), vx.replace("v.", "vx.")
        jy, vy = jy.replace(" v ", " vy ").replace("v.", "vy."), vy.replace("v.", "vy.")
        size = int(req.heatmap.size)
        # CROSS JOIN: SQLite then keeps the (small) matching set as the outer loop instead
        # of walking a whole index of doc and probing the set.
        base = "temp.m m CROSS JOIN doc d ON d.pk = m.pk"
        if not jy:
            # y is a column of doc, so each document adds one (x, y) row (y may be NULL)
            # and x's document count is the sum of its cells: one pass over the set.
            rows = await conn.execute_fetchall(
                f"SELECT {vx}, {vy}, count(*) FROM {base} {jx} WHERE {vx} IS NOT NULL "
                f"GROUP BY {vx}, {vy}",
                sx.params,
            )
            totals: dict[Any, int] = {}
            cells: dict[Any, list[tuple[Any, int]]] = {}
            for x, y, c in rows:
                totals[x] = totals.get(x, 0) + c
                if y is not None:
                    cells.setdefault(x, []).append((y, c))
            top = sorted(totals, key=lambda x: (-totals[x], x))[:size]
            return [
                HeatmapCell(str(x), str(y), c)
                for x in top
                for y, c in sorted(cells.get(x, []), key=lambda yc: (-yc[1], yc[0]))[:size]
            ]
        # The top x values first, then the top y values within each, as nested terms
        # aggregations do.
        stmt = (
            f"WITH top AS (SELECT {vx} AS x, count(*) AS c FROM {base} {jx} "
            f"WHERE {vx} IS NOT NULL GROUP BY {vx} ORDER BY c DESC, x ASC LIMIT {size}), "
            f"cells AS (SELECT {vx} AS x, {vy} AS y, count(*) AS c, row_number() OVER "
            f"(PARTITION BY {vx} ORDER BY count(*) DESC, {vy} ASC) AS rn "
            f"FROM {base} {jx} {jy} WHERE {vx} IN (SELECT x FROM top) "
            f"AND {vy} IS NOT NULL GROUP BY {vx}, {vy}) "
            f"SELECT cells.x, cells.y, cells.c FROM cells JOIN top ON top.x = cells.x "
            f"WHERE rn <= {size} ORDER BY top.c DESC, top.x ASC, cells.c DESC, cells.y ASC"
        )
        rows = await conn.execute_fetchall(stmt, [*sx.params, *sx.params, *sy.params])
        return [HeatmapCell(str(r[0]), str(r[1]), r[2]) for r in rows]

    async def similar(self, visibility: Visibility, case_id: str, first: int) -> list[Hit]:
        sql = _Sql()
        where = f"d.id = {sql.add(case_id)} AND {_visibility(visibility, sql)}"
        async with self._reader() as conn:
            rows = await conn.execute_fetchall(
                f"SELECT d.pk, {', '.join('t.' + c for c in TEXT_FIELDS)} FROM doc d "
                f"JOIN doc_text t ON t.pk = d.pk WHERE {where}",
                sql.params,
            )
            if not rows:
                return []
            pk, texts = rows[0][0], [t for t in rows[0][1:] if t]
            terms = await self._key_terms(conn, " ".join(texts))
            if not terms:
                return []
            sql = _Sql()
            match = " OR ".join(fts_phrase(t) for t in terms)
            weights = ", ".join(str(w) for w in WEIGHTS)
            stmt = (
                f"WITH s AS MATERIALIZED (SELECT rowid AS pk, -bm25(doc_fts, {weights}) AS score"
                f" FROM doc_fts WHERE doc_fts MATCH {sql.add(match)}) "
                f"SELECT d.id, s.score FROM s JOIN doc d ON d.pk = s.pk "
                f"WHERE d.pk != {sql.add(pk)} AND {_visibility(visibility, sql)} "
                f"ORDER BY s.score DESC, d.id LIMIT {sql.add(first)}"
            )
            hits = await conn.execute_fetchall(stmt, sql.params)
        return [Hit(id=r[0], score=r[1], highlights={}) for r in hits]

    async def _key_terms(self, conn: aiosqlite.Connection, text: str, limit: int = 25) -> list[str]:
        """The document's most telling words (tf x idf), like more_like_this picks them."""
        import math
        import re

        from services.search.query import STOPWORDS

        tf: dict[str, int] = {}
        for word in re.findall(r"[^\W_]{3,}", text.lower()):
            if word not in STOPWORDS and not word.isdigit():
                tf[word] = tf.get(word, 0) + 1
        candidates = sorted(tf, key=lambda w: -tf[w])[:100]
        total = (await conn.execute_fetchall("SELECT count(*) FROM doc"))[0][0] or 1
        scored = []
        for word in candidates:
            df = (
                await conn.execute_fetchall(
                    "SELECT count(*) FROM doc_fts WHERE doc_fts MATCH ?", [fts_phrase(word)]
                )
            )[0][0]
            if df > 1:  # a word no other document has cannot find a similar one
                scored.append((tf[word] * math.log(1 + total / df), word))
        scored.sort(reverse=True)
        return [w for _, w in scored[:limit]]


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
