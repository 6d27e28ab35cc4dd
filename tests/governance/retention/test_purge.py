"""The purge job on both backends (SQLite + FTS5, Postgres + OpenSearch): payload and case
TTLs, tombstones, search, legal holds, dry runs, idempotence and the audit trail. Time travel:
runs are given a `now` some days ahead of the cases' reception."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.catalog import service as catalog
from services.catalog.schemas import CasePatch
from services.governance.retention import service
from shared.errors import BadUserInput, NotFound
from shared.security import SYSTEM, Principal
from tests.governance.retention.helpers import (
    audit_entries,
    cases_by_id,
    corpus_cases,
    ingest_cases,
    later,
    payload_hits,
    revisions,
    source_hits,
    state,
)

ADMIN = Principal("admin-1", "c-admin", scopes=frozenset({"admin"}), name="admin")
REVIEWER = Principal(
    "reviewer-1", "c-rev", scopes=frozenset({"reviews:write", "cases:read"}), name="rev"
)
PAYLOAD = ("input", "prediction", "expected", "signals", "environment")


async def set_policy(db, source, payload=None, case=None, sensitivity="internal"):
    async with db.transaction() as s:
        await service.set_retention_policy(
            s,
            {
                "data_source": source,
                "sensitivity": sensitivity,
                "payload_ttl_days": payload,
                "case_ttl_days": case,
            },
            ADMIN,
        )


async def hold(db, kind, target, on=True, reason="litigation 2026-114"):
    async with db.transaction() as s:
        return await service.set_legal_hold(
            s, {"kind": kind, "target_id": target, "hold": on, "reason": reason}, REVIEWER
        )


def mine(report, source):
    [p] = [p for p in report.policies if p.data_source == source]
    return p


async def test_payload_ttl_purges_the_payload_keeps_the_summary_and_leaves_search(stack):
    cases = corpus_cases(5)
    source = cases[0]["data_source"]
    ids = await ingest_cases(stack.db, cases)
    await stack.settle()
    for case, case_id in zip(cases, ids, strict=True):
        assert case_id in await payload_hits(stack, case)
    await set_policy(stack.db, source, payload=30)

    # Not yet due: 29 days on, nothing.
    early = await service.run(stack.db, now=later(29))
    assert not mine(early, source).payload_purged

    now = later(31)
    before = await state(stack.db, ids)
    lines: list[str] = []
    dry = await service.run(stack.db, now=now, dry_run=True, chunk=2, progress=lines.append)
    assert sorted(mine(dry, source).payload_purged) == sorted(ids)
    assert await state(stack.db, ids) == before, "a dry run changed something"
    assert lines and "due" in lines[-1]  # one progress line per chunk of 2

    report = await service.run(stack.db, now=now, chunk=2)
    ran = mine(report, source)
    assert sorted(ran.payload_purged) == sorted(ids) and not ran.cases_purged
    assert (len(ran.payload_purged), len(ran.cases_purged)) == (
        len(mine(dry, source).payload_purged),
        len(mine(dry, source).cases_purged),
    )
    rows = await cases_by_id(stack.db, ids)
    for case, case_id in zip(cases, ids, strict=True):
        row = rows[case_id]
        assert all(getattr(row, f) is None for f in PAYLOAD), row
        # The redacted summary stays.
        assert (row.title, row.summary, row.severity) == (
            case["title"],
            case["summary"],
            case["severity"],
        )
        assert row.failure_mode == case.get("failure_mode")
        assert row.payload_purged_at == now and row.purged_at is None
        assert row.revision == 2
        tomb = (await revisions(stack.db, case_id))[-1]
        assert tomb.revision == 2 and tomb.actor == service.RETENTION.subject
        assert tomb.changes == {"payload_purged_at": {"old": None, "new": now.isoformat()}}
        assert "payload TTL of 30 days" in tomb.reason

    await stack.settle()
    for case in cases:
        assert not await payload_hits(stack, case), "purged payload text is still searchable"
    # The cases themselves stay in the index, with their summary.
    assert await source_hits(stack, source) == set(ids)

    # Idempotent: the same run again purges nothing and writes nothing.
    settled = await state(stack.db, ids)
    again = await service.run(stack.db, now=now)
    assert not mine(again, source).payload_purged and not mine(again, source).cases_purged
    assert await state(stack.db, ids) == settled

    entries = await audit_entries(stack.db)
    purged = {e.target for e in entries if e.action == "retention.purge_payload"}
    assert purged == {f"case:{i}" for i in ids}
    assert any(e.action == "retention.run" for e in entries)
    # Counts and ids only: no payload value in any entry.
    words = {p for c in cases for p in c["input"]["parties"]}
    assert not any(w in str(e.details) for e in entries for w in words)


async def test_case_ttl_purges_the_case_into_a_tombstone_and_out_of_search(stack):
    cases = corpus_cases(3)
    source = cases[0]["data_source"]
    ids = await ingest_cases(stack.db, cases)
    async with stack.db.transaction() as s:  # curated content in the history too
        await catalog.update_case(
            s, ids[0], CasePatch(title="Retitled by a curator", tags=["kept-in-history"]), 1, SYSTEM
        )
    await stack.settle()
    assert await source_hits(stack, source) == set(ids)
    await set_policy(stack.db, source, payload=10, case=20)

    now = later(21)
    before = await state(stack.db, ids)
    dry = await service.run(stack.db, now=now, dry_run=True)
    assert await state(stack.db, ids) == before
    report = await service.run(stack.db, now=now)
    ran = mine(report, source)
    assert sorted(ran.cases_purged) == sorted(ids) and not ran.payload_purged
    assert sorted(mine(dry, source).cases_purged) == sorted(ran.cases_purged)
    assert not mine(dry, source).payload_purged

    rows = await cases_by_id(stack.db, ids)
    for case_id in ids:
        row = rows[case_id]
        assert row.purged_at == now and row.payload_purged_at == now
        assert (row.title, row.summary, row.writeup, row.provenance, row.tags) == (
            None,
            None,
            None,
            None,
            [],
        )
        assert all(getattr(row, f) is None for f in PAYLOAD)
        assert row.severity is not None and row.group_id  # the tombstone keeps its grading
        assert (await revisions(stack.db, case_id))[-1].changes == {
            "purged_at": {"old": None, "new": now.isoformat()}
        }
    # Earlier revisions keep who changed which field, not the values.
    retitled = (await revisions(stack.db, ids[0]))[1]
    assert retitled.changes["title"] == {"old": None, "new": None}
    assert retitled.changes["tags"] == {"old": None, "new": None}

    await stack.settle()
    assert await source_hits(stack, source) == set()
    verify = await stack.search.verify()
    assert verify.in_sync, verify.as_json()
    # A tombstone is not a live case: not curated again, not found by id.
    async with stack.db.transaction() as s:
        with pytest.raises(NotFound):
            await catalog.update_case(s, ids[1], CasePatch(title="back"), 2, SYSTEM)
    again = await service.run(stack.db, now=later(400))
    assert not mine(again, source).cases_purged and not mine(again, source).payload_purged
    targets = {e.target for e in await audit_entries(stack.db, "retention.purge_case")}
    assert targets >= {f"case:{i}" for i in ids}


async def test_a_legal_hold_on_a_case_or_its_group_blocks_both_purges_until_lifted(stack):
    cases = corpus_cases(4)
    source = cases[0]["data_source"]
    ids = await ingest_cases(stack.db, cases)
    rows = await cases_by_id(stack.db, ids)
    held_case, held_group, payload_only = ids[0], rows[ids[1]].group_id, ids[3]
    await hold(stack.db, "case", held_case)
    await hold(stack.db, "group", held_group)
    await set_policy(stack.db, source, payload=10, case=20)
    # The fourth case was received later: only its payload is due.
    async with stack.db.transaction() as s:
        from sqlalchemy import text

        await s.execute(
            text("UPDATE failure_case SET received_at = :t WHERE id = :i"),
            {"t": later(5), "i": payload_only},
        )
    await stack.settle()

    now = later(21)
    dry = await service.run(stack.db, now=now, dry_run=True)
    report = await service.run(stack.db, now=now)
    ran = mine(report, source)
    assert ran.cases_purged == [ids[2]] and ran.payload_purged == [payload_only]
    assert ran.held == {held_case, ids[1]}
    d = mine(dry, source)
    assert (d.cases_purged, d.payload_purged, d.held) == (
        ran.cases_purged,
        ran.payload_purged,
        ran.held,
    )
    rows = await cases_by_id(stack.db, ids)
    for held in (held_case, ids[1]):  # neither payload nor case touched
        assert rows[held].input is not None and rows[held].payload_purged_at is None
        assert rows[held].purged_at is None and rows[held].revision == 1
    await stack.settle()
    assert await source_hits(stack, source) == {held_case, ids[1], payload_only}

    # Lifting the case's hold: the next run purges it; the group's hold still holds.
    lifted = await hold(stack.db, "case", held_case, on=False, reason="case settled")
    assert not lifted.active and lifted.lift_reason == "case settled"
    report = await service.run(stack.db, now=now)
    ran = mine(report, source)
    assert ran.cases_purged == [held_case] and ran.held == {ids[1]}
    await hold(stack.db, "group", held_group, on=False, reason="released")
    ran = mine(await service.run(stack.db, now=now), source)
    assert ran.cases_purged == [ids[1]] and not ran.held
    await stack.settle()
    assert await source_hits(stack, source) == {payload_only}

    actions = [
        (e.action, e.target, e.details)
        for e in await audit_entries(stack.db, "retention.legal_hold")
        if e.target in (f"case:{held_case}", f"group:{held_group}")
    ]
    assert actions == [
        ("retention.legal_hold.set", f"case:{held_case}", {"reason": "litigation 2026-114"}),
        ("retention.legal_hold.set", f"group:{held_group}", {"reason": "litigation 2026-114"}),
        ("retention.legal_hold.lift", f"case:{held_case}", {"reason": "case settled"}),
        ("retention.legal_hold.lift", f"group:{held_group}", {"reason": "released"}),
    ]


async def test_policies_are_per_sensitivity_and_validated(stack):
    cases = corpus_cases(2)
    cases[1]["sensitivity"] = "confidential"
    source = cases[0]["data_source"]
    ids = await ingest_cases(stack.db, cases)
    await set_policy(stack.db, source, payload=5)  # internal only
    ran = mine(await service.run(stack.db, now=later(6)), source)
    assert ran.payload_purged == [ids[0]]
    rows = await cases_by_id(stack.db, ids)
    assert rows[ids[1]].input is not None

    with pytest.raises(BadUserInput) as bad:
        await set_policy(stack.db, source, payload=30, case=10)
    assert bad.value.errors[0].path == "case_ttl_days"
    with pytest.raises(ValidationError):
        await set_policy(stack.db, source, payload=0)
    # Both TTLs null removes the policy.
    await set_policy(stack.db, source)
    async with stack.db.transaction() as s:
        assert source not in {p.data_source for p in await service.retention_policies(s)}
    actions = [e.action for e in await audit_entries(stack.db, "retention.policy")]
    assert "retention.policy.set" in actions and "retention.policy.remove" in actions
