"""Bulk ingestion through the catalog service, on both backends."""

from __future__ import annotations

import secrets

from sqlalchemy import func, select

from services.catalog import service
from services.catalog.models import CaseRevision, FailureCase, FailureGroup, Outbox
from shared.security import SYSTEM
from tests.catalog.builders import unique
from tests.corpus import aiid_cases


async def count(session, model, *where) -> int:
    return (
        await session.execute(select(func.count()).select_from(model).where(*where))
    ).scalar_one()


async def test_mixed_batch_stores_exactly_the_valid_new_items(session):
    good = unique(aiid_cases(3))
    bad_severity = dict(good[0], external_id="x-" + secrets.token_hex(3), severity="S9")
    missing_model = {"data_source": "aiid", "title": "no model"}
    huge_input = dict(
        good[1], external_id="big-" + secrets.token_hex(3), input={"blob": "x" * 300_000}
    )
    unknown_mode = dict(
        good[2],
        external_id="m-" + secrets.token_hex(3),
        failure_mode="label_noise.mislabelled_target",
    )
    items = [
        good[0],
        bad_severity,
        good[1],
        missing_model,
        good[0],
        huge_input,
        good[2],
        unknown_mode,
        "not an object",
    ]

    results = await service.ingest_cases(session, items, SYSTEM)

    assert [r.status for r in results] == [
        "created",
        "invalid",
        "created",
        "invalid",
        "duplicate",
        "invalid",
        "created",
        "invalid",
        "invalid",
    ]
    assert [r.index for r in results] == list(range(len(items)))
    assert results[4].id == results[0].id
    assert results[1].errors[0]["path"] == "severity"
    assert {e["path"] for e in results[3].errors} == {"model"}
    assert results[5].errors[0]["path"] == "input" and "262144" in results[5].errors[0]["message"]
    assert "label_noise.mislabeled_target" in results[7].errors[0]["message"]
    created = [r.id for r in results if r.status == "created"]
    assert await count(session, FailureCase, FailureCase.id.in_(created)) == 3
    assert await count(session, CaseRevision, CaseRevision.case_id.in_(created)) == 3
    assert await count(session, Outbox, Outbox.case_id.in_(created)) == 3


async def test_retried_batch_creates_nothing_twice(session):
    batch = unique(aiid_cases(20))
    first = await service.ingest_cases(session, batch, SYSTEM)
    again = await service.ingest_cases(session, batch, SYSTEM)
    assert {r.status for r in first} == {"created"}
    assert [r.status for r in again] == ["duplicate"] * 20
    assert [r.id for r in again] == [r.id for r in first]


async def test_same_content_without_external_id_is_a_duplicate(session):
    case = unique(aiid_cases(1))[0]
    del case["external_id"]
    first, second = await service.ingest_cases(session, [case, case], SYSTEM)
    assert (first.status, second.status) == ("created", "duplicate")
    assert second.id == first.id


async def test_provenance_and_content_hash(session):
    case = unique(aiid_cases(1))[0]
    case["provenance"] = {
        "source": case["provenance"]["source"],
        "pipeline_version": "2.1",
        "captured_by": "svc-monitor",
        "batch_id": "b-7",
    }
    [r] = await service.ingest_cases(session, [case], SYSTEM)
    row = await service.get_case(session, r.id, SYSTEM)
    assert row.provenance == case["provenance"]
    assert row.received_at is not None and row.occurred_at.isoformat().startswith(
        case["occurred_at"][:10]
    )
    from shared.jsonutil import canonical_json, sha256_hex

    captured = (
        "external_id",
        "model",
        "data_source",
        "occurred_at",
        "captured_at",
        "environment",
        "input",
        "prediction",
        "expected",
        "confidence",
        "latency_ms",
        "signals",
        "provenance",
    )
    facts = {k: v for k, v in case.items() if k in captured}
    assert row.content_hash == sha256_hex(canonical_json(facts))


async def test_cases_with_one_fingerprint_form_one_group(session):
    batch = unique(aiid_cases(12))
    fp = "fp-" + secrets.token_hex(4)
    for c in batch[:4]:
        c["fingerprint"] = fp
    results = await service.ingest_cases(session, batch, SYSTEM)
    rows = await service.get_cases(session, [r.id for r in results[:4]], SYSTEM)
    assert len({r.group_id for r in rows}) == 1
    group = (
        await session.execute(select(FailureGroup).where(FailureGroup.fingerprint == fp))
    ).scalar_one()
    assert group.case_count == 4
    occurred = sorted(r.occurred_at for r in rows)
    assert (group.first_seen, group.last_seen) == (occurred[0], occurred[-1])


async def test_a_row_stored_concurrently_is_skipped_not_failed(session):
    """The race between the duplicate check and the insert: the store skips what another
    writer stored first (on Postgres through the savepoint fallback of the COPY path)."""
    from services.catalog.repository import CatalogRepository

    [first_id] = [r.id for r in await service.ingest_cases(session, unique(aiid_cases(1)), SYSTEM)]
    repo = CatalogRepository(session)
    stored = await service.get_case(session, first_id, SYSTEM)
    row = stored.model_dump()
    clash = dict(row, id="00000000-0000-7000-8000-" + secrets.token_hex(6))  # same content hash
    fresh = dict(
        row,
        id="00000000-0000-7000-8000-" + secrets.token_hex(6),
        content_hash=secrets.token_hex(32),
        external_id=None,
    )
    assert await repo.insert_cases([clash, fresh]) == {fresh["id"]}
    assert await count(session, FailureCase, FailureCase.id == fresh["id"]) == 1


async def test_concurrent_batches_sharing_groups_neither_deadlock_nor_lose_counts(db):
    import asyncio
    import random

    fps = [f"shared-{secrets.token_hex(4)}" for _ in range(40)]
    batches = []
    for seed in range(6):
        cases = unique(aiid_cases(150))
        rng = random.Random(seed)
        for c in cases:
            c["fingerprint"] = rng.choice(fps)
        rng.shuffle(cases)
        batches.append(cases)

    async def one(batch):
        async with db.transaction() as s:
            return await service.ingest_cases(s, batch, SYSTEM)

    results = await asyncio.gather(*(one(b) for b in batches))
    assert all(r.status == "created" for rs in results for r in rs)
    async with db.transaction() as s:
        total = (
            await s.execute(
                select(func.sum(FailureGroup.case_count)).where(FailureGroup.fingerprint.in_(fps))
            )
        ).scalar_one()
    assert total == 6 * 150


async def test_chunk_boundaries_change_no_answer(session, monkeypatch):
    """The pipeline stores a batch chunk by chunk: duplicates and reused keys of an item in
    an earlier chunk, invalid items, groups and counts answer exactly as in one piece."""
    from services.catalog import ingest as pipeline

    monkeypatch.setattr(pipeline, "CHUNK", 3)
    cases = unique(aiid_cases(7))
    fp = f"chunks-{secrets.token_hex(4)}"
    for c in cases:
        c["fingerprint"] = fp
    same_again = dict(cases[0])  # a retry of item 0, three chunks later
    reused_key = dict(cases[1], latency_ms=12345.0)  # other content under the same key
    no_key = dict(cases[2], external_id=None)
    invalid = dict(cases[3], severity="S9")
    batch = [*cases[:5], invalid, same_again, reused_key, *cases[5:], no_key]
    results = await service.ingest_cases(session, batch, SYSTEM)

    assert [r.index for r in results] == list(range(len(batch)))
    assert [r.status for r in results] == [
        *["created"] * 5,
        "invalid",
        "duplicate",
        "conflict",
        *["created"] * 2,
        "created",  # no external_id: its content differs from item 2's (the key is a fact)
    ]
    assert results[6].id == results[0].id and results[7].id == results[1].id
    assert results[5].errors[0]["path"] == "severity"
    created = [r.id for r in results if r.status == "created"]
    assert len(set(created)) == 8
    assert await count(session, FailureCase, FailureCase.id.in_(created)) == 8
    assert await count(session, CaseRevision, CaseRevision.case_id.in_(created)) == 8
    assert await count(session, Outbox, Outbox.case_id.in_(created)) == 8
    group = (
        await session.execute(select(FailureGroup).where(FailureGroup.fingerprint == fp))
    ).scalar_one()
    assert group.case_count == 8


async def test_concurrent_batches_creating_the_same_models_in_several_chunks(db, monkeypatch):
    """Each chunk creates the models, versions and sources it needs first: two batches that
    meet the same new names in different chunks and orders must queue, not deadlock."""
    import asyncio
    import random

    from services.catalog import ingest as pipeline

    monkeypatch.setattr(pipeline, "CHUNK", 20)
    salt = secrets.token_hex(3)
    names = [(f"model-{salt}-{i}", f"{i % 3}.0", f"source-{salt}-{i % 7}") for i in range(24)]
    batches = []
    for seed in range(4):
        cases = unique(aiid_cases(120))
        rng = random.Random(seed)
        order = names[:]
        rng.shuffle(order)
        for n, c in enumerate(cases):
            model, version, source = order[n * len(order) // len(cases)]
            c.update(model={"name": model, "version": version}, data_source=source)
        batches.append(cases)

    async def one(batch):
        async with db.transaction() as s:
            return await service.ingest_cases(s, batch, SYSTEM)

    results = await asyncio.wait_for(asyncio.gather(*(one(b) for b in batches)), 120)
    assert [r.status for rs in results for r in rs] == ["created"] * 480
    async with db.transaction() as s:
        from services.catalog.models import DataSource, Model, ModelVersion

        models = await count(s, Model, Model.name.like(f"model-{salt}-%"))
        sources = await count(s, DataSource, DataSource.name.like(f"source-{salt}-%"))
        versions = await count(
            s,
            ModelVersion,
            ModelVersion.model_id.in_(select(Model.id).where(Model.name.like(f"model-{salt}-%"))),
        )
    assert (models, versions, sources) == (24, 24, 7)


async def test_an_empty_batch_answers_nothing_with_or_without_sampling_rules(session):
    assert await service.ingest_cases(session, [], SYSTEM) == []
    await service.set_sampling_rule(
        session,
        model_name=f"m-{secrets.token_hex(3)}",
        data_source="any",
        daily_cap=5,
        keep_at_or_above="S1",
        actor=SYSTEM,
    )
    assert await service.ingest_cases(session, [], SYSTEM) == []
    [result] = await service.ingest_cases(session, unique(aiid_cases(1)), SYSTEM)
    assert result.status == "created"


async def test_a_later_batch_adds_to_its_group_and_widens_its_span(session):
    """The end-of-batch group upsert adds counts to an existing group and keeps the earliest
    first_seen and the latest last_seen across batches (both backends' upserts)."""
    fp = "fp-" + secrets.token_hex(4)
    first, second = unique(aiid_cases(3)), unique(aiid_cases(2))
    for c, at in zip(first, ("2026-03-02", "2026-03-03", "2026-03-04"), strict=True):
        c.update(fingerprint=fp, occurred_at=f"{at}T10:00:00Z")
    for c, at in zip(second, ("2026-03-01", "2026-03-05"), strict=True):
        c.update(fingerprint=fp, occurred_at=f"{at}T10:00:00.250000Z")
    await service.ingest_cases(session, first, SYSTEM)
    [one] = await service.ingest_cases(session, second[1:], SYSTEM)  # a later last_seen
    await service.ingest_cases(session, second[:1], SYSTEM)  # an earlier first_seen
    group = (
        await session.execute(select(FailureGroup).where(FailureGroup.fingerprint == fp))
    ).scalar_one()
    await session.refresh(group)
    assert group.case_count == 5 and group.sampled_out_count == 0
    assert group.first_seen.isoformat() == "2026-03-01T10:00:00.250000+00:00"
    assert group.last_seen.isoformat() == "2026-03-05T10:00:00.250000+00:00"
    assert one.status == "created"
