"""The one append rule: staged entries are chained at commit, gap-free under concurrency,
and a rolled-back unit of work leaves no entry."""

from __future__ import annotations

import asyncio

from sqlalchemy import select

from services.audit.models import AuditEntry
from shared.audit import GENESIS, Actor, audit, chain
from tests.corpus import aiid_cases


async def _entries(db):
    async with db.sessionmaker() as s:
        return list((await s.execute(select(AuditEntry).order_by(AuditEntry.seq))).scalars())


def _assert_chained(rows) -> None:
    """Every entry's hash chains from the one before it (the first from the genesis hash)."""
    prev = GENESIS
    for r in rows:
        assert r.hash == chain(prev, r.model_dump()), r.seq
        prev = r.hash


async def test_concurrent_units_append_a_gap_free_valid_chain(db):
    before = len(await _entries(db))

    async def unit(i: int) -> None:
        async with db.transaction() as s:
            audit(s, "alice", "test.write", f"case:{i}", details={"n": i})
            audit(s, "alice", "test.read", f"case:{i}")

    await asyncio.gather(*(unit(i) for i in range(12)))
    rows = await _entries(db)
    assert len(rows) == before + 24
    assert [r.seq for r in rows] == list(range(1, len(rows) + 1))
    _assert_chained(rows)


async def test_rolled_back_unit_appends_nothing(db):
    before = len(await _entries(db))
    try:
        async with db.transaction() as s:
            audit(s, "bob", "test.write", "case:x")
            raise RuntimeError("the change failed")
    except RuntimeError:
        pass
    async with db.transaction() as s:
        pass  # a later commit must not carry the rolled-back entry
    assert len(await _entries(db)) == before


async def test_a_large_unit_of_work_chains_in_one_commit(db):
    """More entries than one Postgres statement takes (PG_ROWS_PER_STATEMENT): still one
    gap-free run, every hash valid, details round-tripped."""
    before = len(await _entries(db))
    async with db.transaction() as s:
        for i in range(1203):
            audit(
                s, "carol", "test.bulk", f"case:{i}", details={"i": i, "nested": {"b": 1, "a": [i]}}
            )
    rows = await _entries(db)
    added = rows[before:]
    assert [r.seq for r in added] == list(range(before + 1, before + 1204))
    assert added[-1].details == {"i": 1202, "nested": {"a": [1202], "b": 1}}
    _assert_chained(rows)


async def test_a_lone_entry_keeps_every_value_as_staged(db):
    """A unit of work with one entry takes the one-entry append (on Postgres: one bound value,
    the entry's canonical text, unpacked by the statement itself). Real incident text
    (quotes, backslashes, non-ASCII), absent fields and nested details come back as staged,
    and the entry chains."""
    titles = [c["title"] for c in aiid_cases(200)]
    awkward = next(t for t in titles if "'" in t or '"' in t or not t.isascii())
    actor = Actor(subject=f"{awkward} \\ 'x'", client=None, team="ml ✓")
    details = {"query": awkward, "hits": 3, "nested": {"b": [None, 1.5], "a": "ü\\n"}}
    before = len(await _entries(db))
    async with db.transaction() as s:
        audit(s, actor, "cases.search", f"case:{awkward[:40]}", details=details)
    async with db.transaction() as s:
        audit(s, "dave", "case.read", None)  # no target, no details
    rows = (await _entries(db))[before:]
    assert [(r.actor_subject, r.actor_client, r.actor_team) for r in rows] == [
        (actor.subject, None, "ml ✓"),
        ("dave", None, None),
    ]
    assert rows[0].target == f"case:{awkward[:40]}" and rows[0].details == details
    assert rows[1].target is None and rows[1].details is None
    _assert_chained(await _entries(db))
