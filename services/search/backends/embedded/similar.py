"""Similar cases: the source case's most telling words (tf x idf), OR-ed and ranked by bm25,
as OpenSearch's more_like_this picks and ranks them.

bm25 in FTS5 has no top-k pruning: it scores every row the OR matches, so the cost follows
the sum of the chosen words' document frequencies. As Lucene's MoreLikeThis does with
max_doc_freq, words in more than MAX_DOC_FRACTION of the documents are skipped (they say
nothing about likeness, and each would make the OR match most of the index); and the words
kept are the most telling ones whose frequencies together stay within MATCH_BUDGET of the
index, so the query scores a bounded share of it. Document frequencies are read from the
unstemmed index's vocabulary (one B-tree probe per word, pool.py's temp.plain_vocab),
not counted by a MATCH per word, which walks the word's whole posting list.
"""

from __future__ import annotations

import math
import re
import sqlite3
import unicodedata

from services.search.backends.embedded.compiler import Compiler, Sql, fts_phrase
from services.search.query import STOPWORDS
from services.search.request import Hit, Visibility

# As Lucene's max_query_terms.
MAX_TERMS = 25
# Words the source has more of are candidates first (Lucene: the top terms by frequency).
MAX_CANDIDATES = 100
# A word in more than this share of the documents is not a key term (max_doc_freq); in a
# small index (up to MIN_BUDGET documents) every word may be, as they all cost little.
MAX_DOC_FRACTION = 0.5
# The chosen words together match at most about this share of the index, or MIN_BUDGET
# documents in a small one (the most telling word is kept whatever its frequency, so there
# is always something to rank by).
MATCH_BUDGET = 0.1
MIN_BUDGET = 2000


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


def _vocab_form(word: str) -> str:
    """A word as the unstemmed index stores it (unicode61, remove_diacritics 2)."""
    return "".join(c for c in unicodedata.normalize("NFKD", word) if not unicodedata.combining(c))


def key_terms(conn: sqlite3.Connection, text: str, limit: int = MAX_TERMS) -> list[str]:
    tf: dict[str, int] = {}
    for word in re.findall(r"[^\W_]{3,}", text.lower()):
        if word not in STOPWORDS and not word.isdigit():
            tf[word] = tf.get(word, 0) + 1
    candidates = sorted(tf, key=lambda w: -tf[w])[:MAX_CANDIDATES]
    # max(pk): the end of the primary key, where count(*) would read a whole index.
    total = conn.execute("SELECT max(pk) FROM doc").fetchone()[0] or 1
    scored = []
    for word in candidates:
        found = conn.execute(
            "SELECT doc FROM temp.plain_vocab WHERE term = ?", [_vocab_form(word)]
        ).fetchone()
        df = found[0] if found else 0
        # A word no other document has cannot find a similar one; one in most says nothing.
        if 1 < df <= max(MAX_DOC_FRACTION * total, MIN_BUDGET):
            scored.append((tf[word] * math.log(1 + total / df), word, df))
    scored.sort(reverse=True)
    chosen, matched, budget = [], 0, max(MIN_BUDGET, MATCH_BUDGET * total)
    for _, word, df in scored:
        if chosen and matched + df > budget:
            continue
        chosen.append(word)
        matched += df
        if len(chosen) == limit:
            break
    return chosen
