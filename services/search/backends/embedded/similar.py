"""Similar cases: the source case's most telling words (tf x idf), OR-ed and ranked by bm25,
as OpenSearch's more_like_this picks and ranks them."""

from __future__ import annotations

import math
import re
import sqlite3

from services.search.backends.embedded.compiler import Compiler, Sql, fts_phrase
from services.search.query import STOPWORDS
from services.search.request import Hit, Visibility


def similar(
    conn: sqlite3.Connection, compiler: Compiler, visibility: Visibility, case_id: str, first: int
) -> list[Hit]:
    layout = compiler.layout
    sql = Sql()
    # The source case must itself be visible, or its text would steer the results.
    where = f"d.id = {sql.add(case_id)} AND {compiler.visibility(visibility, sql)}"
    rows = conn.execute(
        f"SELECT d.pk, {', '.join('t.' + c for c in layout.text)} FROM doc d "
        f"JOIN doc_text t ON t.pk = d.pk WHERE {where}",
        sql.params,
    ).fetchall()
    if not rows:
        return []
    pk, texts = rows[0][0], [t for t in rows[0][1:] if t]
    terms = key_terms(conn, " ".join(texts))
    if not terms:
        return []
    sql = Sql()
    match = " OR ".join(fts_phrase(t) for t in terms)
    weights = ", ".join(str(w) for w in layout.weights)
    stmt = (
        f"WITH s AS MATERIALIZED (SELECT rowid AS pk, -bm25(doc_fts, {weights}) AS score"
        f" FROM doc_fts WHERE doc_fts MATCH {sql.add(match)}) "
        f"SELECT d.id, s.score FROM s JOIN doc d ON d.pk = s.pk "
        f"WHERE d.pk != {sql.add(pk)} AND {compiler.visibility(visibility, sql)} "
        f"ORDER BY s.score DESC, d.id LIMIT {sql.add(first)}"
    )
    hits = conn.execute(stmt, sql.params).fetchall()
    return [Hit(id=r[0], score=r[1], highlights={}) for r in hits]


def key_terms(conn: sqlite3.Connection, text: str, limit: int = 25) -> list[str]:
    tf: dict[str, int] = {}
    for word in re.findall(r"[^\W_]{3,}", text.lower()):
        if word not in STOPWORDS and not word.isdigit():
            tf[word] = tf.get(word, 0) + 1
    candidates = sorted(tf, key=lambda w: -tf[w])[:100]
    total = conn.execute("SELECT count(*) FROM doc").fetchone()[0] or 1
    scored = []
    for word in candidates:
        df = conn.execute(
            "SELECT count(*) FROM doc_fts WHERE doc_fts MATCH ?", [fts_phrase(word)]
        ).fetchone()[0]
        if df > 1:  # a word no other document has cannot find a similar one
            scored.append((tf[word] * math.log(1 + total / df), word))
    scored.sort(reverse=True)
    return [w for _, w in scored[:limit]]
