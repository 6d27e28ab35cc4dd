"""Edges of the query language: dates at and past what a datetime holds, numbers that are not
finite, and `field:*` on full-text fields, from the parser through both backends, REST and
GraphQL."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.search.query import MAX_DEPTH, Exists, Not, Range, parse
from shared.errors import BadUserInput
from tests.conftest import auth_header
from tests.search import oracle
from tests.search.test_conformance import EVERYONE, INTERNAL, all_ids, request

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
LAST_DAY = int(datetime(9999, 12, 31, tzinfo=UTC).timestamp() * 1000)
DAY = 86_400_000

# Past the years 1..9999 a datetime holds: each was an OverflowError (a 500).
OUT_OF_RANGE_DATES = [
    ("occurred:>now-99999999999d", 11),
    ("occurred:>now-1000000d", 11),
    ("occurred:>now+1000000000y", 11),
    ("occurred:now-1000000d..now", 10),
    ("x received:*..now+9000y", 15),
]
NOT_FINITE = [
    ("confidence:NaN", 12, "NaN"),
    ("confidence:inf", 12, "inf"),
    ("confidence:-Infinity", 12, "-Infinity"),
    ("confidence:<1e999", 13, "1e999"),
    ("latency_ms:>-1e400", 13, "-1e400"),
    ("confidence:0..1e999", 15, "1e999"),
]


def _error(query: str) -> str:
    with pytest.raises(BadUserInput) as caught:
        parse(query, NOW)
    [error] = caught.value.errors
    assert error.path == "query"
    return error.message


@pytest.mark.parametrize(("query", "column"), OUT_OF_RANGE_DATES)
def test_a_date_out_of_range_is_a_bad_query_naming_its_column(query, column):
    message = _error(query)
    assert message.startswith(f"column {column}: expected a date in the years 1 to 9999"), message


@pytest.mark.parametrize(("query", "column", "value"), NOT_FINITE)
def test_a_number_must_be_finite(query, column, value):
    name = query.split(":")[0]
    assert _error(query) == f"column {column}: expected a number for '{name}', got '{value}'"


@pytest.mark.parametrize(
    ("query", "tree"),
    [
        # The last day's end is 10000-01-01, which no datetime holds: it is counted in ms.
        ("occurred:9999-12-31..*", Range("occurred_at", gte=LAST_DAY)),
        ("occurred:<=9999-12-31", Range("occurred_at", lt=LAST_DAY + DAY)),
        ("title:*", Exists("title")),
        ("-summary:*", Not(Exists("summary"))),
        ("hypothesis:*", Exists("writeup_hypothesis")),
    ],
)
def test_edges_that_parse(query, tree):
    assert parse(query, NOW) == tree


# ---- both backends, over the corpus (conftest.loaded) ---------------------------------------


@pytest.mark.parametrize(
    "query", ["title:*", "-title:*", "summary:*", "-summary:*", "impact:*", "-impact:*", "input:*"]
)
async def test_a_text_field_with_star_means_it_has_a_value(loaded, oracle_docs, query):
    field = query.lstrip("-").split(":")[0]
    negated = query.startswith("-")
    req = request(query, EVERYONE)
    # Straight from the documents: the oracle's own text matching would not see the bug.
    everyone = {d["id"] for d in oracle_docs}
    has = {d["id"] for d in oracle_docs if d[field] is not None}
    expected = everyone - has if negated else has
    # As a search for the word "*", `field:*` found nothing (and `-field:*` everything).
    assert expected != (everyone if negated else set())
    got = await all_ids(loaded, req)
    assert set(got) == expected, query
    assert (await loaded.search(req)).total == len(expected)


async def test_dates_at_the_ends_of_the_calendar(loaded, oracle_docs):
    visible = oracle.search_ids(oracle_docs, INTERNAL, parse(""))
    for query, expected in (
        ("occurred:9999-12-31..*", set()),
        ("occurred:>=0001-01-01", visible),
        ("occurred:<=9999-12-31", visible),
        ("occurred:<0001-01-01T00:00:00+01:00", set()),
    ):
        req = request(query, INTERNAL)
        assert oracle.search_ids(oracle_docs, INTERNAL, req.query) == expected, query
        assert set(await all_ids(loaded, req)) == expected, query


# ---- REST and GraphQL share the parser ------------------------------------------------------

SEARCH = "query($q: String!) { search(query: $q) { total } }"


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("occurred:>now-99999999999d", "column 11: expected a date in the years 1 to 9999"),
        ("occurred:>now+1000000000y", "column 11: expected a date in the years 1 to 9999"),
        ("confidence:NaN", "column 12: expected a number for 'confidence', got 'NaN'"),
        ("latency_ms:>-1e400", "column 13: expected a number for 'latency_ms'"),
    ],
)
async def test_rest_and_graphql_refuse_extreme_values_as_bad_input(client, token_for, query, says):
    reader = auth_header(await token_for("cases:read"))
    rest = await client.get("/search/v1/cases", params={"q": query}, headers=reader)
    assert rest.status_code == 400, rest.text
    problem = rest.json()
    assert problem["code"] == "BAD_USER_INPUT"
    assert problem["errors"][0]["path"] == "query"
    assert problem["errors"][0]["message"].startswith(says), problem
    body = (
        await client.post(
            "/graphql", json={"query": SEARCH, "variables": {"q": query}}, headers=reader
        )
    ).json()
    [error] = body["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["extensions"]["errors"] == problem["errors"]


# ---- nesting as deep as the language allows ---------------------------------------------------

_ATOMS = ["tags:llm", "status:resolved", "env.region:eu-west-1", "severity:<=S1", "team:*", "face"]


def _nested(levels: int, negated: bool) -> str:
    """`levels` parentheses: each a negated OR (`-(a OR -(b OR ...))`), or alternately an AND
    and an OR."""
    opening = "".join(
        ("-(" if negated else "(") + _ATOMS[i % len(_ATOMS)] + (" OR " if negated or i % 2 else " ")
        for i in range(levels)
    )
    return opening + "recognition" + ")" * levels


def test_negations_in_a_row_cancel_in_pairs():
    assert parse("--tags:llm", NOW) == parse("tags:llm", NOW)
    assert parse("NOT -(tags:llm)", NOW) == parse("tags:llm", NOW)
    assert parse("-(-(-tags:llm))", NOW) == parse("-tags:llm", NOW)
    # Read in a loop: 1,999 of them were as many recursive calls.
    assert parse("-" * 1997 + "ab", NOW) == parse("-ab", NOW)


@pytest.mark.parametrize(
    "query",
    [
        _nested(MAX_DEPTH, negated=True),
        _nested(MAX_DEPTH, negated=False),
        "-" * 41 + "tags:llm",
        "NOT " * 300 + "tags:llm",
        "-(" * MAX_DEPTH + "tags:llm" + ")" * MAX_DEPTH,
    ],
    ids=["negated levels", "levels", "dashes", "NOTs", "negated parentheses"],
)
async def test_a_query_nested_to_the_limit_is_answered(loaded, oracle_docs, query):
    # The embedded index compiled each level to a level of SQL, and SQLite's parser overflowed
    # its stack from ~20 of them ("parser stack overflow", a 500 for a valid query).
    req = request(query, EVERYONE)
    expected = oracle.search_ids(oracle_docs, EVERYONE, req.query)
    assert 0 < len(expected) < len(oracle_docs)
    assert set(await all_ids(loaded, req)) == expected
    assert (await loaded.search(req)).total == len(expected)


# ---- stopwords in phrases -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "same_as"),
    [
        ('"the"', ""),
        ('"Of the"', ""),
        ('title:"the"', ""),
        ('"!!!"', ""),
        ('-"the"', ""),
        ('"the" recognition', "recognition"),
        ('"the facial recognition"', '"facial recognition"'),
        ('title:"facial recognition of the"', 'title:"facial recognition"'),
    ],
)
async def test_stopwords_in_a_phrase_are_ignored_as_bare_ones_are(loaded, query, same_as):
    # OpenSearch's english analyzer drops stopwords, FTS5 keeps them: '"the"' found no case
    # in OpenSearch and most cases embedded ('-"the"' the reverse), and a phrase starting
    # with one found the phrase without it in OpenSearch, only the literal one embedded.
    assert parse(query, NOW) == parse(same_as, NOW)
    got = set(await all_ids(loaded, request(query, EVERYONE)))
    assert got == set(await all_ids(loaded, request(same_as, EVERYONE))) != set()


@pytest.mark.parametrize(
    ("query", "column", "raw", "name"),
    [
        ("confidence:0.4..0.2", 12, "0.4..0.2", "confidence"),
        ("x latency:500..30", 11, "500..30", "latency"),
        ("occurred:2026-02-01..2026-01-01", 10, "2026-02-01..2026-01-01", "occurred"),
        ("received:now-7d..now-30d", 10, "now-7d..now-30d", "received"),
    ],
)
def test_a_range_that_ends_before_it_starts_is_a_bad_query(query, column, raw, name):
    # It matched no case, silently: a typo read as "nothing in that range".
    assert _error(query) == f"column {column}: the range '{raw}' for '{name}' ends before it starts"


def test_a_range_of_one_value_or_one_day_still_parses():
    assert parse("confidence:0.2..0.2", NOW) == Range("confidence", gte=0.2, lte=0.2)
    assert parse("occurred:2026-01-01..2026-01-01", NOW) == parse("occurred:2026-01-01", NOW)
