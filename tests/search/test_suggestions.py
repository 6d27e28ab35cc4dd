"""A keyword filter that finds nothing is answered with the closest values that exist, among
the cases the caller may see, on both backends (real corpus values: AIID/AVID model names)."""

from __future__ import annotations

import pytest

from services.search.backends.base import SearchBackend
from services.search.service import SearchService
from shared.security import Principal, Sensitivity

INTERNAL = Principal("u", "c", clearance=Sensitivity.INTERNAL)
EVERYONE = Principal("u", "c", clearance=Sensitivity.RESTRICTED)


@pytest.fixture
def service(loaded: SearchBackend) -> SearchService:
    # Searching needs the backend only (the catalog feeds the indexer, not searches).
    return SearchService(None, None, loaded)  # type: ignore[arg-type]


def closest(answer, field: str) -> list[str]:
    return next((s.closest for s in answer.suggestions if s.field == field), [])


async def test_a_misspelt_value_gets_the_closest_existing_ones(service):
    res = await service.search(INTERNAL, "tags:privcy")
    assert res.total == 0
    assert res.suggestions[0].value == "privcy" and closest(res, "tags")[0] == "Privacy"
    # A part of a real model name, and a filter selection, suggest the stored spelling.
    res = await service.search(INTERNAL, "model:kimi-k2")
    assert "Kimi-K2-Instruct-0905" in closest(res, "model")
    res = await service.search(EVERYONE, "env.region:eu-west-2 failure_mode:safety.halucination")
    assert "eu-west-1" in closest(res, "env.region")
    assert closest(res, "failure_mode")[0] == "safety.hallucination"
    assert {s.field for s in res.suggestions} == {"env.region", "failure_mode"}


async def test_no_suggestion_when_the_value_exists_or_hits_were_found(service):
    # Each value exists; only their combination finds nothing.
    res = await service.search(INTERNAL, "tags:Privacy team:nlp")
    assert res.total == 0 and res.suggestions == []
    res = await service.search(INTERNAL, "tags:privacy")
    assert res.total == 1 and res.suggestions == []
    # A value excluded is not a value looked for.
    res = await service.search(INTERNAL, "-tags:privcy zorblax quuxinator")
    assert res.total == 0 and res.suggestions == []


async def test_suggestions_only_offer_values_the_caller_may_see(service):
    # secret-tag and secret-region belong to a restricted case of the vision team.
    for query in ("tags:secret-tg", "env.region:secret-regio"):
        hidden = await service.search(INTERNAL, query)
        assert hidden.total == 0 and hidden.suggestions == [], query
        seen = await service.search(EVERYONE, query)
        assert seen.suggestions and seen.suggestions[0].closest[0].startswith("secret-"), query
