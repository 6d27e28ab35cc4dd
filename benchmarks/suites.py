"""Suite export rate and release-gate latency.

    python -m benchmarks.suites [--cases 100000] [--groups 10000] [--backend both|postgres|embedded]

For each backend, a fresh database migrated to head is loaded (untimed, through the catalog's
and the safeguards' services) with `--cases` generated cases (benchmarks/generator.py) of one
model spread over `--groups` failure groups, and one suite freezing all of them. Then
`failcat serve` (its own process, indexer off) answers:
1. GET /safeguards/v1/suites/{name}/1.jsonl, streamed and counted by this process: cases/s,
   and the server's peak RSS growth over its RSS before the request (sampled from /proc every
   10 ms), the figure that shows the export does not hold the suite in memory;
2. GET /safeguards/v1/gate for that model (every case and group counted): median and p95 of
   20 requests after 3 warm-ups.
Postgres comes from FAILCAT_BENCH_DATABASE_URL / FAILCAT_TEST_DATABASE_URL, else
infra/scripts/postgres.sh starts one.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx
from sqlalchemy import text

from benchmarks.common import fresh_postgres, postgres_url, served, token
from benchmarks.generator import CaseGenerator
from shared.migrate import upgrade_async

MODEL, SUITE, VERSION = "bench-model", "bench-suite", "1.0.0"


async def load(db_url: str, cases: int, groups: int) -> float:
    from services.catalog import service as catalog
    from services.safeguards import service as safeguards
    from services.safeguards.schemas import SuiteCreate
    from shared.db import Database
    from shared.security import SYSTEM

    await upgrade_async(db_url)
    db = Database(db_url)
    gen = CaseGenerator(seed=7)
    ids: list[str] = []
    started = time.perf_counter()
    try:
        for start in range(0, cases, 1000):
            batch = gen.batch(min(1000, cases - start))
            for offset, case in enumerate(batch):
                case["model"] = {"name": MODEL, "version": VERSION}
                case["fingerprint"] = f"bench-group-{(start + offset) % groups}"
            async with db.transaction() as session:
                results = await catalog.ingest_cases(session, batch, SYSTEM)
            ids.extend(r.id for r in results if r.status == "created")
        async with db.transaction() as session:
            await safeguards.create_suite(
                session, SuiteCreate(name=SUITE, model=MODEL, case_ids=ids), SYSTEM
            )
        if db.dialect == "postgresql":
            # What autovacuum does shortly after a bulk load: plans see the real row counts.
            async with db.engine.connect() as conn:
                await conn.execute(text("ANALYZE"))
    finally:
        await db.dispose()
    return time.perf_counter() - started


async def drop_postgres(url: str) -> None:
    import asyncpg

    base, name = url.rsplit("/", 1)
    conn = await asyncpg.connect(
        base.replace("postgresql+asyncpg://", "postgresql://") + "/postgres"
    )
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def server_pid(port: int) -> int:
    needle = f"--port\x00{port}\x00".encode()
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if needle in (proc / "cmdline").read_bytes() + b"\x00":
                    return int(proc.name)
            except OSError:
                continue
    raise RuntimeError(f"no server process on port {port}")


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def measure_export(base: str, headers: dict[str, str], pid: int) -> tuple[int, float, float]:
    before = rss_kb(pid)
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss_kb(pid))
            time.sleep(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    lines = 0
    started = time.perf_counter()
    with httpx.stream(
        "GET", f"{base}/safeguards/v1/suites/{SUITE}/1.jsonl", headers=headers, timeout=600
    ) as resp:
        resp.raise_for_status()
        for chunk in resp.iter_bytes():
            lines += chunk.count(b"\n")
    elapsed = time.perf_counter() - started
    done.set()
    sampler.join()
    return lines, elapsed, (peak[0] - before) / 1024


def measure_gate(base: str, headers: dict[str, str]) -> tuple[float, float, dict]:
    params = {"model": MODEL, "version": VERSION}
    with httpx.Client(base_url=base, headers=headers, timeout=60) as http:
        for _ in range(3):
            http.get("/safeguards/v1/gate", params=params).raise_for_status()
        times = []
        for _ in range(20):
            started = time.perf_counter()
            resp = http.get("/safeguards/v1/gate", params=params)
            times.append((time.perf_counter() - started) * 1000)
            resp.raise_for_status()
    times.sort()
    return statistics.median(times), times[int(0.95 * len(times)) - 1], resp.json()


def run(name: str, db_url: str, data_dir: Path, cases: int, groups: int) -> None:
    load_s = asyncio.run(load(db_url, cases, groups))
    print(f"[{name}] loaded {cases} cases in {groups} groups and froze the suite in {load_s:.1f} s")
    env = {
        "FAILCAT_DATABASE_URL": db_url,
        "FAILCAT_DATA_DIR": str(data_dir),
        "FAILCAT_RUN_INDEXER_IN_PROCESS": "false",
        "FAILCAT_LOG_LEVEL": "WARNING",
    }
    with served(env) as base:
        headers = {"Authorization": f"Bearer {token(base, data_dir)}"}
        pid = server_pid(int(base.rsplit(":", 1)[1]))
        lines, elapsed, growth = measure_export(base, headers, pid)
        print(
            f"[{name}] export: {lines} cases in {elapsed:.2f} s = {lines / elapsed:,.0f} cases/s; "
            f"server peak RSS growth {growth:.1f} MB"
        )
        median, p95, answer = measure_gate(base, headers)
        severe = answer["conditions"][0]
        print(
            f"[{name}] gate ({groups} groups, {severe['detail']}): "
            f"median {median:.1f} ms, p95 {p95:.1f} ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--groups", type=int, default=10_000)
    parser.add_argument("--backend", choices=["both", "postgres", "embedded"], default="both")
    args = parser.parse_args()
    if args.backend in ("both", "postgres"):
        url = asyncio.run(fresh_postgres(postgres_url()))
        try:
            run("postgres", url, Path(tempfile.mkdtemp()), args.cases, args.groups)
        finally:
            asyncio.run(drop_postgres(url))
    if args.backend in ("both", "embedded"):
        data_dir = Path(tempfile.mkdtemp())
        url = f"sqlite+aiosqlite:///{data_dir / 'catalog.db'}"
        run("embedded", url, data_dir, args.cases, args.groups)


if __name__ == "__main__":
    main()
