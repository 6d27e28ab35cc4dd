"""Facets, the date histogram and the heatmap, counted over the matching set (temp.m)."""

from __future__ import annotations

import re
import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from services.search.backends.embedded.compiler import Compiler, Sql, histogram_key
from services.search.backends.embedded.layout import DAY_MS, KW_FACET_INDEX
from services.search.documents import iso_utc
from services.search.request import Bucket, HeatmapCell, SearchRequest

# A column of doc (alias d) in a WHERE.
_D_COLUMN = re.compile(r"\bd\.(\w+)")

# CROSS JOIN: SQLite then keeps the (small) matching set as the outer loop instead of walking
# a whole index of doc and probing the set.
MATCHED = "temp.m m CROSS JOIN doc d ON d.pk = m.pk"


def facet(
    conn: sqlite3.Connection,
    compiler: Compiler,
    req: SearchRequest,
    field: str,
    filters: Any,
    dense: bool = False,
    where: tuple[str, list[Any]] | None = None,
) -> list[Bucket]:
    """`filters(skip)`: the request's WHERE without one field's selection, and its params.
    `dense`: the matching set (temp.m) is much of the index (backend.FACET_WALK).
    `where`: there is no matching set; count under this WHERE, which reads nothing but
    the visibility columns and pk (backend.index_only)."""
    sql = Sql()
    join, value = compiler.value_source(field, sql)
    by_index = compiler.layout.facet_index(field) if (dense or where) and not join else None
    if by_index is not None and field not in req.selections:
        # Walk the field's index, which holds each row's value, pk and visibility, and test
        # each row there (against the set, or the WHERE): no row of doc is read and nothing
        # is sorted, where joining the set to doc and grouping reads and sorts every row.
        index, group = by_index
        cond, params = where or ("d.pk IN (SELECT pk FROM temp.m)", [])
        rows = conn.execute(
            f"SELECT {value}, count(*) AS c FROM doc d INDEXED BY {index} "
            f"WHERE {value} IS NOT NULL AND {cond} "
            f"GROUP BY {group} ORDER BY c DESC, {value} ASC LIMIT {int(req.facet_size)}",
            params,
        ).fetchall()
        return [Bucket(str(r[0]), r[1]) for r in rows]
    if field in compiler.layout.lists and (dense or where) and field not in req.selections:
        # A list's rows carry their document's visibility (layout.KW_FACET_INDEX): walk
        # them in value order, testing the WHERE (which reads nothing but visibility and
        # pk, now of the list row) or the set, without reading doc.
        cond, params = (
            (_D_COLUMN.sub(r"k.\1", where[0]), where[1])
            if where
            else ("k.pk IN (SELECT pk FROM temp.m)", [])
        )
        rows = conn.execute(
            f"SELECT k.value, count(*) AS c FROM doc_kw k INDEXED BY {KW_FACET_INDEX} "
            f"WHERE k.field = ? AND {cond} "
            f"GROUP BY k.value ORDER BY c DESC, k.value ASC LIMIT {int(req.facet_size)}",
            [field, *params],
        ).fetchall()
        return [Bucket(str(r[0]), r[1]) for r in rows]
    if where is not None:
        # A facet with no such index (the map): over doc under the WHERE.
        src, params = f"doc d {join} WHERE {where[0]} AND", [*sql.params, *where[1]]
        rows = conn.execute(
            f"SELECT {value}, count(*) AS c FROM {src} {value} IS NOT NULL "
            f"GROUP BY {value} ORDER BY c DESC, {value} ASC LIMIT {int(req.facet_size)}",
            params,
        ).fetchall()
        return [Bucket(str(r[0]), r[1]) for r in rows]
    if field in req.selections:
        # Multi-select: this facet's own selection must not narrow its counts, so it counts
        # over the filters without it instead of over the matching set.
        where, params = filters(field)
        source, params = f"doc d {join} WHERE {where} AND", [*sql.params, *params]
    else:
        source, params = f"{MATCHED} {join} WHERE", sql.params
    rows = conn.execute(
        f"SELECT {value}, count(*) AS c FROM {source} {value} IS NOT NULL "
        f"GROUP BY {value} ORDER BY c DESC, {value} ASC LIMIT {int(req.facet_size)}",
        params,
    ).fetchall()
    return [Bucket(str(r[0]), r[1]) for r in rows]


# The date the histogram counts, and the index (layout.py: date, id, visibility) it walks.
HISTOGRAM_INDEX = "ix_doc_occurred_at"


def histogram(
    conn: sqlite3.Connection,
    req: SearchRequest,
    dense: bool = False,
    where: tuple[str, list[Any]] | None = None,
) -> list[Bucket]:
    """`dense` and `where` as for `facet`. Months are counted by day in SQL and folded here:
    a day is integer arithmetic on the stored milliseconds, where a month is two strftime
    calls per row (most of an unfiltered search's time at 100,000 cases)."""
    interval = req.histogram or "day"
    key = histogram_key("day" if interval == "month" else interval)
    if where is not None:
        # Only visibility to test: the date index holds it, so no row of doc is read.
        source, cond, params = f"doc d INDEXED BY {HISTOGRAM_INDEX}", f"AND {where[0]}", where[1]
    elif dense:
        source, cond, params = (
            f"doc d INDEXED BY {HISTOGRAM_INDEX}",
            "AND d.pk IN (SELECT pk FROM temp.m)",
            [],
        )
    else:
        source, cond, params = MATCHED, "", []
    rows = conn.execute(
        f"SELECT {key} AS k, count(*) FROM {source} "
        f"WHERE d.occurred_at IS NOT NULL {cond} GROUP BY k ORDER BY k",
        params,
    ).fetchall()
    if interval == "month":
        rows = _by_month(rows)
    return [Bucket(iso_utc(r[0]), r[1]) for r in rows]


def _by_month(days: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Day buckets (ms at 00:00 UTC, in order) summed into their months (ms at the 1st)."""
    months: dict[int, int] = {}
    for day_ms, count in days:
        day = datetime.fromtimestamp(0, UTC) + timedelta(milliseconds=day_ms)
        first = day.replace(day=1)
        start = (first - datetime.fromtimestamp(0, UTC)) // timedelta(milliseconds=1)
        months[start] = months.get(start, 0) + count
    return list(months.items())


def heatmap(conn: sqlite3.Connection, compiler: Compiler, req: SearchRequest) -> list[HeatmapCell]:
    assert req.heatmap is not None
    sx, sy = Sql(), Sql()
    jx, vx = compiler.value_source(req.heatmap.x, sx, "vx")
    jy, vy = compiler.value_source(req.heatmap.y, sy, "vy")
    size = int(req.heatmap.size)
    if not jy:
        # y is a column of doc, so each document adds one (x, y) row (y may be NULL) and
        # x's document count is the sum of its cells: one pass over the set.
        rows = conn.execute(
            f"SELECT {vx}, {vy}, count(*) FROM {MATCHED} {jx} WHERE {vx} IS NOT NULL "
            f"GROUP BY {vx}, {vy}",
            sx.params,
        ).fetchall()
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
        f"WITH top AS (SELECT {vx} AS x, count(*) AS c FROM {MATCHED} {jx} "
        f"WHERE {vx} IS NOT NULL GROUP BY {vx} ORDER BY c DESC, x ASC LIMIT {size}), "
        f"cells AS (SELECT {vx} AS x, {vy} AS y, count(*) AS c, row_number() OVER "
        f"(PARTITION BY {vx} ORDER BY count(*) DESC, {vy} ASC) AS rn "
        f"FROM {MATCHED} {jx} {jy} WHERE {vx} IN (SELECT x FROM top) "
        f"AND {vy} IS NOT NULL GROUP BY {vx}, {vy}) "
        f"SELECT cells.x, cells.y, cells.c FROM cells JOIN top ON top.x = cells.x "
        f"WHERE rn <= {size} ORDER BY top.c DESC, top.x ASC, cells.c DESC, cells.y ASC"
    )
    rows = conn.execute(stmt, [*sx.params, *sx.params, *sy.params]).fetchall()
    return [HeatmapCell(str(r[0]), str(r[1]), r[2]) for r in rows]


@dataclass
class OnePass:
    """Facets (and the histogram) counted in one read of the matching set."""

    facets: dict[str, list[Bucket]] = field(default_factory=dict)
    histogram: list[Bucket] | None = None
    heatmap: list[HeatmapCell] | None = None


def one_pass(conn: sqlite3.Connection, compiler: Compiler, req: SearchRequest) -> OnePass:
    """The facets on columns of doc, the day-based histogram and a heatmap of two columns of
    a matching set that is not most of the index, from one read of its rows (counted here),
    and the list facets
    from one read of their rows: grouping each facet in SQL joins every row of the set to
    doc again, once per facet (13 times on the search page). A field with a selection is
    left out (its counts ignore it: `facet`), and so is everything else `facet` counts."""
    from services.search.backends.embedded.counts import _fold

    layout = compiler.layout
    scalars = [f for f in req.facets if f not in req.selections and f in layout.keywords]
    lists = [f for f in req.facets if f not in req.selections and f in layout.lists]
    days = req.histogram in ("day", "week", "month") and "occurred_at" in layout.dates
    cells = (
        req.heatmap
        if req.heatmap and {req.heatmap.x, req.heatmap.y} <= set(layout.keywords)
        else None
    )
    out = OnePass()
    columns = [f"d.{f}" for f in scalars] + (["d.occurred_at"] if days else [])
    if cells:
        columns += [f"d.{cells.x}", f"d.{cells.y}"]
    if columns:
        rows = conn.execute(f"SELECT {', '.join(columns)} FROM {MATCHED}").fetchall()
        counted = [Counter(values) for values in zip(*rows, strict=True)] if rows else []
        if cells:
            out.heatmap = _heatmap(Counter((r[-2], r[-1]) for r in rows), cells.size)
            counted = counted[:-2]
        for i, name in enumerate(scalars):
            out.facets[name] = _top(counted[i] if counted else Counter(), req.facet_size)
        if days:
            by_day: Counter[int] = Counter()
            for ms, n in (counted[-1] if counted else Counter()).items():
                if ms is not None:
                    by_day[ms - ms % DAY_MS] += n  # floor, as histogram_key("day")
            assert req.histogram is not None
            out.histogram = _fold(dict(by_day), req.histogram)
    if lists:
        rows = conn.execute(
            "SELECT k.field, k.value, count(*) FROM temp.m m CROSS JOIN doc_kw k "
            f"ON k.pk = m.pk AND k.field IN ({', '.join('?' for _ in lists)}) "
            "GROUP BY k.field, k.value",
            lists,
        ).fetchall()
        per: dict[str, Counter[Any]] = {f: Counter() for f in lists}
        for name, value, n in rows:
            per[name][value] = n
        for name in lists:
            out.facets[name] = _top(per[name], req.facet_size)
    return out


def _heatmap(pairs: Counter[tuple[Any, Any]], size: int) -> list[HeatmapCell]:
    """As `heatmap` from (x, y) -> documents: x's documents (y NULL included) rank it."""
    totals: Counter[Any] = Counter()
    cells: dict[Any, list[tuple[Any, int]]] = {}
    for (x, y), c in pairs.items():
        if x is None:
            continue
        totals[x] += c
        if y is not None:
            cells.setdefault(x, []).append((y, c))
    top = sorted(totals, key=lambda x: (-totals[x], x))[: int(size)]
    return [
        HeatmapCell(str(x), str(y), c)
        for x in top
        for y, c in sorted(cells.get(x, []), key=lambda yc: (-yc[1], yc[0]))[: int(size)]
    ]


def _top(counted: Counter[Any], size: int) -> list[Bucket]:
    """The most frequent values (NULL is no value), ties in value order, as `facet` sorts."""
    ranked = sorted(
        ((v, n) for v, n in counted.items() if v is not None), key=lambda vn: (-vn[1], vn[0])
    )
    return [Bucket(str(v), n) for v, n in ranked[: int(size)]]
