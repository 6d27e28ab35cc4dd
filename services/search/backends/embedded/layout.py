"""The SQLite tables of the embedded index, derived from the field table.

`doc` holds one row per case: a column per keyword, number and date (filters, facets, sorts),
kept narrow (no text): facets and filters scan it, and SQLite reads a row's columns in order,
so long text in the same row would drag overflow pages into every scan. `doc_text` holds the
text, and `doc_fts` is an external-content FTS5 index over it, kept in sync by triggers inside
the writing transaction, so the two can never disagree; `doc_plain` indexes the same text
unstemmed, for prefixes. Both keep `_` inside words (cyse2_prompt_injection is one word), as
OpenSearch's standard tokenizer does. Keyword lists (`doc_kw`) and the map (`doc_env`) sit in
their own indexed tables, so filters and facets are joins on pk; their keys put pk right after
the folded value, so probing one row (`folded IN (...) AND pk = d.pk`) is one seek.
"""

from __future__ import annotations

import hashlib
from functools import cached_property
from typing import Any

from services.search.fields import TIEBREAK_DATE, DocumentSchema, Kind

HL_OPEN, HL_CLOSE = "\x02", "\x03"
# The columns the visibility rule reads (Compiler.visibility): every keyword index holds
# them, so a search whose only conditions are visibility counts facets in the index.
VISIBILITY_COLUMNS = ("sensitivity", "team")
# A list field's rows carry their document's visibility too (copied at each write, which
# replaces them all), so a facet over a list walks this index alone when a search tests
# nothing but visibility (aggregations.facet).
KW_FACET_INDEX = "ix_doc_kw_facet"
# Counts maintained as the index is written (doc_count): per counted key and visibility
# bucket (sensitivity, team), how many documents have each value. A search whose only
# condition is visibility sums the reader's visible buckets instead of walking an index of
# 100,000 rows (counts.py). The writer changes them in the transaction that writes the
# rows (writes.py), so a count can never disagree with the rows a reader's snapshot holds.
COUNT_TABLE = "doc_count"
# The key of every document's count (the total), and of its day of occurrence (histograms).
COUNT_ALL, COUNT_DAY = "@all", "@day"
DAY_MS = 86_400_000
# Two-value keys, counted for the dashboard's charts: the heatmap of versions by failure
# mode, and the series of each severity by day. `x@y` holds (x's value, y's value).
COUNTED_PAIRS = (("model_version", "failure_mode"), ("severity", COUNT_DAY))
# Every count is kept again per value of this field (its folded copy, as a selection holds
# it), under the key `<value>\x1f<key>`: the dashboard of one model (its severities, heatmap
# and severity series) sums that model's count rows, where counting would read its ~30,000
# documents per panel. Keys never hold the separator, so a scoped key names one (value, key).
COUNT_SCOPE = "model"
SCOPE_SEP = "\x1f"
# Words as stemmed (English, as OpenSearch's analyzer), and as written (prefix searches:
# `injectio*` must find "injection", whose stem is "inject"). detail=column: a prefix needs
# no positions, only which column holds the word.
FTS_TABLES = ("doc_fts", "doc_plain")


def scoped_key(scope: str, key: str) -> str:
    """A count key kept for the documents whose COUNT_SCOPE (folded) is `scope`."""
    return f"{scope}{SCOPE_SEP}{key}"


class Layout:
    def __init__(self, schema: DocumentSchema) -> None:
        self.schema = schema
        self.text = schema.text_fields
        self.weights = tuple(f.weight for f in schema.text)
        # The scalar keywords other than the id (which has its own unique column).
        self.keywords = tuple(f.name for f in schema.scalar_keywords if f.name != "id")
        # Keywords matched in any case keep a folded copy (`<name>_f`) beside the stored
        # spelling: filters compare the copy (and it is indexed), facets group the spelling.
        self.folded = tuple(f.name for f in schema.scalar_keywords if f.folded)
        self.exact = tuple(c for c in self.keywords if c not in self.folded)
        self.ranks = tuple(f.rank for f in schema.ranks if f.rank)
        self.dates = tuple(f.name for f in schema.of(Kind.DATE))
        self.numbers = tuple(f.name for f in schema.of(Kind.NUMBER))
        self.lists = tuple(f.name for f in schema.list_keywords)
        self.map = schema.map.name if schema.map else None
        # The facets counted in doc_count (a map's keys are not: they are the caller's).
        self.counted = tuple(f.name for f in schema.scalar_keywords if f.facet)
        self.counted_lists = tuple(f.name for f in schema.list_keywords if f.facet)
        self.counts_days = "occurred_at" in self.dates
        self.pairs = tuple(
            (x, y)
            for x, y in COUNTED_PAIRS
            if x in self.counted and (y in self.counted or (y == COUNT_DAY and self.counts_days))
        )
        self.scoped = COUNT_SCOPE in self.counted
        self.columns = (
            "id",
            "revision",
            *self.keywords,
            *(f"{c}_f" for c in self.folded),
            *self.ranks,
            *self.dates,
            *self.numbers,
        )

    # ---- DDL --------------------------------------------------------------------------------

    def match_column(self, field: str) -> str:
        """The column a term on a scalar keyword compares with."""
        return f"{field}_f" if field in self.folded else field

    @property
    def delete_trigger(self) -> str:
        return """CREATE TRIGGER IF NOT EXISTS doc_ad AFTER DELETE ON doc BEGIN
    DELETE FROM doc_text WHERE pk = old.pk;
    DELETE FROM doc_kw WHERE pk = old.pk;
    DELETE FROM doc_env WHERE pk = old.pk;
END"""

    def _fts_rows(self, row: str) -> str:
        return ", ".join(f"{row}.{c}" for c in self.text)

    def _fts_delete(self) -> str:
        cols, old = ", ".join(self.text), self._fts_rows("old")
        return "".join(
            f"INSERT INTO {t}({t}, rowid, {cols}) VALUES ('delete', old.pk, {old});"
            for t in FTS_TABLES
        )

    def _fts_insert(self) -> str:
        cols, new = ", ".join(self.text), self._fts_rows("new")
        return "".join(
            f"INSERT INTO {t}(rowid, {cols}) VALUES (new.pk, {new});" for t in FTS_TABLES
        )

    @property
    def text_delete_trigger(self) -> str:
        return f"""CREATE TRIGGER IF NOT EXISTS doc_text_ad AFTER DELETE ON doc_text BEGIN
    {self._fts_delete()}
END"""

    def count_keys(
        self, values: dict[str, Any], lists: dict[str, list[str]]
    ) -> list[tuple[Any, ...]]:
        """(key, value, value2, sensitivity, team) of every count a document adds to:
        `values` its columns as stored in doc, `lists` its counted lists' values."""
        vis = (values.get("sensitivity") or "", values.get("team") or "")
        occurred = values.get("occurred_at")
        of = {c: values.get(c) for c in self.counted}
        # Floored to its day (UTC), as compiler.histogram_key("day").
        of[COUNT_DAY] = None if occurred is None else occurred - occurred % DAY_MS
        keys: list[tuple[Any, ...]] = [(COUNT_ALL, "", "", *vis)]
        keys += [(c, of[c], "", *vis) for c in self.counted if of[c] is not None]
        if self.counts_days and of[COUNT_DAY] is not None:
            keys.append((COUNT_DAY, of[COUNT_DAY], "", *vis))
        keys += [
            (f"{x}@{y}", of[x], of[y], *vis)
            for x, y in self.pairs
            if of[x] is not None and of[y] is not None
        ]
        keys += [(f, v, "", *vis) for f in self.counted_lists for v in lists.get(f) or ()]
        scope = values.get(self.match_column(COUNT_SCOPE)) if self.scoped else None
        if scope is not None:
            keys += [(scoped_key(scope, k[0]), *k[1:]) for k in keys]
        return keys

    @cached_property
    def ddl(self) -> str:
        cols = ", ".join(self.text)
        sortable_dates = {f.name for f in self.schema.of(Kind.DATE) if f.sort}
        indexes = [
            f"CREATE INDEX IF NOT EXISTS ix_doc_{c} ON doc ({', '.join(self._with_vis(c))})"
            for c in self.exact
        ]
        # (folded, stored, visibility): filters seek the folded copy; a facet groups the
        # stored spelling walking the index alone, in an order that keeps each spelling's
        # rows together, and an unfiltered search tests visibility in the index too.
        indexes += [
            f"CREATE INDEX IF NOT EXISTS ix_doc_{c}_f ON doc "
            f"({', '.join(self._with_vis(c + '_f', c))})"
            for c in self.folded
        ]
        indexes += [
            f"CREATE INDEX IF NOT EXISTS ix_doc_{r} ON doc ({r}, {TIEBREAK_DATE})"
            for r in self.ranks
        ]
        # A sortable date also carries visibility: the date histogram of a search that tests
        # nothing but visibility walks this index alone (aggregations.histogram).
        indexes += [
            f"CREATE INDEX IF NOT EXISTS ix_doc_{c} ON doc ("
            + (", ".join(self._with_vis(c, "id")) if c in sortable_dates else c)
            + ")"
            for c in (*self.dates, *self.numbers)
        ]
        doc_columns = ", ".join(
            [
                *(f"{c} TEXT" for c in self.keywords),
                *(f"{c}_f TEXT" for c in self.folded),
                *(f"{c} INTEGER" for c in (*self.ranks, *self.dates)),
                *(f"{c} REAL" for c in self.numbers),
            ]
        )
        vis = ", ".join(VISIBILITY_COLUMNS)
        return f"""
CREATE TABLE IF NOT EXISTS doc (
    pk INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    revision INTEGER NOT NULL,
    {doc_columns}
);
CREATE TABLE IF NOT EXISTS doc_text (
    pk INTEGER PRIMARY KEY,
    {", ".join(f"{c} TEXT" for c in self.text)}
);
CREATE TABLE IF NOT EXISTS doc_kw (
    field TEXT NOT NULL, folded TEXT NOT NULL, value TEXT NOT NULL, pk INTEGER NOT NULL,
    {", ".join(f"{c} TEXT" for c in VISIBILITY_COLUMNS)},
    PRIMARY KEY (field, folded, pk, value)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS ix_doc_kw_pk ON doc_kw (pk, field);
CREATE INDEX IF NOT EXISTS {KW_FACET_INDEX} ON doc_kw (field, value, {vis});
CREATE TABLE IF NOT EXISTS {COUNT_TABLE} (
    key TEXT NOT NULL, value NOT NULL, value2 NOT NULL, sensitivity TEXT NOT NULL,
    team TEXT NOT NULL, n INTEGER NOT NULL,
    PRIMARY KEY (key, value, value2, sensitivity, team)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS doc_env (
    fkey TEXT NOT NULL, fvalue TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
    pk INTEGER NOT NULL, PRIMARY KEY (fkey, fvalue, pk, key, value)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS ix_doc_env_pk ON doc_env (pk, key);
{";".join(indexes)};
CREATE VIRTUAL TABLE IF NOT EXISTS doc_fts USING fts5(
    {cols}, content='doc_text', content_rowid='pk',
    tokenize="porter unicode61 remove_diacritics 2 tokenchars '_'");
CREATE VIRTUAL TABLE IF NOT EXISTS doc_plain USING fts5(
    {cols}, content='doc_text', content_rowid='pk',
    tokenize="unicode61 remove_diacritics 2 tokenchars '_'", detail='column');
{self.delete_trigger};
CREATE TRIGGER IF NOT EXISTS doc_text_ai AFTER INSERT ON doc_text BEGIN
    {self._fts_insert()}
END;
{self.text_delete_trigger};
CREATE TRIGGER IF NOT EXISTS doc_text_au AFTER UPDATE ON doc_text BEGIN
    {self._fts_delete()}
    {self._fts_insert()}
END;
"""

    @cached_property
    def tables(self) -> tuple[str, ...]:
        return ("doc", "doc_text", "doc_kw", "doc_env", COUNT_TABLE)

    @cached_property
    def fingerprint(self) -> int:
        """Stored as the database's user_version: a file made for another layout is rebuilt."""
        # What the counts hold is part of the layout: an index counted otherwise is rebuilt.
        counted = repr((COUNTED_PAIRS, COUNT_SCOPE, SCOPE_SEP, self.scoped))
        digest = hashlib.sha256((self.ddl + counted).encode()).digest()
        return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF or 1

    def _with_vis(self, *columns: str) -> tuple[str, ...]:
        """Index columns, then the visibility columns not among them."""
        return (*columns, *(c for c in VISIBILITY_COLUMNS if c not in columns))

    def sort_index(self, key: str | None) -> str | None:
        """The index that holds doc in the order of a sort key's expression (the first one
        the sort orders by), if one does: the id's unique index, or a date's."""
        if key == "d.id":
            return "sqlite_autoindex_doc_1"  # UNIQUE (id): SQLite's name for it
        if key is not None and key.startswith("d.") and key[2:] in self.dates:
            return f"ix_doc_{key[2:]}"
        return None

    def facet_index(self, field: str) -> tuple[str, str] | None:
        """(index, GROUP BY) that count a scalar keyword facet in index order, without a sort:
        the stored spelling decides the folded copy, so grouping by both makes the same
        groups as by the spelling alone. None for a field without such an index."""
        if field in self.folded:
            return f"ix_doc_{field}_f", f"d.{field}_f, d.{field}"
        if field in self.exact:
            return f"ix_doc_{field}", f"d.{field}"
        return None

    # ---- statements -------------------------------------------------------------------------

    @cached_property
    def upsert(self) -> str:
        cols = self.columns
        return (
            f"INSERT INTO doc ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)}) "
            f"ON CONFLICT (id) DO UPDATE SET "
            + ", ".join(f"{c} = excluded.{c}" for c in cols[1:])
            + " WHERE excluded.revision >= doc.revision"
        )

    @cached_property
    def upsert_text(self) -> str:
        cols = ", ".join(self.text)
        return (
            f"INSERT INTO doc_text (pk, {cols}) VALUES (?, {', '.join('?' for _ in self.text)})"
            " ON CONFLICT (pk) DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in self.text)
        )
