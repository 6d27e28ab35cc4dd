"""The query tree compiled to SQLite: WHERE fragments, FTS5 MATCH expressions, sort keys."""

from __future__ import annotations

from typing import Any

from services.search.backends.embedded.layout import Layout
from services.search.fields import fold
from services.search.query import And, Exists, MatchAll, Node, Not, Or, Prefix, Range, Term, Text
from services.search.request import Visibility

# The highest code point: every string that starts with p sorts in [p, p + _TOP).
_TOP = "\U0010ffff"


def fts_phrase(text: str) -> str:
    """A value as an FTS5 string: FTS5 tokenizes it, so it matches as a phrase."""
    return '"' + text.replace('"', '""') + '"'


class Sql:
    """A WHERE fragment's parameters, collected while the fragment is built."""

    def __init__(self) -> None:
        self.params: list[Any] = []

    def add(self, *values: Any) -> str:
        self.params.extend(values)
        return ", ".join("?" for _ in values)


# (SQL expression or None for a constant key, descending?) per sort key.
SortKeys = list[tuple[str | None, bool]]


class Compiler:
    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.schema = layout.schema
        self.map_prefix = f"{self.schema.map_prefix}." if self.schema.map else None

    def _map_key(self, field: str) -> str | None:
        if self.map_prefix and field.startswith(self.map_prefix):
            return field[len(self.map_prefix) :]
        return None

    # ---- full text ----------------------------------------------------------------------------

    def fts_expr(self, node: Node) -> str | None:
        """The FTS5 MATCH expression (on the stemmed doc_fts) of a purely full-text subtree,
        or None if not one. A prefix is not: it is looked up in doc_plain."""
        if isinstance(node, Text) and not node.prefix:
            phrase = fts_phrase(node.value)
            return f"{node.field} : {phrase}" if node.field else phrase
        if isinstance(node, And | Or):
            parts = [self.fts_expr(c) for c in node.children]
            if any(p is None for p in parts):
                return None
            joiner = " AND " if isinstance(node, And) else " OR "
            return "(" + joiner.join(parts) + ")"  # type: ignore[arg-type]
        return None

    # ---- conditions ---------------------------------------------------------------------------

    def where(self, node: Node, sql: Sql, probe: bool = False) -> str:
        """`probe`: the condition sits beside a text match whose rowids drive the query, so
        list and map tests look up each candidate row (a primary-key probe) rather than
        first list every matching rowid, which for a common tag or region is a large part
        of the corpus. Elsewhere, a negation included, they list the rowids once and test
        each row against that list: when the whole corpus is scanned (an unfiltered search
        under the blind-read guard's `-blinded:true`) that is several times cheaper than a
        probe into the side table per row."""
        if isinstance(node, MatchAll):
            return "1"
        if isinstance(node, Text) and node.prefix:
            word = fts_phrase(node.value) + " *"
            expr = f"{node.field} : {word}" if node.field else word
            return f"d.pk IN (SELECT rowid FROM doc_plain WHERE doc_plain MATCH {sql.add(expr)})"
        expr = self.fts_expr(node)
        if expr is not None:
            return f"d.pk IN (SELECT rowid FROM doc_fts WHERE doc_fts MATCH {sql.add(expr)})"
        # Each level of nesting costs SQLite's parser several of its ~100 stack slots: a
        # query nested as the language allows (32 parentheses, a negation inside each)
        # overflowed it ("parser stack overflow", a 500). So negations go down to the terms
        # (De Morgan; a text-only subtree stays one MATCH), nested ANDs and ORs are
        # flattened, and the deepest operand is written first: the parser holds an
        # operand and its operator on its stack until the operand after them is read.
        if (
            isinstance(node, Not)
            and isinstance(node.child, And | Or)
            and self.fts_expr(node.child) is None
        ):
            flip = Or if isinstance(node.child, And) else And
            return self.where(flip(tuple(_negate(c) for c in node.child.children)), sql, probe)
        if isinstance(node, And):
            return "(" + self._conjunction(node, sql, probe) + ")"
        if isinstance(node, Or):
            # AND binds tighter than OR: an AND under an OR needs no parentheses of its own.
            disjuncts = _deepest_first(_flat(node))
            return "(" + " OR ".join(self._disjunct(c, sql, probe) for c in disjuncts) + ")"
        if isinstance(node, Not):
            if isinstance(node.child, MatchAll):
                return "0"
            # NULL (no value) is "not matching", as must_not treats a missing field.
            return f"NOT coalesce({self.where(node.child, sql, probe)}, 0)"
        if isinstance(node, Term):
            return self.term(node.field, node.values, sql, probe)
        if isinstance(node, Range):
            ops = {"gte": ">=", "gt": ">", "lte": "<=", "lt": "<"}
            conds = [
                f"d.{node.field} {ops[k]} {sql.add(getattr(node, k))}"
                for k in ("gte", "gt", "lte", "lt")
                if getattr(node, k) is not None
            ]
            return "(" + " AND ".join(conds or [f"d.{node.field} IS NOT NULL"]) + ")"
        if isinstance(node, Exists):
            return self.exists(node.field, sql)
        if isinstance(node, Prefix):
            return self.prefix(node.field, node.value, sql, probe)
        raise TypeError(f"unknown node {node!r}")  # pragma: no cover

    def _conjunction(self, node: And, sql: Sql, probe: bool) -> str:
        children = _flat(node)
        # Text children share one MATCH: one FTS lookup instead of one per word.
        texts = [c for c in children if self.fts_expr(c) is not None]
        rest = [c for c in children if self.fts_expr(c) is None]
        # With a text conjunct, the FTS rowid list drives the query; the other tests
        # then probe each candidate row instead of listing every list/map match.
        parts = [self.where(c, sql, probe or bool(texts)) for c in _deepest_first(rest)]
        if texts:
            parts.append(self.where(And(tuple(texts)) if len(texts) > 1 else texts[0], sql))
        return " AND ".join(parts)

    def _disjunct(self, node: Node, sql: Sql, probe: bool) -> str:
        if isinstance(node, And) and self.fts_expr(node) is None:
            return self._conjunction(node, sql, probe)
        return self.where(node, sql, probe)

    def exists(self, field: str, sql: Sql) -> str:
        key = self._map_key(field)
        if key is not None:
            return f"d.pk IN (SELECT pk FROM doc_env WHERE fkey = {sql.add(fold(key))})"
        if field in self.layout.lists:
            return f"d.pk IN (SELECT pk FROM doc_kw WHERE field = {sql.add(field)})"
        if field in self.layout.text:
            return f"d.pk IN (SELECT pk FROM doc_text WHERE {field} IS NOT NULL)"
        return f"d.{field} IS NOT NULL"

    def term(self, field: str, values: tuple[str, ...], sql: Sql, probe: bool = False) -> str:
        """`values` are what the parser made them: folded, or a closed set's spelling."""
        key = self._map_key(field)
        if key is not None:
            cond = f"fkey = {sql.add(fold(key))} AND fvalue IN ({sql.add(*values)})"
            return self._side("doc_env", cond, probe)
        if field in self.layout.lists:
            cond = f"field = {sql.add(field)} AND folded IN ({sql.add(*values)})"
            return self._side("doc_kw", cond, probe)
        return f"d.{self.layout.match_column(field)} IN ({sql.add(*values)})"

    def term_set(self, field: str, values: tuple[str, ...], sql: Sql) -> str:
        """`term`, as the set of rowids its index lists (for a column of doc)."""
        if self._map_key(field) is not None or field in self.layout.lists:
            return self.term(field, values, sql)
        column = self.layout.match_column(field)
        return f"d.pk IN (SELECT x.pk FROM doc x WHERE x.{column} IN ({sql.add(*values)}))"

    def prefix(self, field: str, value: str, sql: Sql, probe: bool = False) -> str:
        """A range on the folded values: it uses their index, as `=` does."""

        def between(column: str) -> str:
            return f"{column} >= {sql.add(value)} AND {column} < {sql.add(value + _TOP)}"

        key = self._map_key(field)
        if key is not None:
            cond = f"fkey = {sql.add(fold(key))} AND {between('fvalue')}"
            return self._side("doc_env", cond, probe)
        if field in self.layout.lists:
            return self._side("doc_kw", f"field = {sql.add(field)} AND {between('folded')}", probe)
        return f"({between('d.' + self.layout.match_column(field))})"

    @staticmethod
    def _side(table: str, cond: str, probe: bool) -> str:
        if probe:
            return f"EXISTS (SELECT 1 FROM {table} WHERE {cond} AND pk = d.pk)"
        return f"d.pk IN (SELECT pk FROM {table} WHERE {cond})"

    @staticmethod
    def visibility(vis: Visibility, sql: Sql) -> str:
        # Unary + keeps SQLite from driving the query off these barely selective indexes.
        return vis.sql_text("+d.team", "+d.sensitivity", sql.add)

    # ---- sorting ------------------------------------------------------------------------------

    def sort_keys(self, sort: str, scored: bool) -> SortKeys:
        """Each key's expression over `d` (and `m`, the scored set); the last is the id.
        Unscored relevance keeps a constant first key, so its cursors have the same shape
        as every other relevance cursor."""
        out: SortKeys = []
        for key in self.schema.sorts[sort]:
            if key.field == "_score":
                out.append(("coalesce(m.score, 0.0)" if scored else None, key.descending))
            elif key.missing is not None:
                out.append((f"coalesce(d.{key.field}, {key.missing!r})", key.descending))
            else:
                out.append((f"d.{key.field}", key.descending))
        return out

    @staticmethod
    def after(keys: SortKeys, values: tuple[Any, ...], sql: Sql) -> str:
        """Keyset condition: rows strictly after `values` in the sort order (search_after).
        The cursor's shape was checked when it was decoded (request.decode_cursor)."""
        pairs = [(expr, desc, v) for (expr, desc), v in zip(keys, values, strict=True) if expr]
        ors = []
        for i, (expr, desc, value) in enumerate(pairs):
            eqs = [f"{pairs[j][0]} = {sql.add(pairs[j][2])}" for j in range(i)]
            eqs.append(f"{expr} {'<' if desc else '>'} {sql.add(value)}")
            ors.append("(" + " AND ".join(eqs) + ")")
        return "(" + " OR ".join(ors) + ")"

    # ---- aggregation sources ------------------------------------------------------------------

    def value_source(self, field: str, sql: Sql, alias: str = "v") -> tuple[str, str]:
        """(join clause, value expression) to group a facet field by.

        CROSS JOIN keeps the rows being counted as the outer loop, probing the (pk)-indexed
        value tables per row; left to itself SQLite may walk every list or map row and probe
        the (small) matching set instead."""
        if field in self.layout.lists:
            join = f"CROSS JOIN doc_kw {alias} ON {alias}.pk = d.pk AND {alias}.field = "
            return join + sql.add(field), f"{alias}.value"
        if self.schema.map and field == self.schema.map_prefix:
            return f"CROSS JOIN doc_env {alias} ON {alias}.pk = d.pk", f"{alias}.key"
        key = self._map_key(field)
        if key is not None:
            join = f"CROSS JOIN doc_env {alias} ON {alias}.pk = d.pk AND {alias}.key = "
            return join + sql.add(key), f"{alias}.value"
        return "", f"d.{field}"


_MS = {"hour": 3_600_000, "day": 86_400_000, "week": 7 * 86_400_000}


def histogram_key(interval: str, column: str = "d.occurred_at") -> str:
    if interval == "month":
        return (
            f"CAST(strftime('%s', strftime('%Y-%m-01', {column} / 1000, 'unixepoch'))"
            " AS INTEGER) * 1000"
        )
    if interval == "week":
        # Weeks start on Monday (as in OpenSearch); 1970-01-01 was a Thursday, so shift by
        # 3 days before flooring. The double modulo floors negative (pre-1970) times too.
        m, shift = _MS["week"], 3 * 86_400_000
        return f"({column} + {shift} - ((({column} + {shift}) % {m}) + {m}) % {m} - {shift})"
    m = _MS[interval]
    return f"({column} - (({column} % {m}) + {m}) % {m})"


def _flat(node: And | Or) -> tuple[Node, ...]:
    """The children of `node`, those of the same kind replaced by their own (a AND (b AND c)
    is a AND b AND c)."""
    kind = type(node)
    out: list[Node] = []
    for child in node.children:
        out += _flat(child) if isinstance(child, kind) else [child]
    return tuple(out)


def _negate(node: Node) -> Node:
    return node.child if isinstance(node, Not) else Not(node)


def _depth(node: Node) -> int:
    if isinstance(node, Not):
        return 1 + _depth(node.child)
    if isinstance(node, And | Or):
        return 1 + max(_depth(c) for c in node.children)
    return 0


def _deepest_first(nodes: tuple[Node, ...] | list[Node]) -> list[Node]:
    return sorted(nodes, key=_depth, reverse=True)  # stable: the order given otherwise
