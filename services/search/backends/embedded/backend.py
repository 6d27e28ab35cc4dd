"""The embedded backend: SQLite FTS5 in its own file (search.db); writes through aiosqlite,
reads through sqlite3 connections, each read whole in one worker thread (pool.py).

A search computes its matching set once into a temp table (rowids, then scores) when
anything needs the whole set (relevance, facets, histogram, heatmap); hits, count and every
aggregation read it. bm25() has no top-k pruning in FTS5, so it only runs when the caller
sorts by relevance, and then only for the rows of the filtered matching set (see _score). A
plain page with nothing to aggregate (a deep cursor page) never materializes the set: it
reads doc in sort order, and its count stops just past the exact-total limit. A search that
tests only visibility (or one counted selection) reads its aggregations from the counts the
writer keeps (counts.py), and a set that is not most of the index counts its facets in one
read of its rows (aggregations.one_pass).
"""

from __future__ import annotations

import contextlib
import html
import os
import re
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from services.search.backends.base import Progress
from services.search.backends.embedded import aggregations, counts
from services.search.backends.embedded.compiler import Compiler, Sql
from services.search.backends.embedded.layout import (
    HL_CLOSE,
    HL_OPEN,
    VISIBILITY_COLUMNS,
    Layout,
)
from services.search.backends.embedded.pool import Pool
from services.search.backends.embedded.similar import similar
from services.search.backends.embedded.writes import Writer
from services.search.fields import SCHEMA, DocumentSchema
from services.search.query import positive_text
from services.search.request import (
    TOTAL_EXACT_UP_TO,
    Hit,
    SearchRequest,
    SearchResult,
    Visibility,
)

# Every table any layout made (older ones included): an outdated file loses them all.
_TABLES = (
    "doc_fts",
    "doc_plain",
    "doc",
    "doc_text",
    "doc_tag",
    "doc_kw",
    "doc_env",
    "doc_count",
)


# A matching set under 1 in PAGE_WALK of the index is sorted for its page; a denser one is
# met often enough walking doc in sort order (about PAGE_WALK rows read per hit, at worst).
PAGE_WALK = 50
# A facet walks its field's whole index when the set holds at least this share of it;
# joining a smaller set to doc and sorting it costs less (measured at 100,000 cases: the
# walk costs what joining and sorting 40% of the index does).
FACET_WALK = 0.4


# The columns of doc a compiled WHERE reads (the compiler writes them all as `d.<name>`).
_COLUMN = re.compile(r"\bd\.(\w+)")
_INDEXED_EVERYWHERE = {"pk", *VISIBILITY_COLUMNS}


def _highlight(snippet: str) -> str:
    """Escape the snippet as OpenSearch's html encoder does, then mark the matches."""
    return html.escape(snippet, quote=False).replace(HL_OPEN, "<em>").replace(HL_CLOSE, "</em>")


class EmbeddedBackend:
    name = "embedded"

    def __init__(self, path: Path, schema: DocumentSchema = SCHEMA) -> None:
        self.path = path
        self.schema = schema
        self.layout = Layout(schema)
        self.compiler = Compiler(self.layout)
        self.writer = Writer(self.layout)
        self.pool = Pool(path)
        self._outdated = False

    # ---- lifecycle ----------------------------------------------------------------------

    async def ensure_ready(self) -> None:
        if self.pool.writer is not None:
            return
        conn = await self.pool.open_writer()
        version = (await conn.execute_fetchall("PRAGMA user_version"))[0][0]
        if version != self.layout.fingerprint:
            existing = await conn.execute_fetchall(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'doc'"
            )
            # A file made for another field table: its tables cannot answer this one's
            # queries, so they are replaced and the index must be rebuilt from the catalog.
            # The file keeps its old version until `rebuild` commits, so whichever process
            # opens it next still knows it is outdated.
            self._outdated = bool(existing)
            await conn.execute("BEGIN IMMEDIATE")
            for table in _TABLES:
                await conn.execute(f"DROP TABLE IF EXISTS {table}")
            await conn.execute("COMMIT")
            await conn.executescript(self.layout.ddl)
            if not existing:
                await conn.execute(f"PRAGMA user_version = {self.layout.fingerprint}")
        await self.pool.open_readers()

    async def outdated(self) -> bool:
        return self._outdated

    async def close(self) -> None:
        await self.pool.close()

    async def drop(self) -> None:
        await self.pool.close()
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(f"{self.path}{suffix}")

    async def ping(self) -> bool:
        if not self.pool.open:
            return False  # not opened (yet), or closed
        try:
            await self.pool.read(lambda conn: conn.execute("SELECT 1 FROM doc LIMIT 1").fetchall())
            return True
        except (sqlite3.Error, ValueError):
            return False

    # ---- writes -------------------------------------------------------------------------

    async def index(self, docs: list[dict[str, Any]]) -> int:
        if not docs:
            return 0
        async with self.pool.write() as conn:
            return await self.writer.index(conn, docs)

    async def delete(self, ids: list[str]) -> None:
        if ids:
            async with self.pool.write() as conn:
                await self.writer.delete(conn, ids)

    async def rebuild(
        self, batches: AsyncIterator[list[dict[str, Any]]], progress: Progress | None = None
    ) -> int:
        async with self.pool.write() as conn:
            done = await self.writer.rebuild(conn, batches, progress)
            # In the same transaction: the file is current exactly when its contents are.
            await conn.execute(f"PRAGMA user_version = {self.layout.fingerprint}")
        self._outdated = False
        return done

    async def refresh(self) -> None:
        return None  # a committed write is searchable at once

    # ---- reads --------------------------------------------------------------------------

    async def revisions(self) -> dict[str, int]:
        rows = await self.pool.read(
            lambda conn: conn.execute("SELECT id, revision FROM doc").fetchall()
        )
        return {r[0]: r[1] for r in rows}

    async def similar(self, visibility: Visibility, case_id: str, first: int) -> list[Hit]:
        return await self.pool.read(
            lambda conn: similar(conn, self.compiler, visibility, case_id, first)
        )

    async def search(self, req: SearchRequest) -> SearchResult:
        return await self.pool.read(lambda conn: self._read(conn, req))

    def _read(self, conn: sqlite3.Connection, req: SearchRequest) -> SearchResult:
        # One read transaction: hits, counts and facets all see the same snapshot.
        conn.execute("BEGIN")
        try:
            return self._search(conn, req)
        finally:
            conn.execute("COMMIT")

    def _filters(
        self, req: SearchRequest, skip: str | None = None, sets: bool = False
    ) -> tuple[str, list[Any]]:
        """`sets`: the selections after the first are pk sets read from their own indexes,
        so that the matching set is found in the indexes (which hold visibility too)
        without reading doc: testing `severity IN (...)` on each of a model's 30,000 rows
        reads each row. Only to list the whole set: a page that stops after a few rows of
        doc reads those anyway, and a set is listed whole before the first row."""
        sql = Sql()
        parts = [self.compiler.visibility(req.visibility, sql), self.compiler.where(req.query, sql)]
        selected = [(f, vs) for f, vs in req.selections.items() if f != skip]
        parts += [
            self.compiler.term_set(f, vs, sql) if sets and i else self.compiler.term(f, vs, sql)
            for i, (f, vs) in enumerate(selected)
        ]
        return " AND ".join(parts), sql.params

    def _search(self, conn: sqlite3.Connection, req: SearchRequest) -> SearchResult:
        where, params = self._filters(req)
        texts = [self.compiler.fts_expr(t) for t in positive_text(req.query)]
        score_expr = " OR ".join(t for t in texts if t) or None
        scored = req.sort == "relevance" and score_expr is not None
        if not scored and (req.facets or req.histogram or req.heatmap):
            counted = counts.answer(conn, self.compiler, req)
            if counted is not None:
                return self._counted(conn, req, counted, where, params, score_expr)
        dense = False
        # (A selection, even of a list, is never index-only: a selected field's own facet
        # must be counted without it, which the index walk under `where` cannot do.)
        index_only = (
            (not scored and bool(req.facets or req.histogram) and not req.heatmap)
            and not req.selections
            and self._reads_visibility_only(where)
        )
        materialized = (scored or req.facets or req.histogram or req.heatmap) and not index_only
        if materialized:
            # The matching set is computed once into a temp table (rowids, then scores), and
            # hits, count, facets, histogram and heatmap all read it instead of re-running
            # the filters.
            conn.execute("DELETE FROM temp.m")
            listed, listed_params = self._filters(req, sets=True)
            conn.execute(
                f"INSERT INTO temp.m (pk) SELECT d.pk FROM doc d WHERE {listed}", listed_params
            )
            if scored:
                self._score(conn, score_expr)  # type: ignore[arg-type]
            total = conn.execute("SELECT count(*) FROM temp.m").fetchone()[0]
            size = self._size(conn)
            dense = total >= FACET_WALK * size
            if scored or total * PAGE_WALK < size:
                hits, has_more, by_pk = self._hits(conn, req, scored, "temp.m m", "1", [])
            else:
                # Unscored and matching much of the index (an unfiltered search with facets):
                # the page is the first rows of doc in sort order, found within a few dozen
                # rows, where sorting the whole set would read and order every one of them.
                hits, has_more, by_pk = self._hits(conn, req, False, "", where, params, walk=True)
        else:
            # Nothing needs the whole set (a plain page, such as a deep cursor page; or an
            # unfiltered search, whose facets are counted in their indexes): the page reads
            # doc in sort order and the count stops past the exact limit, so the cost
            # follows the page, not the number of matches.
            hits, has_more, by_pk = self._hits(conn, req, False, "", where, params)
            total = conn.execute(
                f"SELECT count(*) FROM (SELECT 1 FROM doc d WHERE {where} "
                f"LIMIT {TOTAL_EXACT_UP_TO + 1})",
                params,
            ).fetchone()[0]
        if req.highlight and score_expr and hits:
            self._highlights(conn, score_expr, by_pk)
        # A set that is not most of the index: its facets in one read of its rows.
        passed = (
            aggregations.one_pass(conn, self.compiler, req)
            if materialized and not dense
            else aggregations.OnePass()
        )
        for f in req.facets:
            if f in req.selections and f not in passed.facets:
                found = counts.selected_facet(conn, self.compiler, req, f)
                if found is not None:
                    passed.facets[f] = found
        facets = {
            f: passed.facets[f]
            if f in passed.facets
            else aggregations.facet(
                conn,
                self.compiler,
                req,
                f,
                lambda s: self._filters(req, s),
                dense,
                (where, params) if index_only else None,
            )
            for f in req.facets
        }
        histogram = passed.histogram
        if histogram is None:
            histogram = (
                aggregations.histogram(conn, req, dense, (where, params) if index_only else None)
                if req.histogram
                else []
            )
        return SearchResult(
            hits=hits,
            total=min(total, TOTAL_EXACT_UP_TO),
            total_is_lower_bound=total > TOTAL_EXACT_UP_TO,
            facets=facets,
            histogram=histogram,
            heatmap=(
                passed.heatmap
                if passed.heatmap is not None
                else aggregations.heatmap(conn, self.compiler, req)
                if req.heatmap
                else []
            ),
            has_more=has_more,
        )

    def _counted(
        self,
        conn: sqlite3.Connection,
        req: SearchRequest,
        counted: counts.Counted,
        where: str,
        params: list[Any],
        score_expr: str | None,
    ) -> SearchResult:
        """The aggregations from the kept counts (counts.py); the page reads doc in sort
        order, as an unfiltered search's does."""
        walk = counted.total * PAGE_WALK >= self._size(conn)
        hits, has_more, by_pk = self._hits(conn, req, False, "", where, params, walk)
        if req.highlight and score_expr and hits:
            self._highlights(conn, score_expr, by_pk)
        return SearchResult(
            hits=hits,
            total=min(counted.total, TOTAL_EXACT_UP_TO),
            total_is_lower_bound=counted.total > TOTAL_EXACT_UP_TO,
            facets=counted.facets,
            histogram=counted.histogram,
            heatmap=counted.heatmap,
            has_more=has_more,
        )

    @staticmethod
    def _reads_visibility_only(where: str) -> bool:
        """Whether a WHERE reads no column of doc but pk and the visibility columns, and
        matches no text: then each facet's index can test it alone (layout.py), and an
        unfiltered search needs no matching set at all."""
        return "MATCH" not in where and set(_COLUMN.findall(where)) <= _INDEXED_EVERYWHERE

    @staticmethod
    def _size(conn: sqlite3.Connection) -> int:
        """About how many documents the index holds: max(pk), read from the end of the
        primary key (an upper bound; deletes leave gaps)."""
        return conn.execute("SELECT max(pk) FROM doc").fetchone()[0] or 0

    def _score(self, conn: sqlite3.Connection, match: str) -> None:
        """bm25 of the matching set's rows. The FTS scan drives (a cheap walk of rowids)
        and probes temp.m by primary key; bm25, which reads each row's sizes and positions,
        only runs for the rows that pass the probe, as it sits in the flattened subquery.
        (A materialized CTE would score every match; `rowid IN temp.m` would restart the
        FTS query once per row.)"""
        weights = ", ".join(str(w) for w in self.layout.weights)
        conn.execute(
            f"UPDATE temp.m SET score = s.score FROM (SELECT rowid AS pk, "
            f"-bm25(doc_fts, {weights}) AS score FROM doc_fts WHERE doc_fts MATCH ?) AS s "
            f"WHERE temp.m.pk = s.pk",
            [match],
        )

    def _hits(
        self,
        conn: sqlite3.Connection,
        req: SearchRequest,
        scored: bool,
        source: str,
        where: str,
        params: list[Any],
        walk: bool = False,
    ) -> tuple[list[Hit], bool, dict[int, Hit]]:
        """One page in sort order, from the matching set (`source` "temp.m m") or straight
        from doc under `where`. `walk`: the set is much of the index, so doc is read in the
        sort's index order until the page is full; left to itself SQLite would seek a
        selection's index (`severity IN (...)`, as selective as it is to it without
        statistics) and sort every row it finds: a fifth of the index for one severity."""
        keys = self.compiler.sort_keys(req.sort, scored)
        sql = Sql()
        sql.params.extend(params)
        conds = [where]
        if req.after is not None:
            conds.append(self.compiler.after(keys, req.after, sql))
        elif scored:
            # First page: the page's lowest score, read from temp.m alone, so that only rows
            # scoring at least that (ties included) are joined to doc and sorted, rather
            # than the whole set.
            floor = conn.execute(
                "SELECT coalesce(score, 0.0) AS s FROM temp.m ORDER BY s DESC LIMIT 1 OFFSET ?",
                [req.first],
            ).fetchall()
            if floor:
                conds.append(f"coalesce(m.score, 0.0) >= {sql.add(floor[0][0])}")
        exprs = [(k or "NULL") for k, _ in keys]
        order = ", ".join(f"{k} {'DESC' if d else 'ASC'}" for k, d in keys if k)
        index = self.layout.sort_index(keys[0][0] or keys[1][0]) if walk else None
        if source:
            frm = f"{source} CROSS JOIN doc d ON d.pk = m.pk"
        else:
            frm = f"doc d INDEXED BY {index}" if index else "doc d"
        stmt = (
            f"SELECT d.pk, d.id, {', '.join(exprs)} FROM {frm} "
            f"WHERE {' AND '.join(conds)} ORDER BY {order} LIMIT {sql.add(req.first + 1)}"
        )
        rows = conn.execute(stmt, sql.params).fetchall()
        has_more = len(rows) > req.first
        hits, by_pk = [], {}
        for row in rows[: req.first]:
            values = tuple(row[2:])
            score = values[0] if scored else None
            hit = Hit(id=row[1], score=score, highlights={}, sort_values=values)
            hits.append(hit)
            by_pk[row[0]] = hit
        return hits, has_more, by_pk

    def _highlights(self, conn: sqlite3.Connection, match: str, by_pk: dict[int, Hit]) -> None:
        text = self.layout.text
        cols = ", ".join(
            f"snippet(doc_fts, {i}, '{HL_OPEN}', '{HL_CLOSE}', '…', 24)" for i in range(len(text))
        )
        pks = list(by_pk)
        rows = conn.execute(
            f"SELECT rowid, {cols} FROM doc_fts WHERE doc_fts MATCH ? "
            f"AND rowid IN ({', '.join('?' for _ in pks)})",
            [match, *pks],
        ).fetchall()
        for row in rows:
            hit = by_pk[row[0]]
            for name, snippet in zip(text, row[1:], strict=True):
                if snippet and HL_OPEN in snippet:
                    hit.highlights[name] = [_highlight(snippet)]
