"""The dashboard's regressed groups (groups(status: REGRESSED, first: 20), newest first) are
read from an index in order (migration 0022), not by scanning and sorting every group."""

from __future__ import annotations

from sqlalchemy import text

# The shape list_groups sends (services/catalog/repository/groups.py: newest_first).
REGRESSED = (
    "SELECT id FROM failure_group WHERE status = 'regressed' "
    "ORDER BY last_seen DESC, id DESC LIMIT 20"
)


async def test_regressed_groups_are_read_in_index_order(app):
    db = app.state.db
    async with db.transaction() as s:
        if db.engine.dialect.name == "postgresql":
            # The test database's few groups would be scanned whatever the indexes, and with
            # only seqscan off the planner may still pick another index and sort (its choice
            # moves with the table's statistics): ask whether an index serves the query in
            # order at all.
            for setting in ("enable_seqscan", "enable_bitmapscan", "enable_sort"):
                await s.execute(text(f"SET LOCAL {setting} = off"))
            plan = "\n".join(r[0] for r in await s.execute(text(f"EXPLAIN {REGRESSED}")))
            assert "ix_failure_group_status_last_seen" in plan, plan
        else:
            rows = await s.execute(text(f"EXPLAIN QUERY PLAN {REGRESSED}"))
            plan = "\n".join(r[3] for r in rows)
            assert "INDEX ix_failure_group_status_last_seen (status=?)" in plan, plan
        assert "Sort" not in plan and "TEMP B-TREE" not in plan, plan
