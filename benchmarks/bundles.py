"""Bundle export benchmark: cases/s and peak RSS growth of `write_bundle` per profile, beside
a raw baseline (the same case rows read by the raw driver and written as JSONL with orjson).

    python -m benchmarks.bundles --backend embedded [--cases 100000] [--profiles ...]
    python -m benchmarks.bundles --backend real      # Postgres + OpenSearch (the tests' ones)

What it does, in one run:
1. A fresh catalog (SQLite in a temp dir, or a fresh Postgres database) and index (SQLite FTS5,
   or a fresh OpenSearch index), --cases generated cases (benchmarks/generator.py: real
   incident write-ups as text) ingested through the catalog service (COPY on Postgres), and
   indexed only when --query is given (an export of no query reads the catalog by keyset and
   never asks the index).
2. Each profile's bundle of every case (--query, default none; the SYSTEM reader) written
   in-process by services.sharing.bundle.write_bundle, as `failcat export bundle` does; then
   the raw baseline. Peak RSS growth is sampled every 5 ms over the call (the process's RSS at
   the start subtracted; the modules an export imports are loaded before), whole and split
   into its anonymous part (what the export allocates) and its file-backed part (pages of
   mapped files: see rss_bytes).
Prints cases/s, seconds, memory and CPU per case per profile and the baseline, and the ratio.
Seven helpers share two cores: figures are loaded; compare the ratios of one run.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson

from benchmarks.common import fresh_postgres, opensearch_url, postgres_url
from benchmarks.generator import CaseGenerator

PAGE = 2_000


def rss_bytes() -> tuple[int, int]:
    """The process's RSS and its anonymous part, in bytes (/proc/self/status: `VmRSS`,
    `RssAnon`; the same split as smaps_rollup's `Rss` and `Anonymous`, without walking every
    mapping at each sample). The anonymous part is what the process allocated (the Python
    heap, the drivers' buffers, thread stacks); the rest of RSS (`RssFile`, `RssShmem`) is
    pages of files it maps (shared libraries, and the embedded search index's SQLite
    database, which its connections map with mmap_size=256 MB: every page of search.db a
    query touches counts in RSS). Those pages belong to the file: the kernel drops them under
    pressure without writing anything, they are shared with any other process mapping the
    file, and they do not grow with the bundle."""
    fields = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(("VmRSS:", "RssAnon:")):
                name, value, _ = line.split()
                fields[name] = int(value) * 1024
    return fields["VmRSS:"], fields["RssAnon:"]


async def measured(
    work: Callable[[], Awaitable[Any]],
) -> tuple[float, tuple[int, int, int], Any, float]:
    """Seconds, peak growth of RSS, of its anonymous part and of its file-backed part
    (bytes, each its own peak), the result of `work()`, and the CPU seconds of this process
    meanwhile (all its threads: on a loaded machine the steadier figure)."""
    import gc

    gc.collect()
    base = rss_bytes()
    peak = [base[0], base[1], base[0] - base[1]]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            now = rss_bytes()
            peak[0], peak[1] = max(peak[0], now[0]), max(peak[1], now[1])
            peak[2] = max(peak[2], now[0] - now[1])
            stop.wait(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start, cpu = time.perf_counter(), time.process_time()
    try:
        result = await work()
    finally:
        elapsed = time.perf_counter() - start
        stop.set()
        sampler.join()
    now = rss_bytes()
    grew = (
        max(peak[0], now[0]) - base[0],
        max(peak[1], now[1]) - base[1],
        max(peak[2], now[0] - now[1]) - (base[0] - base[1]),
    )
    return elapsed, grew, result, time.process_time() - cpu


def memory(grew: tuple[int, int, int]) -> str:
    rss, anon, files = (b / 2**20 for b in grew)
    return f"peak RSS +{rss:6.1f} MB (anonymous +{anon:6.1f} MB, file-backed +{files:6.1f} MB)"


async def load(db: Any, search: Any, n: int, index: bool = True) -> None:
    from services.catalog import service as catalog
    from shared.security import SYSTEM

    gen = CaseGenerator(seed=16)
    start = time.perf_counter()
    for done in range(0, n, PAGE):
        async with db.transaction() as s:
            await catalog.ingest_cases(s, gen.batch(min(PAGE, n - done)), SYSTEM)
    loaded = time.perf_counter()
    if index:
        await search.drain_outbox()
        await search.backend.refresh()
    print(
        f"loaded {n:,} cases in {loaded - start:.1f} s, indexed in "
        f"{time.perf_counter() - loaded:.1f} s",
        flush=True,
    )


async def raw_baseline(url: str, out: Path) -> int:
    """Every case row, every column, by the raw driver, as JSONL (orjson)."""
    count = 0
    with out.open("wb") as fh:
        if url.startswith("sqlite"):
            import sqlite3

            conn = sqlite3.connect(url.split("///", 1)[1])
            try:
                cur = conn.execute("select * from failure_case")
                names = [d[0] for d in cur.description]
                while rows := cur.fetchmany(PAGE):
                    lines = (orjson.dumps(dict(zip(names, r, strict=True))) for r in rows)
                    fh.write(b"\n".join(lines) + b"\n")
                    count += len(rows)
            finally:
                conn.close()
        else:
            import asyncpg

            conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
            try:
                async with conn.transaction():
                    cur = await conn.cursor("select * from failure_case")
                    while rows := await cur.fetch(PAGE):
                        fh.write(b"".join(orjson.dumps(dict(r), default=str) + b"\n" for r in rows))
                        count += len(rows)
            finally:
                await conn.close()
    return count


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backend", choices=("embedded", "real"), default="embedded")
    ap.add_argument("--cases", type=int, default=100_000)
    ap.add_argument("--profiles", default="internal,partner,public")
    ap.add_argument(
        "--query",
        default="",
        help="the bundle's query; none (the default) reads the catalog and never the index,"
        " which is then not built",
    )
    args = ap.parse_args()

    from services.auth.service import AuthService
    from services.search.service import SearchService
    from services.sharing.anonymise import Pseudonyms
    from services.sharing.bundle import collector_settled, write_bundle
    from shared.db import Database
    from shared.migrate import upgrade_async
    from shared.security import SYSTEM
    from shared.settings import Settings

    data_dir = Path(tempfile.mkdtemp(prefix="failcat-bench-bundles-"))
    if args.backend == "embedded":
        settings = Settings(data_dir=data_dir)
    else:
        settings = Settings(
            data_dir=data_dir,
            database_url=await fresh_postgres(postgres_url()),
            search_url=opensearch_url(),
            search_index=f"failcat-bench-{secrets.token_hex(4)}",
        )
    await upgrade_async(settings.catalog_url)
    db = Database(settings.catalog_url)
    search = await SearchService.start(settings, db)
    try:
        await load(db, search, args.cases, index=bool(args.query))
        async with db.transaction() as s:
            ring = await AuthService(settings, db).key_store.load(s)
        [key] = ring.signing_keys.keys
        pseudonyms = Pseudonyms(secrets.token_bytes(32))
        # Modules an export imports on first use (the annotation service brings numpy) are
        # loaded before RSS is measured: their size does not grow with the bundle.
        import services.annotation.service  # noqa: F401

        print(
            f"backend {args.backend}, {args.cases:,} cases, query {args.query!r} (loaded machine)"
        )
        rates: dict[str, float] = {}
        for profile in args.profiles.split(","):
            out = data_dir / f"{profile}.tar.gz"

            async def work(profile: str = profile, out: Path = out) -> Any:
                with collector_settled():  # as the command does around its export
                    return await write_bundle(
                        search,
                        db,
                        SYSTEM,
                        args.query,
                        profile,
                        out,
                        issuer="bench",
                        kid=ring.signing_kid,
                        key=key,
                        pseudonyms=pseudonyms,
                    )

            seconds, grew, written, cpu = await measured(work)
            cases = written.manifest["counts"]["cases"]
            rates[profile] = cases / seconds
            print(
                f"{profile:>9}: {cases:>7,} cases in {seconds:6.2f} s = "
                f"{cases / seconds:8,.0f} cases/s, {memory(grew)}, "
                f"{out.stat().st_size / 2**20:.1f} MB, {cpu / cases * 1e6:.0f} us CPU/case",
                flush=True,
            )
        raw = data_dir / "raw.jsonl"
        seconds, grew, count, cpu = await measured(lambda: raw_baseline(settings.catalog_url, raw))
        print(
            f"{'raw':>9}: {count:>7,} rows  in {seconds:6.2f} s = {count / seconds:8,.0f} rows/s, "
            f"{memory(grew)}, "
            f"{raw.stat().st_size / 2**20:.1f} MB, {cpu / count * 1e6:.0f} us CPU/row",
            flush=True,
        )
        for profile, rate in rates.items():
            print(f"{profile:>9} / raw: {rate / (count / seconds):.2f}")
    finally:
        if args.backend == "real":
            await search.backend.drop()
        await search.close()
        await db.dispose()
        if args.backend == "real":  # 100,000 cases are 260 MB of the shared Postgres
            from benchmarks.suites import drop_postgres

            await drop_postgres(settings.catalog_url)


if __name__ == "__main__":
    asyncio.run(main())
