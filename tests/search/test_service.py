"""SearchService end to end on both stacks: SQLite + embedded index, Postgres + OpenSearch.

Cases are written to the catalog with their outbox row; the indexer drains the outbox; the
service searches, verifies and reindexes. Each module gets its own catalog database and
index, so no in-process indexer of another test's app competes for the outbox.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from services.catalog.models import Outbox
from services.search.fields import SCHEMA, DocumentSchema
from services.search.request import SearchFilter
from services.search.service import SearchService, make_backend
from shared.db import Database
from shared.errors import BadUserInput
from shared.migrate import upgrade_async
from shared.security import SYSTEM, Principal, Sensitivity
from tests.conftest import make_settings
from tests.search.builders import make_case, outbox_size, remove_case, update_case

VIEWER = Principal(
    "viewer",
    "c",
    scopes=frozenset({"cases:read"}),
    team="payments-ml",
    clearance=Sensitivity.INTERNAL,
)


@pytest.fixture(scope="module")
async def service(
    backend: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[SearchService]:
    settings = await make_settings(
        backend, tmp_path_factory.mktemp("search-service"), indexer_batch=7, indexer_poll_s=0.05
    )
    await upgrade_async(settings.catalog_url)
    db = Database(settings.catalog_url)
    svc = await SearchService.start(settings, db)
    yield svc
    await svc.backend.drop()
    await db.dispose()


async def settle(service: SearchService) -> int:
    n = await service.drain_outbox()
    await service.backend.refresh()
    return n


async def ids(service: SearchService, query: str, principal: Principal = SYSTEM) -> set[str]:
    return {h.id for h in (await service.search(principal, query, first=100)).hits}


async def test_outbox_is_drained_in_batches_and_acknowledged(service):
    async with service.db.transaction() as s:
        made = [
            await make_case(
                s,
                title=f"Blorptastic drift case {i}",
                severity="S2",
                tags=["drain"],
                environment={"region": "eu-west-1"},
            )
            for i in range(16)
        ]
    assert await settle(service) >= 16  # batches of 7: 7 + 7 + 2 (+ other tests' rows)
    assert await ids(service, "blorptastic") == set(made)
    async with service.db.transaction() as s:
        assert await outbox_size(s) == 0
    assert await service.drain_outbox() == 0


async def test_updates_replace_and_deletes_remove(service):
    async with service.db.transaction() as s:
        case_id = await make_case(s, title="Frobnicated labels in the ranking model")
    await settle(service)
    async with service.db.transaction() as s:
        await update_case(s, case_id, title="Defrobnicated ranking labels", severity="S0")
    await settle(service)
    assert await ids(service, "frobnicated") == set()
    assert await ids(service, "defrobnicated severity:S0") == {case_id}
    async with service.db.transaction() as s:
        await remove_case(s, case_id)
    await settle(service)
    assert await ids(service, "defrobnicated") == set()


async def test_replayed_and_stale_outbox_rows_are_harmless(service):
    async with service.db.transaction() as s:
        case_id = await make_case(s, title="Quibbling revision one")
        await update_case(s, case_id, title="Quibbling revision two")
    await settle(service)
    # At-least-once delivery: the same rows again, and an old revision, change nothing.
    async with service.db.transaction() as s:
        s.add_all(
            [
                Outbox(case_id=case_id, revision=1, created_at=_now()),
                Outbox(case_id=case_id, revision=2, created_at=_now()),
            ]
        )
    await settle(service)
    assert (await service.backend.revisions())[case_id] == 2
    assert await ids(service, '"quibbling revision two"') == {case_id}


async def test_visibility_through_the_service(service):
    async with service.db.transaction() as s:
        open_id = await make_case(s, title="Snozzcumber leak in payments", team="payments-ml")
        await make_case(
            s, title="Snozzcumber leak, restricted", team="payments-ml", sensitivity="restricted"
        )
        await make_case(s, title="Snozzcumber leak in vision", team="vision")
    await settle(service)
    res = await service.search(VIEWER, "snozzcumber", facets=["team", "sensitivity"])
    assert {h.id for h in res.hits} == {open_id} and res.total == 1
    assert [(b.value, b.count) for b in res.facets["team"]] == [("payments-ml", 1)]
    assert [(b.value, b.count) for b in res.facets["sensitivity"]] == [("internal", 1)]
    assert len(await ids(service, "snozzcumber")) == 3  # SYSTEM sees all


async def test_filter_cursor_and_validation(service):
    async with service.db.transaction() as s:
        for i in range(9):
            await make_case(
                s, title=f"Wobblefish case {i}", severity=f"S{i % 3}", tags=["wobble"], status="new"
            )
    await settle(service)
    flt = SearchFilter(severity=["S0", "S1"])
    seen: list[str] = []
    after = None
    while True:
        res = await service.search(
            SYSTEM,
            "wobblefish",
            filter=flt,
            facets=["severity"],
            first=2,
            after=after,
            sort="-occurred_at",
        )
        seen += [h.id for h in res.hits]
        assert res.total == 6
        assert {b.value: b.count for b in res.facets["severity"]} == {"S0": 3, "S1": 3, "S2": 3}
        after = res.next_cursor
        if after is None:
            break
    assert len(seen) == len(set(seen)) == 6
    bad = [
        dict(query="severity:S9"),
        dict(query="nosuchfield:x"),
        dict(query="(a"),
        dict(query="x", facets=["title"]),
        dict(query="x", sort="newest"),
        dict(query="x", first=0),
        dict(query="x", first=501),
        dict(query="x", after="garbage!"),
        dict(query="x", histogram="fortnight"),
        dict(query="x", heatmap=["severity"]),
        dict(query="x", filter=SearchFilter(severity=["S7"])),
    ]
    for kw in bad:
        query = kw.pop("query")
        with pytest.raises(BadUserInput) as err:
            await service.search(SYSTEM, query, **kw)
        assert err.value.errors, kw
    # A cursor made for one sort is refused for another.
    res = await service.search(SYSTEM, "wobblefish", first=2, sort="occurred_at")
    with pytest.raises(BadUserInput, match="sort"):
        await service.search(SYSTEM, "wobblefish", first=2, after=res.next_cursor, sort="severity")


async def test_verify_reports_and_repairs_differences(service):
    await settle(service)
    assert (await service.verify()).in_sync
    async with service.db.transaction() as s:
        a = await make_case(s, title="Verify me once", outbox=False)  # never indexed
        b = await make_case(s, title="Verify me twice")
    await settle(service)
    async with service.db.transaction() as s:
        await update_case(s, b, title="Verify me thrice")
        await s.execute(Outbox.__table__.delete())  # the update's outbox row is lost
    await service.backend.index(
        [{"id": "ghost", "revision": 1, "title": "not in catalog", "sensitivity": "internal"}]
    )
    await service.backend.refresh()
    report = await service.verify()
    assert not report.in_sync
    assert (report.missing, report.stale, report.extra) == ([a], [b], ["ghost"])
    assert report.catalog_count == report.index_count  # equal counts, different checksums
    repaired = await service.verify(repair=True)
    assert repaired.repaired == 3
    await service.backend.refresh()
    after = await service.verify()
    assert after.in_sync and after.catalog_checksum == after.index_checksum
    assert await ids(service, "thrice") == {b}


async def test_reindex_builds_a_new_index_and_swaps(service):
    await settle(service)
    before = await service.backend.revisions()
    concrete_before = await _concrete_indices(service)
    progress: list[tuple[int, int | None]] = []
    report = await service.reindex(lambda done, expected: progress.append((done, expected)))
    assert report.in_sync
    assert progress and progress[-1] == (len(before), len(before))
    assert await service.backend.revisions() == before
    if concrete_before is not None:  # OpenSearch: the alias now points at a new index
        after = await _concrete_indices(service)
        assert after and after.isdisjoint(concrete_before)
    assert await ids(service, "blorptastic")


async def test_ping(service):
    assert await service.ping()


async def _concrete_indices(service: SearchService) -> set[str] | None:
    client = getattr(service.backend, "client", None)
    if client is None:
        return None
    return set(await client.indices.get_alias(name=service.backend.alias))


def _now():
    from datetime import UTC, datetime

    return datetime.now(UTC)


async def test_an_index_built_for_another_field_table_is_rebuilt_by_the_indexer(
    backend: str, tmp_path
):
    """After an upgrade that adds fields (here: the captured payload), the index made before
    it is outdated; the indexer rebuilds it from the catalog before draining the outbox."""
    settings = await make_settings(backend, tmp_path)
    await upgrade_async(settings.catalog_url)
    db = Database(settings.catalog_url)
    async with db.transaction() as session:
        case_id = await make_case(
            session,
            title="Quokkafrost answers in the wrong language",
            input={"messages": [{"role": "user", "content": "translate the quokkafrost memo"}]},
        )
    before = DocumentSchema(
        tuple(f for f in SCHEMA.fields if f.name not in ("input", "prediction", "expected"))
    )
    old = SearchService(settings, db, make_backend(settings, before))
    assert await old.drain_outbox() == 1
    await old.backend.refresh()
    assert await ids(old, "quokkafrost") == {case_id}
    await old.backend.close()

    # Until it is rebuilt, whichever process opens the index finds it outdated.
    for _ in range(2):
        service = await SearchService.start(settings, db)
        assert await service.backend.outdated()
        assert await ids(service, "quokkafrost") <= {case_id}  # answers, from what it has
        await service.close()
    service = await SearchService.start(settings, db)
    try:
        assert await service.upgrade_index()
        assert not await service.backend.outdated()
        await service.backend.refresh()
        assert await ids(service, "input:quokkafrost") == {case_id}
        assert await ids(service, "input:translat*") == {case_id}
        assert not await service.upgrade_index()  # once only
        assert (await service.verify()).in_sync
    finally:
        await service.backend.drop()
        await db.dispose()
