"""A rule's query judged in memory over one document means what the search engines make of
it: every structured query of the search conformance suite, and its full-text ones, give the
same cases on the real backends (embedded FTS5 and OpenSearch) and in the matcher."""

from __future__ import annotations

import pytest

from services.governance.escalation.matcher import Document, matches, stem
from services.search.query import parse
from tests.search.conftest import (  # noqa: F401  (fixtures: both backends, loaded with the corpus)
    NOW,
    corpus,
    loaded,
    search_kind,
)
from tests.search.test_conformance import EVERYONE, STRUCTURED, TEXT, all_ids, request


@pytest.fixture(scope="module")
def documents(corpus):  # noqa: F811
    return [Document(d) for d in corpus]


@pytest.mark.parametrize("query", STRUCTURED + [q for q, _ in TEXT])
async def test_the_matcher_agrees_with_the_search_backends(loaded, documents, query):  # noqa: F811
    tree = parse(query, NOW)
    expected = set(await all_ids(loaded, request(query, EVERYONE)))
    got = {d.id for d in documents if matches(d, tree)}
    assert got == expected, query


def test_the_queries_compared_are_not_vacuous(documents):
    """Most of them select some cases and leave others out."""
    queries = STRUCTURED + [q for q, _ in TEXT]
    counts = [sum(matches(d, parse(q, NOW)) for d in documents) for q in queries]
    selective = [c for c in counts if 0 < c < len(documents)]
    assert len(selective) >= 0.8 * len(queries), list(zip(queries, counts, strict=True))


def test_suffix_folding_keeps_short_words_and_joins_inflections():
    assert stem("refunds") == stem("refund") == stem("refunded") == stem("refunding")
    assert stem("is") == "is" and stem("bus") == "bus"
