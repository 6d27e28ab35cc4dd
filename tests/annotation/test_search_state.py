"""Item 8 and the blind-read rule in search, on both stacks: annotation state (annotated by k,
status, agreement, the fields in disagreement) is searchable and facetable once the indexer
has run after each annotation write; a blinded annotator's searches that touch those fields
(or the adjudicated curated ones) leave out the cases they are blinded on. Real AIID
incidents."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import pytest

from services.annotation import service
from services.auth.models import AuthUser
from services.catalog import service as catalog
from services.search.request import SearchFilter
from services.search.service import SearchService
from shared.db import Database
from shared.migrate import upgrade_async
from shared.security import SYSTEM, Principal, Sensitivity
from tests.catalog.builders import ingest, unique
from tests.conftest import make_settings
from tests.corpus import aiid_cases

A = {"failure_mode": "safety.harmful_content", "severity": "S1"}
B = {"failure_mode": "safety.hallucination", "severity": "S3"}


def person(name: str) -> Principal:
    return Principal(
        subject=f"{name}-{secrets.token_hex(3)}",
        client_id=name,
        scopes=frozenset({"cases:read", "annotations:write", "reviews:write"}),
        clearance=Sensitivity.RESTRICTED,
    )


async def enrolled(db: Database, *people: Principal) -> None:
    """Accounts for `people` (assignments name accounts or clients that exist)."""
    async with db.transaction() as s:
        for p in people:
            s.add(
                AuthUser(id=p.subject, username=p.subject, password_hash="!", roles=["annotator"])
            )


@pytest.fixture(scope="module")
async def search(
    backend: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[SearchService]:
    settings = await make_settings(backend, tmp_path_factory.mktemp("annotation-search"))
    await upgrade_async(settings.catalog_url)
    db = Database(settings.catalog_url)
    svc = await SearchService.start(settings, db)
    yield svc
    await svc.backend.drop()
    await db.dispose()


async def settle(svc: SearchService) -> None:
    await svc.drain_outbox()
    await svc.backend.refresh()


async def found(svc: SearchService, who: Principal, query: str) -> set[str]:
    return {h.id for h in (await svc.search(who, query, first=100)).hits}


async def facet(svc: SearchService, who: Principal, query: str, name: str) -> dict[str, int]:
    result = await svc.search(who, query, facets=[name], first=1)
    return {b.value: b.count for b in result.facets[name]}


async def test_annotation_state_is_searchable_and_blinded_annotators_learn_nothing(search):
    model = f"annotated-{secrets.token_hex(3)}"
    lead, alice, bob, carol = (person(n) for n in ("lead", "alice", "bob", "carol"))
    await enrolled(search.db, alice, bob, carol)
    async with search.db.transaction() as s:
        agreed, split, pending, untouched = await ingest(s, unique(aiid_cases(4, model=model)))
    async with search.db.transaction() as s:
        await service.assign_annotators(s, [agreed, split], [alice.subject, bob.subject], 2, lead)
        await service.assign_annotators(
            s, [pending], [alice.subject, bob.subject, carol.subject], 3, lead
        )
        for who, case_id, values in (
            (alice, agreed, A),
            (bob, agreed, A),
            (alice, split, A),
            (bob, split, B),
            (alice, pending, A),
            (bob, pending, B),
        ):
            await service.submit_annotation(s, case_id, "failcat", values, who)
    await settle(search)
    scope = f'model:"{model}"'

    assert await found(search, SYSTEM, f"{scope} annotated_by:>=2") == {agreed, split, pending}
    assert await found(search, SYSTEM, f"{scope} annotated_by:0") == {untouched}
    assert await found(search, SYSTEM, f"{scope} agreement:<0.5") == {split, pending}
    assert await found(search, SYSTEM, f"{scope} agreement:1") == {agreed}
    assert await found(search, SYSTEM, f"{scope} disagreement:severity") == {split, pending}
    assert await facet(search, SYSTEM, scope, "annotation_status") == {
        "submitted": 3,
        "none": 1,
    }
    assert await facet(search, SYSTEM, scope, "disagreement") == {
        "failure_mode": 2,
        "severity": 2,
    }

    # carol is assigned to `pending` and has not submitted: its disagreement, agreement and
    # facets are not hers to learn; the rest of her search still finds it.
    assert await found(search, carol, f"{scope} disagreement:severity") == {split}
    assert await found(search, carol, f"{scope} agreement:<0.5") == {split}
    assert await facet(search, carol, scope, "disagreement") == {"failure_mode": 1, "severity": 1}
    assert pending in await found(search, carol, scope)
    assert pending in await found(search, carol, f"{scope} annotation_status:submitted")
    # The same selection through the filter (multi-select facets) is guarded too.
    filtered = await search.search(
        carol,
        scope,
        filter=SearchFilter(disagreement=["severity"]),
        first=100,
    )
    assert {h.id for h in filtered.hits} == {split}

    # Adjudication: `split` becomes adjudicated and its severity the decided one.
    async with search.db.transaction() as s:
        case = (await catalog.get_cases(s, [split], SYSTEM))[0]
        await service.adjudicate(s, split, "failcat", A, case.revision, lead, "guideline 3")
    await settle(search)
    assert await found(search, SYSTEM, f"{scope} annotation_status:adjudicated") == {split}
    assert split in await found(search, SYSTEM, f"{scope} severity:S1")

    # Once carol submits, nothing of `pending` is hidden from her any more.
    async with search.db.transaction() as s:
        await service.submit_annotation(s, pending, "failcat", A, carol)
    await settle(search)
    assert await found(search, carol, f"{scope} disagreement:severity") == {split, pending}
    assert await found(search, SYSTEM, f"{scope} annotated_by:3") == {pending}


async def test_a_blinded_annotator_cannot_search_the_adjudicated_curated_fields(search):
    model = f"adjudicated-{secrets.token_hex(3)}"
    lead, alice, bob = (person(n) for n in ("lead", "alice", "bob"))
    await enrolled(search.db, alice, bob)
    async with search.db.transaction() as s:
        [case_id] = await ingest(s, unique(aiid_cases(1, model=model)))
    async with search.db.transaction() as s:
        await service.assign_annotators(s, [case_id], [alice.subject, bob.subject], 2, lead)
        await service.submit_annotation(s, case_id, "failcat", A, alice)
        case = (await catalog.get_cases(s, [case_id], SYSTEM))[0]
        await service.adjudicate(s, case_id, "failcat", A, case.revision, lead)
    await settle(search)
    scope = f'model:"{model}"'
    assert await found(search, SYSTEM, f"{scope} severity:S1") == {case_id}
    # bob has not submitted: the decided severity and failure mode do not find the case
    # for him, nor do their facets or the severity sort count it; alice has submitted.
    assert await found(search, bob, f"{scope} severity:S1") == set()
    assert await found(search, bob, f"{scope} mode:safety") == set()
    assert await found(search, bob, f"{scope} severity:<=S1") == set()
    assert await facet(search, bob, scope, "severity") == {}
    assert (await search.search(bob, scope, sort="severity", first=10)).hits == []
    assert await found(search, bob, scope) == {case_id}
    assert await found(search, alice, f"{scope} severity:S1") == {case_id}
