"""`failcat worker` (production shape: the API does not index) drains the outbox into search."""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
import time
from pathlib import Path

from services.catalog import service
from services.search.service import SearchService
from shared.db import Database
from shared.migrate import upgrade_async
from shared.security import SYSTEM
from tests.catalog.builders import unique
from tests.conftest import make_settings
from tests.corpus import aiid_cases

ROOT = Path(__file__).resolve().parents[1]


async def test_worker_indexes_what_the_api_ingested(backend, tmp_path):
    # A database and index of this test's own: no other indexer drains its outbox.
    settings = await make_settings(backend, tmp_path, run_indexer_in_process=False)
    await upgrade_async(settings.catalog_url)
    db = Database(settings.catalog_url)
    search = await SearchService.start(settings, db)
    word = "quokka" + secrets.token_hex(3)
    cases = unique(aiid_cases(3))
    for c in cases:
        c["title"] = f"{c['title']} {word}"
    async with db.transaction() as s:
        await service.ingest_cases(s, cases, SYSTEM)

    env = {
        **os.environ,
        "FAILCAT_DATA_DIR": str(settings.data_dir),
        "FAILCAT_DATABASE_URL": settings.catalog_url,
        "FAILCAT_SEARCH_URL": settings.search_url,
        "FAILCAT_SEARCH_INDEX": settings.search_index,
    }
    worker = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.gateway.cli",
        "worker",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        total = 0
        while time.monotonic() < deadline and total < 3:
            await asyncio.sleep(0.2)
            total = (await search.search(SYSTEM, word)).total
        assert total == 3, "the worker did not index the outbox within 30 s"
    finally:
        worker.terminate()
        await worker.wait()
        await search.close()
        await db.dispose()
