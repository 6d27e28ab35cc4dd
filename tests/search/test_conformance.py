"""Every search behaviour, run against both backends (embedded SQLite FTS5 and OpenSearch).

Relevance order may differ between them; result sets, counts, facets and the order of the
other sorts may not. Expected values come from tests/search/oracle.py.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

import pytest

from services.search.backends.base import SearchBackend
from services.search.fields import SCHEMA
from services.search.query import parse
from services.search.request import (
    Heatmap,
    SearchRequest,
    SearchResult,
    Visibility,
    filter_model,
)
from shared.security import Principal, Sensitivity
from tests.search import oracle
from tests.search.conftest import NOW

EVERYONE = Visibility(("public", "internal", "confidential", "restricted"), None)
INTERNAL = Visibility.of(Principal("u", "c", clearance=Sensitivity.INTERNAL))
NLP_TEAM = Visibility.of(Principal("u", "c", team="nlp", clearance=Sensitivity.CONFIDENTIAL))


def request(query: str, vis: Visibility = INTERNAL, **kw: Any) -> SearchRequest:
    return SearchRequest(visibility=vis, query=parse(query, NOW), **kw)


async def all_ids(backend: SearchBackend, req: SearchRequest) -> list[str]:
    """Every hit, page by page through the cursor (sort values of the last hit)."""
    out: list[str] = []
    req = dataclasses.replace(req, first=97)
    while True:
        res = await backend.search(req)
        out += [h.id for h in res.hits]
        if not res.has_more:
            return out
        req = dataclasses.replace(req, after=res.hits[-1].sort_values)


STRUCTURED = [
    "severity:S1",
    "severity:<=S1",
    "severity:>S2",
    "severity:S1..S3",
    "-severity:*",
    "status:resolved OR status:wont_fix",
    "-status:resolved",
    "team:nlp",
    "-team:*",
    "tags:regression tags:llm",
    "tags:customer-facing OR (tags:llm -tags:regression)",
    "failure_mode:safety",
    "failure_mode:latency.timeout",
    "mode:safety -failure_mode:safety.hallucination",
    "confidence:<0.3",
    "confidence:0.2..0.4",
    "latency_ms:>500",
    "latency:>=612",
    "env.region:eu-west-1",
    "env.hardware:gpu-a100 OR env.hardware:cpu",
    "env.hardware:*",
    "-env.hardware:*",
    "occurred:2025-06-10..2025-06-20",
    "occurred:2025-06-15",
    "occurred:<2025-06-03",
    "occurred:>now-7d",
    "occurred:>=now-45d",
    "sensitivity:public",
    "sensitivity:>=internal",
    "model:tensorflow model_version:2.0",
    "source:avid severity:S0",
    "data_source:aiid (status:new OR status:triaged) -tags:llm",
    # The embedded backend probes tag/environment rows per candidate when text drives the
    # query, and lists them otherwise (under a negation too): both forms must agree.
    "model -tags:llm",
    "model -env.region:eu-west-1",
    "bias env.hardware:cpu tags:llm",
    "-(tags:llm OR env.hardware:gpu-a100)",
]


@pytest.mark.parametrize("query", STRUCTURED)
async def test_structured_queries_match_the_oracle(loaded, oracle_docs, query):
    for vis in (INTERNAL, NLP_TEAM, EVERYONE):
        req = request(query, vis)
        expected = oracle.search_ids(oracle_docs, vis, req.query)
        got = await all_ids(loaded, req)
        assert len(got) == len(set(got)), "a page repeated a hit"
        assert set(got) == expected, query
        res = await loaded.search(req)
        assert res.total == len(expected) and not res.total_is_lower_bound


TEXT = [
    ("zorblax", {"p-refund-1", "p-refund-2"}),
    ("ZORBLAX refund", {"p-refund-1", "p-refund-2"}),
    ('"zorblax refund"', {"p-refund-1", "p-refund-2"}),  # stemmed: "zorblax refunds"
    ('"zorblax pattern"', {"p-refund-2"}),
    ('"refund zorblax"', set()),
    ("quuxinator OR zorblax", {"p-refund-1", "p-refund-2", "p-timeout"}),
    ("zorblax -severity:S1", {"p-refund-1"}),
    ("zorblax severity:<=S1", {"p-refund-2"}),
    ("title:quuxinator", {"p-timeout"}),
    ("summary:quuxinator latency_ms:>1000", {"p-timeout"}),
    ("title:retraining", {"p-refund-2"}),
    ("(zorblax OR quuxinator) env.hardware:gpu-a100", {"p-timeout"}),
    ("zorblax occurred:>now-7d", {"p-refund-1"}),
    ("the zorblax", {"p-refund-1", "p-refund-2"}),  # stopwords are ignored on both
    ("snarfwidget", {"p-team"}),
    ("-zorblax tags:planted", {"p-timeout", "p-team", "p-payload"}),
]


@pytest.mark.parametrize(("query", "expected"), TEXT)
async def test_full_text(loaded, query, expected):
    res = await loaded.search(request(query))
    assert {h.id for h in res.hits} == expected
    assert res.total == len(expected)


async def test_full_text_on_real_corpus_text(loaded, oracle_docs):
    # Words from the AIID/AVID records themselves: the same documents on both backends.
    for word in ("YouTube", "Tesla", "facial"):
        res = await loaded.search(request(word, EVERYONE, first=500))
        expected = oracle.search_ids(oracle_docs, EVERYONE, parse(word))
        assert {h.id for h in res.hits} == expected, word
        assert expected, word


async def test_relevance_ranks_better_matches_first(loaded):
    res = await loaded.search(request("zorblax OR retraining"))
    assert res.hits[0].id == "p-refund-2"  # the only one with both words
    assert res.hits[0].score >= res.hits[1].score


async def test_highlights_mark_matches_and_escape_html(loaded):
    res = await loaded.search(request("zorblax"))
    by_id = {h.id: h.highlights for h in res.hits}
    assert "<em>zorblax</em>" in by_id["p-refund-1"]["title"][0].lower()
    summary = by_id["p-refund-1"]["summary"][0]
    assert "<em>" in summary and "<merchant>" not in summary
    assert "&lt;merchant&gt;" in summary
    res = await loaded.search(request("tags:planted"))
    assert all(h.highlights == {} for h in res.hits)  # nothing textual to highlight


FACETS = (
    "severity",
    "status",
    "team",
    "tags",
    "failure_mode",
    "failure_mode_parent",
    "model_version",
    "data_source",
    "sensitivity",
    "env",
    "env.region",
)


@pytest.mark.parametrize(
    "query",
    [
        "",  # visibility only: embedded facets walk their indexes (lists: layout.KW_FACET_INDEX)
        "-severity:S4",  # most of the index: the set tested in each facet's index
        "severity:<=S2 -status:resolved",
        "tags:planted",
    ],
)
async def test_facet_counts_over_the_filtered_set(loaded, oracle_docs, query):
    for vis in (EVERYONE, INTERNAL, NLP_TEAM):
        req = request(query, vis, facets=FACETS, facet_size=10)
        res = await loaded.search(req)
        for field in FACETS:
            expected = oracle.facet(oracle_docs, vis, req.query, field, size=10)
            assert [(b.value, b.count) for b in res.facets[field]] == expected, field


async def test_multi_select_facets_do_not_narrow_their_own_counts(loaded, oracle_docs):
    selections = {"severity": ("S0", "S1"), "tags": ("regression",), "env.region": ("us-east-1",)}
    req = request(
        "", INTERNAL, selections=selections, facets=("severity", "tags", "env.region", "status")
    )
    res = await loaded.search(req)
    expected_ids = oracle.search_ids(oracle_docs, INTERNAL, req.query, selections)
    assert res.total == len(expected_ids)
    assert set(await all_ids(loaded, req)) == expected_ids
    for field in req.facets:
        expected = oracle.facet(oracle_docs, INTERNAL, req.query, field, selections)
        assert [(b.value, b.count) for b in res.facets[field]] == expected, field
    # The severity facet still offers S2..S4 although only S0/S1 are selected.
    assert {b.value for b in res.facets["severity"]} >= {"S2", "S3", "S4"}


async def test_date_histogram(loaded, oracle_docs):
    req = request("data_source:avid severity:S0", INTERNAL, histogram="day")
    res = await loaded.search(req)
    assert [(b.value, b.count) for b in res.histogram] == oracle.histogram_days(
        oracle_docs, INTERNAL, req.query
    )
    week = await loaded.search(request("data_source:avid", INTERNAL, histogram="week"))
    assert sum(b.count for b in week.histogram) == week.total
    assert all(b.value.endswith("T00:00:00.000Z") for b in week.histogram)
    month = await loaded.search(request("", INTERNAL, histogram="month"))
    assert [b.value[:10] for b in month.histogram][:2] == ["2025-06-01", "2025-07-01"]


@pytest.mark.parametrize(
    "query",
    [
        "",  # visibility only: the embedded backend walks the date index alone
        "-severity:S4",  # most of the index: the matching set tested in the date index
        "data_source:avid severity:S0",  # a small set, joined to doc
    ],
)
async def test_month_histogram_equals_the_oracle(loaded, oracle_docs, query):
    for vis in (EVERYONE, INTERNAL, NLP_TEAM):
        req = request(query, vis, histogram="month")
        res = await loaded.search(req)
        expected = oracle.histogram_months(oracle_docs, vis, req.query)
        assert [(b.value, b.count) for b in res.histogram] == expected, (query, vis)


async def test_heatmap(loaded, oracle_docs):
    # Scalar y (counted in one pass on the embedded backend), with a scalar and a
    # multi-valued x; and a multi-valued y.
    for x, y in (
        ("failure_mode", "model_version"),
        ("tags", "severity"),
        ("tags", "env.region"),
    ):
        req = request("-status:resolved", INTERNAL, heatmap=Heatmap(x, y, size=5))
        res = await loaded.search(req)
        assert [(c.x, c.y, c.count) for c in res.heatmap] == oracle.heatmap(
            oracle_docs, INTERNAL, req.query, x, y, size=5
        )


SORT_KEYS = {
    "occurred_at": lambda d: (d["occurred_ms"], d["id"]),
    "-occurred_at": lambda d: (-d["occurred_ms"], d["id"]),
    "severity": lambda d: (
        99 if d["severity_rank"] is None else d["severity_rank"],
        -d["occurred_ms"],
        d["id"],
    ),
    "-severity": lambda d: (
        -(-1 if d["severity_rank"] is None else d["severity_rank"]),
        -d["occurred_ms"],
        d["id"],
    ),
}


@pytest.mark.parametrize("sort", list(SORT_KEYS))
async def test_sorts_and_cursor_pages(loaded, oracle_docs, sort):
    req = request("-status:resolved", INTERNAL, sort=sort)
    got = await all_ids(loaded, req)
    rows = [d for d in oracle_docs if oracle.visible(d, INTERNAL) and oracle.matches(d, req.query)]
    assert got == [d["id"] for d in sorted(rows, key=SORT_KEYS[sort])]


async def test_relevance_pages_are_complete_and_disjoint(loaded, oracle_docs):
    req = request("model OR data OR bias", EVERYONE, sort="relevance")
    got = await all_ids(loaded, req)
    assert len(got) == len(set(got))
    first = await loaded.search(req)
    assert len(got) == first.total


async def test_relevance_pages_follow_one_order(loaded):
    # Small pages (cut at the page's lowest score, ties included) read back as one list in
    # (score desc, id) order, including hits that match only a non-text branch (score 0).
    req = request("model OR bias OR tags:planted", EVERYONE, sort="relevance", first=500)
    whole = await loaded.search(req)
    paged, page = [], dataclasses.replace(req, first=5)
    while True:
        res = await loaded.search(page)
        paged += res.hits
        if not res.has_more:
            break
        page = dataclasses.replace(page, after=res.hits[-1].sort_values)
    assert [h.id for h in paged] == [h.id for h in whole.hits]
    scores = [h.score for h in paged]
    assert scores == sorted(scores, reverse=True)


async def test_cursor_does_not_drift_when_documents_arrive(fresh_backend, corpus):
    backend = await fresh_backend()
    await backend.index(corpus[:60])
    await backend.refresh()
    req = request("", EVERYONE, sort="-occurred_at", first=10)
    page1 = await backend.search(req)
    # Newer documents arrive between pages: they sort before the cursor, so page 2 goes on
    # exactly where page 1 stopped (no repeats, no skips), unlike from/size paging.
    newer = [
        dict(d, id=f"new-{i}", occurred_at=(NOW + timedelta(days=1)).isoformat())
        for i, d in enumerate(corpus[60:70])
    ]
    await backend.index(newer)
    await backend.refresh()
    page2 = await backend.search(dataclasses.replace(req, after=page1.hits[-1].sort_values))
    ordered = sorted(corpus[:60], key=lambda d: (-oracle.to_epoch_ms(d["occurred_at"]), d["id"]))
    assert [h.id for h in page1.hits + page2.hits] == [d["id"] for d in ordered[:20]]


async def test_total_is_exact_to_10000_then_a_lower_bound(fresh_backend):
    backend = await fresh_backend()
    docs = [
        {
            "id": f"bulk-{i:05d}",
            "revision": 1,
            "title": "bulk load document",
            "model": "m",
            "model_version": "1",
            "data_source": "s",
            "status": "new",
            "sensitivity": "internal",
            "occurred_at": "2026-01-01T00:00:00Z",
            "severity": "S0" if i < 10_000 else "S1",
        }
        for i in range(10_050)
    ]
    for i in range(0, len(docs), 2000):
        await backend.index(docs[i : i + 2000])
    await backend.refresh()
    exact = await backend.search(request("severity:S0", first=1))
    assert (exact.total, exact.total_is_lower_bound) == (10_000, False)
    over = await backend.search(request("bulk", first=1))
    assert (over.total, over.total_is_lower_bound) == (10_000, True)
    small = await backend.search(request("severity:S1", first=1, facets=("severity",)))
    assert (small.total, small.total_is_lower_bound) == (50, False)


# ---- case, prefixes and the captured payload --------------------------------------------------

# Keyword values in another case than stored, and prefixes, over the real corpus: the AIID and
# AVID records name models such as "Kimi-K2-Instruct-0905", and write about prompt injection.
FORGIVING = [
    "model:kimi-k2-instruct-0905",
    "model:KIMI-K2-INSTRUCT-0905 -status:RESOLVED",
    "model:kimi*",
    "model:Kimi-K2-* OR model:tesla",
    "status:TRIAGED OR status:In_Remediation",
    "tags:REGRESSION -tags:LLM",
    "tags:Reg*",
    "failure_mode:SAFETY",
    "failure_mode:safety.H*",
    "team:NLP OR team:Vision",
    "env.region:EU-WEST-1",
    "env.REGION:eu-*",
    "-env.Hardware:*",
    "sensitivity:PUBLIC",
    "severity:s0 data_source:AVID",
    "injectio*",
    "title:injectio*",
    "Injectio* -tags:llm",
    "prompt inject*",
    "tags:privacy",
]


@pytest.mark.parametrize("query", FORGIVING)
async def test_keywords_forgive_case_and_prefixes_match(loaded, oracle_docs, query):
    for vis in (INTERNAL, NLP_TEAM, EVERYONE):
        req = request(query, vis)
        expected = oracle.search_ids(oracle_docs, vis, req.query)
        assert set(await all_ids(loaded, req)) == expected, query
    assert oracle.search_ids(oracle_docs, EVERYONE, request(query).query), "found nothing"


async def test_facets_show_the_stored_spelling(loaded, oracle_docs):
    selections = filter_model(SCHEMA)(tags=["PRIVACY"], model=["chatgpt"]).selections()
    req = request("", INTERNAL, selections=selections, facets=("model", "tags"))
    res = await loaded.search(req)
    assert [h.id for h in res.hits] == ["p-payload"]
    assert ("ChatGPT", 1) in [(b.value, b.count) for b in res.facets["model"]]
    assert ("Privacy", 1) in [(b.value, b.count) for b in res.facets["tags"]]
    res = await loaded.search(request("model:kimi*", EVERYONE, facets=("model",)))
    assert [b.value for b in res.facets["model"]] == ["Kimi-K2-Instruct-0905"]
    assert res.total == len(oracle.search_ids(oracle_docs, EVERYONE, parse("model:kimi*")))


async def test_the_captured_payload_is_searchable_text_under_visibility(loaded):
    # In its own fields and in free text, for those who may see the case only.
    for query in (
        "input:flurbotron",
        "flurbotron",
        "input:flurbo*",
        'input:"flurbotron passphrase"',
    ):
        assert {h.id for h in (await loaded.search(request(query))).hits} == {"p-payload"}
        everyone = await loaded.search(request(query, EVERYONE))
        assert {h.id for h in everyone.hits} == {"p-payload", "p-payload-secret"}
    assert (await loaded.search(request("grobblespanner", NLP_TEAM))).total == 0
    assert [h.id for h in (await loaded.search(request("prediction:complied"))).hits] == [
        "p-payload"
    ]
    assert (await loaded.search(request("expected:complied"))).total == 0
    res = await loaded.search(request("flurbotron"))
    assert "<em>flurbotron</em>" in res.hits[0].highlights["input"][0].lower()


# ---- visibility -----------------------------------------------------------------------------


async def test_restricted_case_never_reaches_a_caller_without_clearance(loaded):
    """Hits, counts, facets, highlights and similar cases: the restricted p-secret
    (team vision) must not show up for an internal-clearance caller, nor for another team."""
    for vis in (INTERNAL, NLP_TEAM):
        for q in (
            "zorblax",
            "snarfwidget",
            "tags:secret-tag",
            "env.region:secret-region",
            "id:p-secret",
            "severity:S0 tags:planted",
        ):
            res = await loaded.search(
                request(
                    q, vis, facets=FACETS, histogram="day", heatmap=Heatmap("tags", "env.region")
                )
            )
            assert "p-secret" not in {h.id for h in res.hits}, q
            assert res.total == len(res.hits), q
            values = {b.value for bs in res.facets.values() for b in bs}
            assert not values & {"restricted", "secret-tag", "secret-region"}, q
            assert not any("secret" in c.x + c.y for c in res.heatmap), q
            text = str([h.highlights for h in res.hits])
            assert "red team" not in text and "exploit" not in text
        assert await loaded.similar(vis, "p-secret", 10) == []  # cannot probe by id either
        similar = await loaded.similar(vis, "p-refund-1", 50)
        assert "p-secret" not in {h.id for h in similar}
    # Team membership: the vision team's internal case is hidden from the nlp team only.
    assert (await loaded.search(request("snarfwidget", NLP_TEAM))).total == 0
    assert (await loaded.search(request("snarfwidget", INTERNAL))).total == 1
    # With clearance and no team binding, it is there.
    res = await loaded.search(request("zorblax", EVERYONE, facets=("sensitivity",)))
    assert "p-secret" in {h.id for h in res.hits}
    assert ("restricted", 1) in [(b.value, b.count) for b in res.facets["sensitivity"]]


# ---- similar --------------------------------------------------------------------------------


async def test_similar_cases(loaded):
    similar = await loaded.similar(INTERNAL, "p-refund-1", 5)
    ids = [h.id for h in similar]
    assert "p-refund-2" in ids and "p-refund-1" not in ids
    assert len(ids) <= 5
    assert await loaded.similar(INTERNAL, "no-such-case", 5) == []


# ---- writes ---------------------------------------------------------------------------------


def _doc(id_: str, revision: int, title: str, **kw: Any) -> dict[str, Any]:
    return {
        "id": id_,
        "revision": revision,
        "title": title,
        "model": "m",
        "model_version": "1",
        "data_source": "s",
        "status": "new",
        "sensitivity": "internal",
        "occurred_at": "2026-01-01T00:00:00Z",
        "tags": ["a"],
        "environment": {"region": "eu"},
    } | kw


async def test_external_versions_keep_the_newest_revision(fresh_backend):
    backend = await fresh_backend()
    await backend.index([_doc("v1", 2, "second revision", tags=["a"])])
    # The same revision again is the document rebuilt from the catalog as it is now (a
    # context event recorded later re-queues a case at its revision): it replaces the stored
    # one. A late, older revision is ignored.
    await backend.index([_doc("v1", 2, "second revision rebuilt", tags=["b"])])
    await backend.index([_doc("v1", 1, "first revision", tags=["a"])])
    await backend.refresh()
    assert await backend.revisions() == {"v1": 2}
    assert (await backend.search(request("first"))).total == 0
    assert [h.id for h in (await backend.search(request("rebuilt"))).hits] == ["v1"]
    res = await backend.search(request("second", facets=("tags",)))
    assert [h.id for h in res.hits] == ["v1"]
    assert [(b.value, b.count) for b in res.facets["tags"]] == [("b", 1)]
    # A newer revision replaces text, tags and environment.
    await backend.index([_doc("v1", 3, "third revision", tags=["c"], environment={"region": "us"})])
    await backend.refresh()
    res = await backend.search(request("env.region:us", facets=("tags", "env.region")))
    assert [h.id for h in res.hits] == ["v1"]
    assert [(b.value, b.count) for b in res.facets["tags"]] == [("c", 1)]
    assert (await backend.search(request("second OR env.region:eu"))).total == 0


async def test_delete(fresh_backend):
    backend = await fresh_backend()
    await backend.index([_doc("d1", 1, "gone soon"), _doc("d2", 1, "stays")])
    await backend.delete(["d1", "never-indexed"])
    await backend.refresh()
    assert await backend.revisions() == {"d2": 1}
    assert (await backend.search(request("gone"))).total == 0


async def test_rebuild_swaps_atomically_while_searches_keep_working(fresh_backend):
    backend = await fresh_backend()
    await backend.index([_doc(f"old-{i}", 1, "old generation") for i in range(5)])
    await backend.refresh()
    seen_during: list[SearchResult] = []
    progress: list[int] = []

    async def batches():
        for b in range(3):
            yield [_doc(f"new-{b}-{i}", 1, "new generation") for i in range(4)]
            # Mid-rebuild, searches still answer from the old index.
            seen_during.append(await backend.search(request("generation")))

    written = await backend.rebuild(batches(), lambda done, _: progress.append(done))
    assert written == 12 and progress == [4, 8, 12]
    assert all(r.total == 5 and r.hits[0].id.startswith("old-") for r in seen_during)
    res = await backend.search(request("generation", first=50))
    assert res.total == 12 and all(h.id.startswith("new-") for h in res.hits)
    assert len(await backend.revisions()) == 12


async def test_ping(loaded):
    assert await loaded.ping()
