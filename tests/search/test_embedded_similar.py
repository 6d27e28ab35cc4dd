"""Similar cases on the embedded index pick their key terms as MoreLikeThis does with
max_doc_freq, within a match budget (backends/embedded/similar.py): a word most documents
have is never one, and the words chosen together match a bounded share of the index, so the
bm25 ranking scores that share and not the whole index."""

from __future__ import annotations

from services.search.backends.embedded import similar as similar_mod
from services.search.request import Visibility
from tests.search.conftest import backend_of

EVERYONE = Visibility(("public", "internal", "confidential", "restricted"), None)


def _doc(i: int, title: str) -> dict:
    return {
        "id": f"s{i:03d}",
        "revision": 1,
        "title": title,
        "model": "m",
        "model_version": "1",
        "data_source": "s",
        "status": "new",
        "sensitivity": "internal",
        "occurred_at": "2026-01-01T00:00:00Z",
    }


async def test_key_terms_skip_common_words_and_stay_within_the_budget(tmp_path, monkeypatch):
    # 100 documents: "pipeline" in 90 of them, "tokenizer" in 20, "overflow" in 5 (s000 to
    # s004), "quasar" in 2 (s000, s001).
    docs = []
    for i in range(100):
        words = ["pipeline"] if i < 90 else ["report"]
        words += ["tokenizer"] if i < 20 else []
        words += ["overflow"] if i < 5 else []
        words += ["quasar"] if i < 2 else []
        docs.append(_doc(i, " ".join(words)))
    backend = backend_of("embedded", tmp_path)
    await backend.ensure_ready()
    try:
        await backend.index(docs)
        monkeypatch.setattr(similar_mod, "MIN_BUDGET", 10)
        source = "pipeline tokenizer overflow quasar pipeline"
        terms = await backend.pool.read(lambda conn: similar_mod.key_terms(conn, source))
        # pipeline (90 of 100) is too common; tokenizer (20) does not fit the budget of
        # 10 documents beside quasar (2) and overflow (5), the most telling ones.
        assert terms == ["quasar", "overflow"]
        hits = await backend.similar(EVERYONE, "s000", 10)
        # Only documents sharing a telling word, the closest (quasar) first.
        assert [h.id for h in hits] == ["s001", "s002", "s003", "s004"]
        # Without the limits (a small index), every shared word counts, as before.
        monkeypatch.setattr(similar_mod, "MIN_BUDGET", 2000)
        terms = await backend.pool.read(lambda conn: similar_mod.key_terms(conn, source))
        assert set(terms) == {"quasar", "overflow", "tokenizer", "pipeline"}
    finally:
        await backend.drop()
