"""What context events add to building search documents: per indexer batch, the document rows
alone versus the rows plus the one query for the events that preceded them.

    python -m benchmarks.context_events [--cases 5000] [--events 500] [--batch 500] [--postgres]

Cases are real AIID incidents spread over 30 days and 5 models; events are deploys and drift
alerts spread over the same days. Prints ms per batch (median of the batches) and statements.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import event

from benchmarks.common import fresh_postgres, postgres_url
from services.catalog import service
from services.catalog.document import search_document
from services.catalog.repository import CatalogRepository
from shared.db import Database
from shared.migrate import upgrade_async
from shared.security import SYSTEM
from tests.catalog.builders import unique
from tests.corpus import aiid_cases

T0 = datetime(2026, 6, 1, tzinfo=UTC)


async def run(url: str, n_cases: int, n_events: int, batch: int) -> None:
    await upgrade_async(url)
    db = Database(url)
    models = [f"bench-model-{i}" for i in range(5)]
    base = aiid_cases(900)
    async with db.transaction() as s:
        for start in range(0, n_cases, 1000):
            cases = unique([base[i % len(base)] for i in range(start, min(n_cases, start + 1000))])
            for i, c in enumerate(cases, start):
                c["external_id"] = f"{c['external_id']}-{i}"
                c["model"] = {"name": models[i % 5], "version": f"1.{i % 3}"}
                c["occurred_at"] = (T0 + timedelta(minutes=i * 30 * 24 * 60 // n_cases)).isoformat()
            await service.ingest_cases(s, cases, SYSTEM)
        events = [
            {
                "kind": "deploy" if i % 2 else "drift_alert",
                "occurred_at": (T0 + timedelta(hours=i * 30 * 24 / n_events)).isoformat(),
                "scope": {"model": models[i % 5], "version": f"1.{i % 3}"},
                "details": {"rollout": "100%"}
                if i % 2
                else {"metric": "psi", "value": 0.3, "threshold": 0.2},
            }
            for i in range(n_events)
        ]
        await service.record_events(s, events, SYSTEM)
    async with db.transaction() as s:
        ids = [cid for cid, _ in await service.case_revisions(s)]
    plain, full, statements = [], [], []
    for start in range(0, len(ids), batch):
        chunk = ids[start : start + batch]
        async with db.transaction() as s:
            t = time.perf_counter()
            [search_document(*row) for row in await CatalogRepository(s).document_rows(chunk)]
            plain.append(time.perf_counter() - t)
        async with db.transaction() as s:
            seen: list[str] = []

            def count(*args: object, sink: list[str] = seen) -> None:
                sink.append("x")

            event.listen(db.engine.sync_engine, "before_cursor_execute", count)
            t = time.perf_counter()
            docs = await service.search_documents(s, chunk)
            full.append(time.perf_counter() - t)
            event.remove(db.engine.sync_engine, "before_cursor_execute", count)
            statements.append(len(seen))
    tagged = sum(1 for d in docs if d["after_event"])
    print(
        f"{db.engine.dialect.name}: {n_cases} cases, {n_events} events, batches of {batch}: "
        f"documents without events {statistics.median(plain) * 1000:.1f} ms/batch, with events "
        f"{statistics.median(full) * 1000:.1f} ms/batch, statements/batch {max(statements)} "
        f"(last batch: {tagged}/{len(docs)} cases after an event)"
    )
    await db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", type=int, default=5000)
    parser.add_argument("--events", type=int, default=500)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--postgres", action="store_true")
    args = parser.parse_args()
    if args.postgres:
        url = asyncio.run(fresh_postgres(postgres_url()))
    else:
        url = f"sqlite+aiosqlite:///{Path(tempfile.mkdtemp()) / 'bench.db'}"
    asyncio.run(run(url, args.cases, args.events, args.batch))


if __name__ == "__main__":
    main()
