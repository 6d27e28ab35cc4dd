"""The embedded index's kept counts (doc_count): the aggregations of a search that tests only
visibility, or one counted selection, are read from them (backends/embedded/counts.py). They
must equal the documents' own counts (the oracle) after every kind of write: new documents,
newer revisions that move a document between values and visibility buckets, deletes, a
rebuild; and under an exclusion (the blind-read guard's `-blinded:<me>`)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from services.search.backends.embedded import counts
from services.search.fields import fold
from services.search.query import MatchAll, Not, Term, parse
from services.search.request import Heatmap, SearchRequest, Visibility
from shared.security import Principal, Sensitivity
from tests.search import oracle
from tests.search.conftest import NOW, backend_of
from tests.search.corpus import corpus_documents, planted_documents
from tests.search.test_conformance import FACETS as CONFORMANCE_FACETS

EVERYONE = Visibility(("public", "internal", "confidential", "restricted"), None)
INTERNAL = Visibility.of(Principal("u", "c", clearance=Sensitivity.INTERNAL))
NLP_TEAM = Visibility.of(Principal("u", "c", team="nlp", clearance=Sensitivity.CONFIDENTIAL))
# Every counted facet of the conformance corpus (the environment map's are not counted).
FACETS = tuple(f for f in CONFORMANCE_FACETS if f != "env" and not f.startswith("env."))
HEATMAP = ("model_version", "failure_mode")  # the dashboard's (layout.COUNTED_PAIRS)


def _requests(query: Any, vis: Visibility, docs: list[dict[str, Any]]) -> list[SearchRequest]:
    """The unfiltered search page, the dashboard's overview and one severity's series; and
    the same of one model (the heatmap page: a model's own counts, layout.COUNT_SCOPE),
    and of two models at once."""
    models = Counter(fold(d["model"]) for d in docs if d.get("model")).most_common(2)
    one, two = (models[0][0],), tuple(m for m, _ in models)
    return [
        SearchRequest(vis, query, facets=FACETS, facet_size=10, histogram="month"),
        SearchRequest(vis, query, facets=("severity",), heatmap=Heatmap(*HEATMAP, size=5)),
        SearchRequest(vis, query, selections={"severity": ("S1",)}, histogram="day"),
        SearchRequest(vis, query, selections={"severity": ("S0", "S2")}, histogram="week"),
        SearchRequest(
            vis,
            query,
            selections={"model": one},
            facets=(*FACETS, "model"),
            facet_size=10,
            histogram="month",
        ),
        SearchRequest(
            vis,
            query,
            selections={"model": one},
            facets=("severity",),
            heatmap=Heatmap(*HEATMAP, size=5),
        ),
        SearchRequest(vis, query, selections={"model": one, "severity": ("S1",)}, histogram="day"),
        SearchRequest(
            vis, query, selections={"model": two, "severity": ("S0", "S2")}, histogram="week"
        ),
        SearchRequest(vis, query, selections={"model": two}, facets=("model", "tags")),
    ]


async def _assert_counted_like_the_oracle(
    backend, docs: list[dict[str, Any]], query: Any, unseen: frozenset[str] = frozenset()
) -> None:
    """`unseen`: ids the query excludes (the oracle reads `blinded` as one value, not a
    list, so the expected counts leave these documents out instead)."""
    prepared = [d for d in oracle.prepare(docs) if d["id"] not in unseen]
    for vis in (EVERYONE, INTERNAL, NLP_TEAM):
        for req in _requests(query, vis, prepared):
            # The counts answer it (else this test would only compare the ordinary path).
            answered = await backend.pool.read(
                lambda conn, req=req: counts.answer(conn, backend.compiler, req)
            )
            assert answered is not None, req
            res = await backend.search(req)
            node, sel = (req.query if not unseen else MatchAll()), req.selections
            assert res.total == len(oracle.search_ids(prepared, vis, node, sel)), (vis, req)
            for field in req.facets:
                expected = oracle.facet(prepared, vis, node, field, sel, size=req.facet_size)
                assert [(b.value, b.count) for b in res.facets[field]] == expected, field
            if req.heatmap:
                narrowed = [d for d in prepared if oracle.selected(d, sel)]
                expected_cells = oracle.heatmap(narrowed, vis, node, *HEATMAP, size=5)
                assert [(c.x, c.y, c.count) for c in res.heatmap] == expected_cells
            if req.histogram:
                narrowed = [d for d in prepared if oracle.selected(d, sel)]
                if req.histogram == "month":
                    expected_days = oracle.histogram_months(narrowed, vis, node)
                    assert [(b.value, b.count) for b in res.histogram] == expected_days
                elif req.histogram == "day":
                    expected_days = oracle.histogram_days(narrowed, vis, node)
                    assert [(b.value, b.count) for b in res.histogram] == expected_days
                else:
                    assert sum(b.count for b in res.histogram) == res.total
                    assert all(b.value.endswith("T00:00:00.000Z") for b in res.histogram)


async def _assert_cell_facets_like_the_oracle(
    backend, docs: list[dict[str, Any]], query: Any, unseen: frozenset[str] = frozenset()
) -> None:
    """A heatmap cell's search: a version and a failure mode selected. Each one's own facet
    (over the other selection alone) comes from the pair counts."""
    prepared = [d for d in oracle.prepare(docs) if d["id"] not in unseen]
    pairs = Counter(
        (d["model_version"], d["failure_mode"])
        for d in prepared
        if d.get("model_version") and d.get("failure_mode")
    )
    (version, mode), _ = pairs.most_common(1)[0]
    selections = {"model_version": (fold(version),), "failure_mode": (fold(mode),)}
    for vis in (EVERYONE, INTERNAL, NLP_TEAM):
        req = SearchRequest(
            vis, query, selections=selections, facets=(*HEATMAP, "severity"), facet_size=50
        )
        for field in HEATMAP:
            found = await backend.pool.read(
                lambda conn, field=field, req=req: counts.selected_facet(
                    conn, backend.compiler, req, field
                )
            )
            assert found is not None, field
        res = await backend.search(req)
        node = req.query if not unseen else MatchAll()
        for field in req.facets:
            expected = oracle.facet(prepared, vis, node, field, selections, size=50)
            assert [(b.value, b.count) for b in res.facets[field]] == expected, (vis, field)
        # One value of one facet selected (the search page): that facet from its counts.
        one = {"severity": ("S1",)}
        req = SearchRequest(vis, query, selections=one, facets=("severity", "status"))
        found = await backend.pool.read(
            lambda conn, req=req: counts.selected_facet(conn, backend.compiler, req, "severity")
        )
        assert found is not None
        res = await backend.search(req)
        for field in req.facets:
            expected = oracle.facet(prepared, vis, node, field, one)
            assert [(b.value, b.count) for b in res.facets[field]] == expected, (vis, field)


def _changed(doc: dict[str, Any], i: int) -> dict[str, Any]:
    """A newer revision that moves the document to other values and visibility."""
    sensitivities = ("public", "internal", "confidential", "restricted")
    return doc | {
        "revision": doc["revision"] + 1,
        "severity": ("S0", "S1", "S2", "S3", "S4")[i % 5],
        "sensitivity": sensitivities[(sensitivities.index(doc["sensitivity"]) + 1) % 4],
        "team": None if doc.get("team") else "nlp",
        "tags": [*doc.get("tags", [])[1:], f"moved-{i % 3}"],
        "model_version": f"{doc.get('model_version') or '0'}.{i % 2}",
        "occurred_at": f"2025-07-0{1 + i % 9}T12:00:00Z",
        # Every other one to another model (spelt otherwise: counted under its folded copy).
        "model": doc.get("model") if i % 2 else ("Moved-Model", "moved-model")[i % 4 // 2],
    }


async def test_counts_follow_writes_deletes_and_a_rebuild(tmp_path):
    backend = backend_of("embedded", tmp_path)
    await backend.ensure_ready()
    try:
        docs = corpus_documents() + planted_documents(NOW)
        await backend.index(docs)
        match_all = parse("", NOW)
        await _assert_counted_like_the_oracle(backend, docs, match_all)
        # Newer revisions of a third (other values, buckets, tags, days); a stale revision
        # of another third, which the index ignores; a few deletes.
        changed = [_changed(d, i) if i % 3 == 0 else d for i, d in enumerate(docs)]
        stale = [dict(d, revision=d["revision"] - 1, severity="S4") for d in docs[1::3]]
        await backend.index([c for i, c in enumerate(changed) if i % 3 == 0] + stale)
        gone = [d["id"] for d in changed[2::7]]
        await backend.delete(gone)
        kept = [d for d in changed if d["id"] not in gone]
        await _assert_counted_like_the_oracle(backend, kept, match_all)
        await _assert_cell_facets_like_the_oracle(backend, kept, match_all)

        async def batches():
            yield kept[: len(kept) // 2]
            yield kept[len(kept) // 2 :]

        await backend.rebuild(batches())
        await _assert_counted_like_the_oracle(backend, kept, match_all)
    finally:
        await backend.drop()


async def test_an_exclusion_is_subtracted_from_the_counts(tmp_path, monkeypatch):
    """The blind-read guard's query: the documents the reader is blinded on leave every
    count, the total and the page, and only those."""
    backend = backend_of("embedded", tmp_path)
    await backend.ensure_ready()
    try:
        docs = corpus_documents() + planted_documents(NOW)
        docs = [d | {"blinded": ["alice"]} if i % 4 == 0 else d for i, d in enumerate(docs)]
        await backend.index(docs)
        hide = Not(Term("blinded", ("alice",)))
        blinded = frozenset(d["id"] for d in docs if d.get("blinded"))
        await _assert_counted_like_the_oracle(backend, docs, hide, blinded)
        await _assert_cell_facets_like_the_oracle(backend, docs, hide, blinded)
        # An exclusion of more than counts.EXCLUDED_MAX documents is counted the ordinary
        # way, and still exactly.
        monkeypatch.setattr(counts, "EXCLUDED_MAX", 2)
        prepared = oracle.prepare(docs)
        req = SearchRequest(EVERYONE, parse("-severity:S4", NOW), facets=FACETS)
        answered = await backend.pool.read(lambda c: counts.answer(c, backend.compiler, req))
        assert answered is None
        res = await backend.search(req)
        for field in FACETS:
            expected = oracle.facet(prepared, EVERYONE, req.query, field)
            assert [(b.value, b.count) for b in res.facets[field]] == expected, field
    finally:
        await backend.drop()


async def test_a_list_selection_alone_does_not_narrow_its_own_facet(tmp_path):
    """Its WHERE reads nothing of doc but pk (the list is a set of rowids), which is no
    reason to count the facets under it: the selected list's facet ignores its selection."""
    backend = backend_of("embedded", tmp_path)
    await backend.ensure_ready()
    try:
        docs = corpus_documents() + planted_documents(NOW)
        await backend.index(docs)
        prepared = oracle.prepare(docs)
        selections = {"tags": ("llm",)}
        req = SearchRequest(INTERNAL, MatchAll(), selections=selections, facets=("tags",))
        res = await backend.search(req)
        expected = oracle.facet(prepared, INTERNAL, MatchAll(), "tags", selections)
        assert [(b.value, b.count) for b in res.facets["tags"]] == expected
        assert len(expected) > 1
    finally:
        await backend.drop()
