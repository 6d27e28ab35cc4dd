"""`failcat retention run [--dry-run] [--json]` and the same job in `failcat worker`, as
processes on a database of the test's own (cases made due by moving their reception back)."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import text

from services.governance.retention import service
from services.search.service import SearchService
from shared.db import Database, utcnow
from shared.migrate import upgrade_async
from tests.conftest import make_settings
from tests.governance.retention.conftest import Stack
from tests.governance.retention.helpers import (
    audit_entries,
    cases_by_id,
    corpus_cases,
    ingest_cases,
    payload_hits,
    state,
)
from tests.governance.retention.test_purge import ADMIN

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
async def env(backend, tmp_path):
    settings = await make_settings(backend, tmp_path, run_indexer_in_process=False)
    await upgrade_async(settings.catalog_url)
    db = Database(settings.catalog_url)
    search = await SearchService.start(settings, db)
    variables = {
        **os.environ,
        "FAILCAT_DATA_DIR": str(settings.data_dir),
        "FAILCAT_DATABASE_URL": settings.catalog_url,
        "FAILCAT_SEARCH_URL": settings.search_url,
        "FAILCAT_SEARCH_INDEX": settings.search_index,
    }
    try:
        yield db, search, variables
    finally:
        await search.backend.drop()
        await search.close()
        await db.dispose()


async def _due_cases(db: Database, n: int, days_ago: int = 3) -> tuple[list[dict], list[str]]:
    """n corpus cases received `days_ago` days ago, under a one-day payload policy."""
    cases = corpus_cases(n)
    ids = await ingest_cases(db, cases)
    async with db.transaction() as s:
        await s.execute(
            text("UPDATE failure_case SET received_at = :t"),
            {"t": utcnow() - timedelta(days=days_ago)},
        )
        await service.set_retention_policy(
            s,
            {
                "data_source": cases[0]["data_source"],
                "sensitivity": "internal",
                "payload_ttl_days": 1,
            },
            ADMIN,
        )
    return cases, ids


async def _cli(variables: dict[str, str], *args: str) -> tuple[int, Any, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.gateway.cli",
        "retention",
        "run",
        *args,
        cwd=ROOT,
        env=variables,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    parsed = orjson.loads(out) if "--json" in args and out else out.decode()
    return proc.returncode, parsed, err.decode()


async def test_cli_dry_run_reports_and_changes_nothing_then_runs_once(env):
    db, _, variables = env
    cases, ids = await _due_cases(db, 3)
    before = await state(db, ids)

    # The line per policy as RETENTION.md shows it, tab-separated.
    code, lines, err = await _cli(variables, "--dry-run")
    assert code == 0, err
    source = cases[0]["data_source"]
    assert lines == f"{source}\tinternal\twould purge 3 payloads, 0 cases\t0 held\n", lines
    code, dry, err = await _cli(variables, "--dry-run", "--json")
    assert code == 0, err
    [policy] = dry["policies"]
    assert dry["dry_run"] and dry["payload_purged"] == 3 and dry["cases_purged"] == 0
    assert policy["payload_purged_ids"] == sorted(ids)
    assert await state(db, ids) == before, "--dry-run changed something"

    for chunk in ("0", "-3"):  # purging nothing (or everything at once) silently is refused
        code, _, err = await _cli(variables, "--chunk", chunk)
        assert (code, err) == (2, f"failcat: --chunk {chunk}: must be at least 1\n")
    # One transaction per chunk: a huge one is refused too (past 2^63 it ended in
    # 'unexpected error: OverflowError' on SQLite).
    for chunk in ("50001", "99999999999999999999"):
        code, _, err = await _cli(variables, "--chunk", chunk)
        assert (code, err) == (2, f"failcat: --chunk {chunk}: must be at most 50000\n")
    assert await state(db, ids) == before

    code, done, err = await _cli(variables, "--json", "--chunk", "2")
    assert code == 0, err
    assert done["payload_purged"] == 3 and done["policies"][0]["payload_purged_ids"] == sorted(ids)
    assert "retention run: 3 payloads, 0 cases" in err
    rows = await cases_by_id(db, ids)
    assert all(r.input is None and r.payload_purged_at is not None for r in rows.values())
    assert {e.target for e in await audit_entries(db, "retention.purge_payload")} == {
        f"case:{i}" for i in ids
    }

    code, again, err = await _cli(variables)
    assert code == 0, err
    assert "purged 0 payloads, 0 cases" in again and "0 payloads, 0 cases" in err


async def test_the_worker_runs_the_job_and_the_index_follows(env):
    db, search, variables = env
    cases, ids = await _due_cases(db, 2)
    await search.drain_outbox()
    await search.backend.refresh()

    stack = Stack(db, search)
    assert ids[0] in await payload_hits(stack, cases[0])
    worker = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.gateway.cli",
        "worker",
        cwd=ROOT,
        env={**variables, "FAILCAT_RETENTION_INTERVAL_S": "0.5"},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        purged = False
        while time.monotonic() < deadline:
            await asyncio.sleep(0.3)
            rows = await cases_by_id(db, ids)
            purged = all(r.payload_purged_at is not None for r in rows.values())
            if purged:
                await search.backend.refresh()
                if not any([await payload_hits(stack, c) for c in cases]):
                    break
        assert purged, "the worker did not run the retention job within 60 s"
        for case in cases:
            assert not await payload_hits(stack, case), "the worker did not index the purge"
    finally:
        worker.terminate()
        await worker.wait()
