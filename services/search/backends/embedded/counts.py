"""Aggregations read from the counts kept as the index is written (layout.COUNT_TABLE).

A search that tests nothing but visibility (the unfiltered search page, the dashboard), or
visibility and one selection of a counted field (a severity's series), is answered by
summing the reader's visible buckets of a few hundred count rows, where counting the
documents would walk an index of every one of them per facet.

A query that excludes some documents (`NOT x`: the blind-read guard's `-blinded:<me>`) is
answered as the counts without the exclusion minus the same aggregations over the excluded
documents, which are counted the ordinary way (temp.m); only when those are few (EXCLUDED_
MAX), so the subtraction stays cheap. Everything else returns None: the caller counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from services.search.backends.embedded.compiler import Compiler, Sql
from services.search.backends.embedded.layout import (
    COUNT_ALL,
    COUNT_DAY,
    COUNT_SCOPE,
    COUNT_TABLE,
    DAY_MS,
    scoped_key,
)
from services.search.documents import iso_utc
from services.search.fields import fold
from services.search.query import MatchAll, Not
from services.search.request import Bucket, HeatmapCell, SearchRequest

# Excluded documents counted and subtracted at most (the blind-read guard's: an annotator's
# blinded cases); a larger exclusion is counted the ordinary way.
EXCLUDED_MAX = 5000
WEEK_MS, WEEK_SHIFT = 7 * DAY_MS, 3 * DAY_MS  # weeks start on Monday (compiler.histogram_key)

Counter = dict[tuple[Any, ...], int]


@dataclass
class Counted:
    total: int
    facets: dict[str, list[Bucket]]
    histogram: list[Bucket]
    heatmap: list[HeatmapCell]


def answer(conn: Any, compiler: Compiler, req: SearchRequest) -> Counted | None:
    layout = compiler.layout
    selections = dict(req.selections)
    # A selection of the scope field (one model) reads that model's own counts; the rest of
    # the request is planned as if it were the whole index.
    scope = selections.pop(COUNT_SCOPE, None) if layout.scoped else None
    plan = _plan(compiler, req, selections)
    if plan is None:
        return None
    selected, values = plan
    if scope is not None and COUNT_SCOPE in req.facets and selected is not None:
        # The scope's own facet is counted without its selection but with the other one:
        # no count holds that.
        return None
    reader = _Reader(conn, compiler, req, scope=scope)
    excluded = 0
    if isinstance(req.query, Not):
        excluded = reader.exclusion(req.query)
        if excluded is None:
            return None
    # The total: every document, or those with a selected value.
    if selected is None:
        total = sum(reader.count(COUNT_ALL, "", excluded, None).values())
    else:
        total = sum(reader.count(selected, "", excluded, values).values())
    facets = {}
    for name in req.facets:
        # A field's own selection does not narrow its counts (multi-select faceting): the
        # scope field's facet is the whole index's (less the exclusion).
        counted = reader.count(
            name,
            "",
            excluded,
            None,
            listed=name in layout.counted_lists,
            scoped=name != COUNT_SCOPE,
        )
        facets[name] = _top(counted, req.facet_size)
    histogram: list[Bucket] = []
    if req.histogram:
        if selected is None:
            days = reader.count(COUNT_DAY, "", excluded, None)
        else:
            days = reader.count(f"{selected}@{COUNT_DAY}", COUNT_DAY, excluded, values)
        histogram = _fold(_by_value(days, last=True), req.histogram)
    heatmap: list[HeatmapCell] = []
    if req.heatmap:
        x, y = req.heatmap.x, req.heatmap.y
        totals = reader.count(x, "", excluded, None)
        cells = reader.count(f"{x}@{y}", y, excluded, None)
        heatmap = _cells(totals, cells, req.heatmap.size)
    return Counted(total, facets, histogram, heatmap)


def selected_facet(
    conn: Any, compiler: Compiler, req: SearchRequest, field: str
) -> list[Bucket] | None:
    """The counts of a selected field's facet (multi-select: over the request without its
    own selection) when what remains is visibility, an exclusion and at most one selection,
    of the field it is counted in a pair with (the dashboard's heatmap cell: a version and
    a failure mode); None otherwise. The matching set is in temp.m: the excluded documents go
    to temp.x."""
    layout = compiler.layout
    others = [f for f in req.selections if f != field]
    if not isinstance(req.query, MatchAll | Not) or len(others) > 1:
        return None
    if not others:
        # Nothing else selected: the field's own counts (the search page, one value of a
        # facet selected).
        if field not in layout.counted and field not in layout.counted_lists:
            return None
        reader = _Reader(conn, compiler, req, "temp.x")
        excluded = reader.exclusion(req.query) if isinstance(req.query, Not) else 0
        if excluded is None:
            return None
        listed = field in layout.counted_lists
        return _top(reader.count(field, "", excluded, None, listed=listed), req.facet_size)
    other = others[0]
    if (field, other) in layout.pairs:
        key, mine = f"{field}@{other}", 0
    elif (other, field) in layout.pairs:
        key, mine = f"{other}@{field}", 1
    else:
        return None
    reader = _Reader(conn, compiler, req, "temp.x")
    excluded = 0
    if isinstance(req.query, Not):
        excluded = reader.exclusion(req.query)
        if excluded is None:
            return None
    # The selection's values are folded for a folded field (and spelt for the others): the
    # pair holds the stored spellings, compared here as the filter compares them.
    wanted = set(req.selections[other])
    folds = other in layout.folded
    counted: dict[tuple[Any, ...], int] = {}
    for pair, n in reader.count(key, key.split("@", 1)[1], excluded, None).items():
        theirs = pair[1 - mine]
        if (fold(theirs) if folds else theirs) in wanted:
            counted[(pair[mine],)] = counted.get((pair[mine],), 0) + n
    return _top(counted, req.facet_size)


def _plan(
    compiler: Compiler, req: SearchRequest, selections: dict[str, tuple[str, ...]]
) -> tuple[str | None, tuple[str, ...]] | None:
    """(the selected field or None, its values) when the counts answer every part of the
    request with `selections` (the request's, less a scope); None when they do not."""
    layout = compiler.layout
    if not isinstance(req.query, MatchAll | Not):
        return None
    if len(selections) > 1:
        return None
    selected, values = next(iter(selections.items()), (None, ()))
    if selected is not None:
        # The values compare as written with the stored spelling only for exact fields;
        # and the counts hold one selection's other aggregations only for the pairs kept.
        if selected not in layout.counted or selected in layout.folded:
            return None
        if any(f != selected for f in req.facets) or req.heatmap:
            return None
        if req.histogram and (selected, COUNT_DAY) not in layout.pairs:
            return None
    counted = {*layout.counted, *layout.counted_lists}
    if any(f not in counted for f in req.facets):
        return None
    if req.histogram and (req.histogram not in ("day", "week", "month") or not layout.counts_days):
        return None
    if req.heatmap and (req.heatmap.x, req.heatmap.y) not in layout.pairs:
        return None
    return selected, values


class _Reader:
    def __init__(
        self,
        conn: Any,
        compiler: Compiler,
        req: SearchRequest,
        table: str = "temp.m",
        scope: tuple[str, ...] | None = None,
    ) -> None:
        """`table`: the temp table the excluded documents go to; `scope`: the selected
        values (folded) of COUNT_SCOPE whose own counts are read, or None (the index's)."""
        self.conn, self.compiler, self.req, self.table = conn, compiler, req, table
        self.scope = scope

    def exclusion(self, query: Not) -> int | None:
        """The visible documents `query` excludes, into the table; None if too many."""
        sql = Sql()
        where = (
            f"{self.compiler.visibility(self.req.visibility, sql)} AND "
            f"{self.compiler.where(query.child, sql)}"
        )
        self.conn.execute(f"DELETE FROM {self.table}")
        self.conn.execute(
            f"INSERT INTO {self.table} (pk) SELECT d.pk FROM doc d WHERE {where} "
            f"LIMIT {EXCLUDED_MAX + 1}",
            sql.params,
        )
        n = self.conn.execute(f"SELECT count(*) FROM {self.table}").fetchone()[0]
        return None if n > EXCLUDED_MAX else n

    def count(
        self,
        key: str,
        second: str,
        excluded: int,
        values: tuple[str, ...] | None,
        listed: bool = False,
        scoped: bool = True,
    ) -> Counter:
        """(value[, second value]) -> documents, summed over the visible buckets (and the
        scope's values: a document has one), less the excluded documents'; `values`: only
        these first values (a selection); `scoped`: False reads the index's counts."""
        sql = Sql()
        scope = self.scope if scoped else None
        keys = [key] if scope is None else [scoped_key(v, key) for v in scope]
        cond = f"c.key IN ({sql.add(*keys)})"
        cond += " AND " + self.req.visibility.sql_text(
            "nullif(c.team, '')", "c.sensitivity", sql.add
        )
        if values is not None:
            cond += f" AND c.value IN ({sql.add(*values)})"
        rows = self.conn.execute(
            f"SELECT c.value, c.value2, sum(c.n) FROM {COUNT_TABLE} c WHERE {cond} "
            "GROUP BY c.value, c.value2",
            sql.params,
        ).fetchall()
        out: Counter = {(r[0], r[1]) if second else (r[0],): r[2] for r in rows}
        if excluded:
            for k, n in self._excluded(key, second, values, listed, scope).items():
                out[k] = out.get(k, 0) - n
        return {k: n for k, n in out.items() if n > 0}

    def _excluded(
        self,
        key: str,
        second: str,
        values: tuple[str, ...] | None,
        listed: bool,
        scope: tuple[str, ...] | None,
    ) -> Counter:
        """The same counts over the excluded documents, counted row by row."""
        first = key if key == COUNT_DAY else key.split("@", 1)[0]
        expr = {COUNT_DAY: _day("d.occurred_at")}
        sql = Sql()
        join = ""
        if key == COUNT_ALL:
            group = ["''"]
        elif listed:
            join = f"CROSS JOIN doc_kw k ON k.pk = d.pk AND k.field = {sql.add(first)}"
            group = ["k.value"]
        else:
            group = [expr.get(first, f"d.{first}")]
        if second:
            group.append(expr.get(second, f"d.{second}"))
        cond = " AND ".join(f"{g} IS NOT NULL" for g in group)
        if values is not None:
            cond += f" AND d.{first} IN ({sql.add(*values)})"
        if scope is not None:
            column = self.compiler.layout.match_column(COUNT_SCOPE)
            cond += f" AND d.{column} IN ({sql.add(*scope)})"
        rows = self.conn.execute(
            f"SELECT {', '.join(group)}, count(*) FROM {self.table} m CROSS JOIN doc d "
            f"ON d.pk = m.pk {join} WHERE {cond} GROUP BY {', '.join(group)}",
            sql.params,
        ).fetchall()
        return {tuple(r[:-1]): r[-1] for r in rows}


def _day(column: str) -> str:
    return f"({column} - ((({column} % {DAY_MS}) + {DAY_MS}) % {DAY_MS}))"


def _top(counted: Counter, size: int) -> list[Bucket]:
    ranked = sorted(counted.items(), key=lambda kv: (-kv[1], kv[0][0]))[: int(size)]
    return [Bucket(str(k[0]), n) for k, n in ranked]


def _by_value(counted: Counter, last: bool = False) -> dict[Any, int]:
    """Summed by the key's last (or only) value."""
    out: dict[Any, int] = {}
    for k, n in counted.items():
        v = k[-1] if last else k[0]
        out[v] = out.get(v, 0) + n
    return out


def _fold(days: dict[int, int], interval: str) -> list[Bucket]:
    """Day buckets (ms at 00:00 UTC) into the interval's, in order."""
    from services.search.backends.embedded.aggregations import _by_month

    ordered = sorted(days.items())
    if interval == "month":
        ordered = _by_month(ordered)
    elif interval == "week":
        weeks: dict[int, int] = {}
        for day, n in ordered:
            start = day - (day + WEEK_SHIFT) % WEEK_MS
            weeks[start] = weeks.get(start, 0) + n
        ordered = sorted(weeks.items())
    return [Bucket(iso_utc(k), n) for k, n in ordered]


def _cells(totals: Counter, cells: Counter, size: int) -> list[HeatmapCell]:
    """As aggregations.heatmap: the top x values by documents, then each's top y values."""
    by_x: dict[Any, list[tuple[Any, int]]] = {}
    for (x, y), n in cells.items():
        by_x.setdefault(x, []).append((y, n))
    top = sorted(totals, key=lambda k: (-totals[k], k[0]))[: int(size)]
    return [
        HeatmapCell(str(x), str(y), n)
        for (x,) in top
        for y, n in sorted(by_x.get(x, []), key=lambda yn: (-yn[1], yn[0]))[: int(size)]
    ]
