"""Ingestion throughput: the bulk REST route end to end versus asyncpg COPY of the same rows.

    python -m benchmarks.ingest [--cases 50000] [--batch 1000] [--embedded-cases 20000]
                                [--workers 1] [--concurrency 2]

Postgres comes from FAILCAT_BENCH_DATABASE_URL / FAILCAT_TEST_DATABASE_URL, else
infra/scripts/postgres.sh starts one. Each measurement uses a fresh database migrated to head.

1. end to end: `failcat serve` (one uvicorn process, indexer off as in production where
   `failcat worker` drains the outbox) receives POST /catalog/v1/cases:bulk batches of 1,000
   generated cases (benchmarks/generator.py), each committed before the answer;
2. raw ceiling: the rows the service stored (cases, revisions, links, outbox) are read back and
   written again with asyncpg `copy_records_to_table` into a second fresh database with the same
   schema (models, versions, sources and groups pre-loaded, untimed);
   A second end-to-end run keeps `--concurrency` requests in flight (default 2: while one
   request waits on Postgres the API process parses and validates the next);
3. the same end-to-end run on the embedded SQLite backend.
Prints cases/s for each, and the ratio end-to-end / raw.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import orjson

from benchmarks.common import fresh_postgres, postgres_url, served, token
from benchmarks.generator import CaseGenerator
from shared.migrate import upgrade_async

TIMED_TABLES = ["failure_case", "case_revision", "case_link", "search_outbox"]
REFERENCE_TABLES = ["model", "data_source", "model_version", "failure_group"]


def end_to_end(
    db_url: str, bodies: list[bytes], data_dir: Path, workers: int = 1, concurrency: int = 1
) -> float:
    env = {
        "FAILCAT_DATABASE_URL": db_url,
        "FAILCAT_DATA_DIR": str(data_dir),
        "FAILCAT_RUN_INDEXER_IN_PROCESS": "false",
        "FAILCAT_LOG_LEVEL": "WARNING",
    }
    if db_url.startswith("sqlite"):
        env.pop("FAILCAT_DATABASE_URL")
    with served(env, workers) as base:
        headers = {
            "Authorization": f"Bearer {token(base, data_dir)}",
            "Content-Type": "application/json",
        }

        def send(share: list[bytes]) -> int:
            with httpx.Client(base_url=base, headers=headers, timeout=300) as client:
                n = 0
                for body in share:
                    resp = client.post("/catalog/v1/cases:bulk", content=body)
                    resp.raise_for_status()
                    n += resp.json()["counts"]["created"]
                return n

        shares = [bodies[i::concurrency] for i in range(concurrency)]
        start = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            created = sum(pool.map(send, shares))
        elapsed = time.perf_counter() - start
    n = sum(body.count(b'"external_id"') for body in bodies)
    assert created == n, f"created {created} of {n}"
    return n / elapsed


async def raw_copy(source_url: str, target_url: str) -> tuple[float, int]:
    import asyncpg

    dsn = lambda u: u.replace("postgresql+asyncpg://", "postgresql://")  # noqa: E731
    src, dst = await asyncpg.connect(dsn(source_url)), await asyncpg.connect(dsn(target_url))
    try:
        data = {t: await src.fetch(f"SELECT * FROM {t}") for t in REFERENCE_TABLES + TIMED_TABLES}
        for t in REFERENCE_TABLES:
            await dst.copy_records_to_table(
                t, records=[tuple(r.values()) for r in data[t]], columns=list(data[t][0].keys())
            )
        records = {
            t: ([tuple(r.values()) for r in data[t]], list(data[t][0].keys()))
            for t in TIMED_TABLES
            if data[t]
        }
        start = time.perf_counter()
        async with dst.transaction():
            for t, (rows, cols) in records.items():
                await dst.copy_records_to_table(t, records=rows, columns=cols)
        elapsed = time.perf_counter() - start
    finally:
        await src.close()
        await dst.close()
    n = len(data["failure_case"])
    return n / elapsed, n


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", type=int, default=50_000)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--embedded-cases", type=int, default=20_000)
    ap.add_argument("--workers", type=int, default=1, help="API processes in the second run")
    ap.add_argument("--concurrency", type=int, default=2, help="requests in flight, second run")
    args = ap.parse_args()

    gen = CaseGenerator(seed=1)
    cases = gen.batch(args.cases)
    bodies = [orjson.dumps(cases[i : i + args.batch]) for i in range(0, len(cases), args.batch)]
    print(f"generated {len(cases)} cases, {sum(map(len, bodies)) / len(cases):.0f} bytes each")

    base = postgres_url()
    raw_url = await fresh_postgres(base)
    await upgrade_async(raw_url)
    results = {}
    for workers, concurrency in ((1, 1), (args.workers, args.concurrency)):
        if (workers, concurrency) in results:
            continue
        e2e_url = await fresh_postgres(base)
        await upgrade_async(e2e_url)
        with tempfile.TemporaryDirectory() as tmp:
            results[workers, concurrency] = await asyncio.to_thread(
                end_to_end, e2e_url, bodies, Path(tmp), workers, concurrency
            )
    raw, n = await raw_copy(e2e_url, raw_url)
    print(f"postgres raw ceiling (asyncpg COPY of the same {n} rows): {raw:8.0f} cases/s")
    for (workers, concurrency), e2e in results.items():
        print(
            f"postgres end-to-end, {workers} API process(es), {concurrency} client(s) "
            f"in flight: {e2e:8.0f} cases/s  ratio to raw {e2e / raw:5.2f}"
        )

    if args.embedded_cases:
        k = args.embedded_cases // args.batch
        with tempfile.TemporaryDirectory() as tmp:
            os.environ.pop("FAILCAT_DATABASE_URL", None)
            url = f"sqlite+aiosqlite:///{Path(tmp) / 'catalog.db'}"
            await upgrade_async(url)
            emb = await asyncio.to_thread(end_to_end, url, bodies[:k], Path(tmp))
        print(f"embedded end-to-end (SQLite, {k * args.batch} cases):     {emb:8.0f} cases/s")


if __name__ == "__main__":
    asyncio.run(main())
