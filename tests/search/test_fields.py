"""The field table is the one place a searchable field is declared: a field added there (here
through the extension hook, as a future field would be one line in FIELDS) is queryable,
facetable and selectable on both backends, and an index built before it is rebuilt."""

from __future__ import annotations

import secrets
from typing import Any

import pytest

from services.search.backends.opensearch.mapping import mappings
from services.search.fields import SCHEMA, Field, Kind
from services.search.query import Term, parse
from services.search.request import SearchRequest, filter_model
from shared.security import Principal, Sensitivity
from shared.visibility import Visibility
from tests.search.conftest import NOW, backend_of

# The shape the coming fields take: a keyword list (suite membership, annotation labels)
# and a keyword scalar with a closed value set (redaction state).
SUITES = Field("suites", Kind.KEYWORD, ("suite",), many=True, facet=True)
REDACTION = Field("redaction", Kind.KEYWORD, values=("none", "partial", "full"), facet=True)
EXTENDED = SCHEMA.extend(SUITES, REDACTION)
VIEWER = Visibility.of(Principal("u", "c", clearance=Sensitivity.INTERNAL))


def with_new_fields(corpus: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Real corpus cases; every 10th is in the nightly suite, every 4th partly redacted."""
    docs = []
    for i, doc in enumerate(corpus[:120]):
        suites = ["nightly", "release-gate"] if i % 10 == 0 else (["weekly"] if i % 3 else [])
        docs.append(doc | {"suites": suites, "redaction": "partial" if i % 4 == 0 else "none"})
    return docs


def expected(docs: list[dict[str, Any]], test) -> set[str]:
    return {d["id"] for d in docs if VIEWER.allows(d.get("team"), d.get("sensitivity")) and test(d)}


def test_everything_is_derived_from_the_table():
    # The query language, the filter type, the facets and the mapping all know the field.
    assert parse("suite:nightly", schema=EXTENDED) == Term("suites", ("nightly",))
    flt = filter_model(EXTENDED)(suites=["nightly"], redaction=["full"])
    assert flt.selections() == {"suites": ("nightly",), "redaction": ("full",)}
    assert {"suites", "redaction"} <= set(EXTENDED.facet_names())
    assert mappings(EXTENDED)["properties"]["suites"]["type"] == "keyword"
    assert "suites" not in mappings(SCHEMA)["properties"]
    assert mappings(EXTENDED)["_meta"] != mappings(SCHEMA)["_meta"]


async def test_a_field_added_to_the_table_is_searchable_on_both_backends(
    search_kind, corpus, tmp_path
):
    docs = with_new_fields(corpus)
    # An index built for today's table, then opened with the extended one: it is outdated
    # until it is rebuilt from the catalog (what the indexer does at start).
    name = f"failcat-t-fields-{secrets.token_hex(3)}"
    old = backend_of(search_kind, tmp_path, SCHEMA, name)
    await old.ensure_ready()
    await old.index(docs)
    await old.refresh()
    await old.close()
    new = backend_of(search_kind, tmp_path, EXTENDED, name)
    try:
        await new.ensure_ready()
        assert await new.outdated()

        async def batches():
            yield docs

        assert await new.rebuild(batches()) == len(docs)
        assert not await new.outdated()

        nightly = expected(docs, lambda d: "nightly" in d["suites"])
        assert nightly
        req = SearchRequest(
            visibility=VIEWER,
            query=parse("suite:nightly", NOW, EXTENDED),
            facets=("suites", "redaction"),
            first=500,
        )
        res = await new.search(req)
        assert {h.id for h in res.hits} == nightly
        counts = {b.value: b.count for b in res.facets["suites"]}
        assert counts == {"nightly": len(nightly), "release-gate": len(nightly)}
        # The scalar: a query term, a filter selection and a facet.
        partial = expected(docs, lambda d: d["redaction"] == "partial")
        res = await new.search(
            SearchRequest(
                visibility=VIEWER,
                query=parse("redaction:partial", NOW, EXTENDED),
                first=500,
            )
        )
        assert {h.id for h in res.hits} == partial
        selected = filter_model(EXTENDED)(redaction=["partial"], suites=["weekly"]).selections()
        res = await new.search(
            SearchRequest(
                visibility=VIEWER,
                query=parse("", NOW, EXTENDED),
                selections=selected,
                facets=("redaction",),
                first=500,
            )
        )
        both = expected(docs, lambda d: d["redaction"] == "partial" and "weekly" in d["suites"])
        assert {h.id for h in res.hits} == both
        # Multi-select: the redaction facet still counts the other value.
        assert {b.value for b in res.facets["redaction"]} == {"none", "partial"}
    finally:
        await new.drop()


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("redaction:secret", "expected one of none, partial, full"),
        ("suites:<x", "does not support '<'"),
    ],
)
def test_the_new_field_gets_the_query_errors_of_its_kind(query, message):
    from shared.errors import BadUserInput

    with pytest.raises(BadUserInput) as err:
        parse(query, schema=EXTENDED)
    assert message in str(err.value)
