"""Ingestion throughput: the bulk REST route end to end versus asyncpg COPY of the same rows.

    python -m benchmarks.ingest [--cases 50000] [--batch 1000] [--embedded-cases 20000]
                                [--workers 1] [--concurrency 2] [--slices 4]

Postgres comes from FAILCAT_BENCH_DATABASE_URL / FAILCAT_TEST_DATABASE_URL, else
infra/scripts/postgres.sh starts one. Each measurement uses a fresh database migrated to head.

1. end to end: `failcat serve` (one uvicorn process, indexer off as in production where
   `failcat worker` drains the outbox) receives POST /catalog/v1/cases:bulk batches of 1,000
   generated cases (benchmarks/generator.py), each committed before the answer;
2. raw ceiling: the rows the service stored (cases, revisions, links, outbox) are read back and
   written again with asyncpg `copy_records_to_table` into a second fresh database with the same
   schema (models, versions, sources and groups pre-loaded, untimed), one transaction.
   The two alternate: the batches are sent in `--slices` slices, and after each slice the rows
   it stored are copied raw, so both sides of the ratio see the same load on a shared machine.
   The first run keeps one request in flight; a second keeps `--concurrency` (default 2: while
   one request waits on Postgres the API process parses and validates the next);
3. the same end-to-end run on the embedded SQLite backend;
4. the audit append's cost (issue 12: within 5%), both backends: two servers at once, one as
   shipped and one whose process has the append switched off (`shared.audit.append_staged`
   replaced by a no-op through a benchmark-only sitecustomize on its PYTHONPATH: never a
   setting), each sent the same `--audit-batch`-case batches, slice by slice in alternation.
Prints cases/s for each, and the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import orjson

from benchmarks.common import ROOT, fresh_postgres, postgres_url, served, token
from benchmarks.generator import CaseGenerator
from shared.migrate import upgrade_async

TIMED_TABLES = ["failure_case", "case_revision", "case_link", "search_outbox"]
REFERENCE_TABLES = ["model", "data_source", "model_version", "failure_group"]


def end_to_end(
    db_url: str,
    bodies: list[bytes],
    data_dir: Path,
    workers: int = 1,
    concurrency: int = 1,
    slices: int = 1,
    raw_url: str | None = None,
) -> tuple[float, float | None]:
    """cases/s end to end, and (given `raw_url`) cases/s of the raw COPY of the same rows,
    measured slice by slice in alternation."""
    env = {
        "FAILCAT_DATABASE_URL": db_url,
        "FAILCAT_DATA_DIR": str(data_dir),
        "FAILCAT_RUN_INDEXER_IN_PROCESS": "false",
        "FAILCAT_LOG_LEVEL": "WARNING",
    }
    if db_url.startswith("sqlite"):
        env.pop("FAILCAT_DATABASE_URL")
    copier = RawCopy(db_url, raw_url) if raw_url else None
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

        created, e2e_time, raw_time = 0, 0.0, 0.0
        per_slice = -(-len(bodies) // slices)
        for k in range(0, len(bodies), per_slice):
            part = bodies[k : k + per_slice]
            shares = [part[i::concurrency] for i in range(concurrency)]
            start = time.perf_counter()
            with ThreadPoolExecutor(concurrency) as pool:
                created += sum(pool.map(send, shares))
            e2e_time += time.perf_counter() - start
            if copier is not None:
                raw_time += asyncio.run(copier.next_slice())
    n = sum(body.count(b'"external_id"') for body in bodies)
    assert created == n, f"created {created} of {n}"
    return n / e2e_time, (n / raw_time if copier is not None else None)


# Loaded at start-up of the no-audit server's processes only (PYTHONPATH): the unit of work's
# before_commit hook (shared.db) looks `append_staged` up at each commit, so this replaces it.
NO_AUDIT = f"""
import sys
sys.path.insert(0, {str(ROOT)!r})
import shared.audit

def _drop_staged(session):
    session.info.pop(shared.audit.STAGED, None)

shared.audit.append_staged = _drop_staged
"""


def audit_cost(urls: tuple[str | None, str | None], bodies: list[bytes], slices: int
               ) -> tuple[float, float]:  # fmt: skip
    """cases/s with the audit append and without it: the same batches to two servers (one
    database each; None: embedded SQLite), slice by slice in ABBA alternation so both see
    the same machine load. Checks the switch: ingest entries in the first audit log, none in
    the second."""
    with contextlib.ExitStack() as stack:
        clients, stores = [], []
        for url, audited in zip(urls, (True, False), strict=True):
            data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            env = {
                "FAILCAT_DATA_DIR": str(data_dir),
                "FAILCAT_RUN_INDEXER_IN_PROCESS": "false",
                "FAILCAT_LOG_LEVEL": "WARNING",
            }
            if url is None:
                os.environ.pop("FAILCAT_DATABASE_URL", None)
                url = f"sqlite+aiosqlite:///{data_dir / 'catalog.db'}"
                asyncio.run(upgrade_async(url))
            else:
                env["FAILCAT_DATABASE_URL"] = url
            stores.append(url)
            if not audited:
                hook = Path(stack.enter_context(tempfile.TemporaryDirectory()))
                (hook / "sitecustomize.py").write_text(NO_AUDIT)
                env["PYTHONPATH"] = os.pathsep.join(
                    [str(hook), *filter(None, [os.environ.get("PYTHONPATH")])]
                )
            base = stack.enter_context(served(env))
            headers = {
                "Authorization": f"Bearer {token(base, data_dir)}",
                "Content-Type": "application/json",
            }
            clients.append(stack.enter_context(httpx.Client(base_url=base, headers=headers,
                                                            timeout=300)))  # fmt: skip
        elapsed = [0.0, 0.0]
        per_slice = -(-len(bodies) // slices)
        for j, k in enumerate(range(0, len(bodies), per_slice)):
            for side in (0, 1) if j % 2 == 0 else (1, 0):  # ABBA: neither always goes first
                http = clients[side]
                start = time.perf_counter()
                for body in bodies[k : k + per_slice]:
                    resp = http.post("/catalog/v1/cases:bulk", content=body)
                    resp.raise_for_status()
                    assert resp.json()["counts"]["created"] == body.count(b'"external_id"')
                elapsed[side] += time.perf_counter() - start
        entries = [asyncio.run(ingest_entries(url)) for url in stores]
    n = sum(body.count(b'"external_id"') for body in bodies)
    print(
        f"  (audit entries of the ingests: {entries[0]} with the append, {entries[1]} without; "
        f"{elapsed[0]:.1f} s and {elapsed[1]:.1f} s)"
    )
    assert entries[0] == len(bodies) and entries[1] == 0, f"audit entries {entries}"
    return n / elapsed[0], n / elapsed[1]


async def ingest_entries(url: str) -> int:
    """The number of `cases.ingest` entries in the audit log at `url`."""
    query = "SELECT count(*) FROM audit_log WHERE action = 'cases.ingest'"
    if url.startswith("sqlite"):
        import sqlite3

        with contextlib.closing(sqlite3.connect(url.split("///", 1)[1])) as conn:
            return int(conn.execute(query).fetchone()[0])
    import asyncpg

    conn = await asyncpg.connect(dsn(url))
    try:
        return int(await conn.fetchval(query))
    finally:
        await conn.close()


class RawCopy:
    """Copies what the service stored since the last call into the raw database, timed."""

    def __init__(self, source_url: str, target_url: str) -> None:
        self.source, self.target = dsn(source_url), dsn(target_url)
        self.outbox_seen = 0
        self.reference_seen: dict[str, set[Any]] = {t: set() for t in REFERENCE_TABLES}

    async def next_slice(self) -> float:
        import asyncpg

        src, dst = await asyncpg.connect(self.source), await asyncpg.connect(self.target)
        try:
            # Every request of the slice has committed: the outbox rows past the mark are
            # exactly the slice's cases.
            outbox = await src.fetch(
                "SELECT * FROM search_outbox WHERE id > $1 ORDER BY id", self.outbox_seen
            )
            self.outbox_seen = outbox[-1]["id"]
            ids = [r["case_id"] for r in outbox]
            data = {
                "failure_case": await src.fetch(
                    "SELECT * FROM failure_case WHERE id = ANY($1)", ids
                ),
                "case_revision": await src.fetch(
                    "SELECT * FROM case_revision WHERE case_id = ANY($1)", ids
                ),
                "case_link": await src.fetch(
                    "SELECT * FROM case_link WHERE case_id = ANY($1)", ids
                ),
                "search_outbox": outbox,
            }
            for t in REFERENCE_TABLES:  # untimed: the ceiling writes only what ingestion adds
                rows = [
                    r
                    for r in await src.fetch(f"SELECT * FROM {t}")
                    if r["id"] not in self.reference_seen[t]
                ]
                if rows:
                    self.reference_seen[t].update(r["id"] for r in rows)
                    await dst.copy_records_to_table(
                        t, records=[tuple(r.values()) for r in rows], columns=list(rows[0].keys())
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
            return time.perf_counter() - start
        finally:
            await src.close()
            await dst.close()


async def drop_databases(base_url: str, *urls: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn(base_url))
    try:
        for url in urls:
            await conn.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
    finally:
        await conn.close()


def dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", type=int, default=50_000)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--embedded-cases", type=int, default=20_000)
    ap.add_argument("--workers", type=int, default=1, help="API processes in the second run")
    ap.add_argument("--concurrency", type=int, default=2, help="requests in flight, second run")
    ap.add_argument("--slices", type=int, default=4, help="alternations of end-to-end and raw")
    ap.add_argument("--audit-cases", type=int, default=20_000, help="per side; 0: skip")
    ap.add_argument("--audit-batch", type=int, default=500, help="the client's default batch")
    ap.add_argument("--audit-slices", type=int, default=20, help="ABBA alternations (fine: "
                    "a loaded machine's drift falls on both sides alike)")  # fmt: skip
    args = ap.parse_args()

    gen = CaseGenerator(seed=1)
    cases = gen.batch(args.cases)
    bodies = [orjson.dumps(cases[i : i + args.batch]) for i in range(0, len(cases), args.batch)]
    print(f"generated {len(cases)} cases, {sum(map(len, bodies)) / len(cases):.0f} bytes each")

    base = postgres_url()
    for workers, concurrency in dict.fromkeys(((1, 1), (args.workers, args.concurrency))):
        e2e_url, raw_url = await fresh_postgres(base), await fresh_postgres(base)
        try:
            await upgrade_async(e2e_url)
            await upgrade_async(raw_url)
            with tempfile.TemporaryDirectory() as tmp:
                e2e, raw = await asyncio.to_thread(
                    end_to_end,
                    e2e_url,
                    bodies,
                    Path(tmp),
                    workers,
                    concurrency,
                    args.slices,
                    raw_url,
                )
        finally:
            await drop_databases(base, e2e_url, raw_url)  # the server is shared: leave nothing
        assert raw is not None
        print(
            f"postgres, {workers} API process(es), {concurrency} request(s) in flight: "
            f"end-to-end {e2e:7.0f} cases/s, raw COPY of the same rows {raw:7.0f} cases/s, "
            f"ratio {e2e / raw:5.2f}"
        )

    if args.embedded_cases:
        k = args.embedded_cases // args.batch
        with tempfile.TemporaryDirectory() as tmp:
            os.environ.pop("FAILCAT_DATABASE_URL", None)
            url = f"sqlite+aiosqlite:///{Path(tmp) / 'catalog.db'}"
            await upgrade_async(url)
            emb, _ = await asyncio.to_thread(end_to_end, url, bodies[:k], Path(tmp))
        print(f"embedded end-to-end (SQLite, {k * args.batch} cases):     {emb:8.0f} cases/s")

    if args.audit_cases:
        sized = CaseGenerator(seed=2).batch(args.audit_cases)
        step = args.audit_batch
        audit_bodies = [orjson.dumps(sized[i : i + step]) for i in range(0, len(sized), step)]
        pg = (await fresh_postgres(base), await fresh_postgres(base))
        try:
            for url in pg:
                await upgrade_async(url)
            on, off = await asyncio.to_thread(audit_cost, pg, audit_bodies, args.audit_slices)
        finally:
            await drop_databases(base, *pg)
        print(f"postgres, audit append on vs off ({step}/request, {len(sized)} cases): "
              f"{on:7.0f} vs {off:7.0f} cases/s, ratio {on / off:5.3f}")  # fmt: skip
        on, off = await asyncio.to_thread(audit_cost, (None, None), audit_bodies, args.audit_slices)
        print(f"embedded, audit append on vs off ({step}/request, {len(sized)} cases): "
              f"{on:7.0f} vs {off:7.0f} cases/s, ratio {on / off:5.3f}")  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
