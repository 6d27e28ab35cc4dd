"""Search end to end over HTTP (REST and GraphQL, with a token, hits hydrated) against the
engine alone doing the same work, in one run.

Usage:
  python -m benchmarks.search_e2e --backend embedded --cases 20000
  python -m benchmarks.search_e2e --backend opensearch --cases 20000   # Postgres + OpenSearch
  python -m benchmarks.search_e2e --reuse /tmp/failcat-search-e2e-xxxx   # measure again
  options: --queries N (default 200), --url OPENSEARCH_URL, --database-url POSTGRES_URL

What it does:
1. Serves failcat (`failcat serve`, its own process) on a fresh catalog and index, and ingests
   --cases generated cases (benchmarks/generator.py: real incident write-ups as text) through
   the bulk REST route; waits until the indexer has made all of them searchable.
2. Runs one query mix (two full-text words OR'ed + a severity filter, facets model,
   failure_mode, status, the first 20 hits) four ways, alternating per query:
     rest     GET /search/v1/cases, hits hydrated with their cases (what the API answers)
     graphql  POST /graphql `search { hits { case {...} } facets }`
              (both over aiohttp, as opensearch-py sends the engine's, answers parsed)
     service  SearchService.search in this process on the same index: failcat's search
              without HTTP, token and hydration
     engine   OpenSearch: the same compiled body sent straight to the node (opensearch-py);
              embedded: hand-written SQL on the same FTS5 index (the MATCH, the filter, the
              facet counts and the top 20 by bm25), no failcat code on the path.
3. Prints p50/p90/p99 per way and the p50 ratios rest/engine and graphql/engine.
4. Stages (--stages N, OpenSearch): the REST route's steps one by one in this process, timed
   with perf_counter_ns (p50 each): compile, engine, answer parsed, session begun, hits
   hydrated and rendered (with the audit entry, on Postgres), commit, response encoded: what a
   served search spends beyond the engine, step by step (HTTP and the token check are the
   rest).
5. Browsing (--browse N): REST with no query and with one filter, facets on, p95 printed
   (issue 15: a search page under 300 ms p95 at 100,000 embedded cases).
Targets (issue 9): OpenSearch end to end <= 2x the engine; embedded service <= 1.5x raw FTS5.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import time
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import orjson
from sqlalchemy import text

from benchmarks.common import (
    fresh_postgres,
    migrated_env,
    opensearch_url,
    postgres_url,
    served,
    token,
)
from benchmarks.generator import CaseGenerator
from benchmarks.search import Documents, line, pct

FACETS = ["model", "failure_mode", "status"]
GRAPHQL = """query($q: String!, $facets: [String!]) {
  search(query: $q, facets: $facets, first: 20) {
    total
    hits { score case { id title severity status model { name } } }
    facets { field buckets { value count } }
  }
}"""


def queries(count: int) -> list[str]:
    words = Documents(seed=11).query_words(count * 2)
    return [
        f"({words[(2 * i) % len(words)]} OR {words[(2 * i + 1) % len(words)]}) severity:<=S2"
        for i in range(count)
    ]


def ingest(base: str, headers: dict[str, str], n: int, *, write: bool = True) -> None:
    """Ingest n cases (unless `write` is false) and wait until n are searchable."""
    gen = CaseGenerator(seed=5)
    with httpx.Client(base_url=base, headers=headers, timeout=300) as client:
        for start in range(0, n if write else 0, 1000):
            body = orjson.dumps(gen.batch(min(1000, n - start)))
            client.post("/catalog/v1/cases:bulk", content=body).raise_for_status()
        deadline = time.monotonic() + 1200
        while time.monotonic() < deadline:
            total = searchable(client)
            if total >= n:
                return
            time.sleep(0.5)
    raise RuntimeError(f"only {total} of {n} cases searchable after 20 minutes")


def searchable(client: httpx.Client) -> int:
    """How many cases the index holds: the status facet's counts, which are exact (a total
    stops at 10,000, and every case has a status)."""
    body = client.get("/search/v1/cases", params={"q": "", "first": 1, "facets": "status"}).json()
    return sum(b["count"] for f in body["facets"] for b in f["buckets"])


class RawFts:
    """The embedded engine without failcat: the search database opened directly, and the
    query written by hand as a person who knows FTS5 would write it."""

    def __init__(self, data_dir: Path) -> None:
        path = next(data_dir.rglob("search*.db"))
        self.conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)

    def run(self, w1: str, w2: str) -> None:
        match = f"{w1} OR {w2}"
        cur = self.conn.cursor()
        cur.execute("DROP TABLE IF EXISTS temp.hits")
        cur.execute(
            "CREATE TEMP TABLE hits AS SELECT d.pk FROM doc_fts f JOIN doc d ON d.pk = f.rowid "
            "WHERE doc_fts MATCH ? AND d.severity_rank <= 2",
            (match,),
        )
        for field in FACETS:
            cur.execute(
                f"SELECT d.{field}, count(*) FROM temp.hits h JOIN doc d ON d.pk = h.pk "
                f"GROUP BY d.{field} ORDER BY count(*) DESC LIMIT 10"
            ).fetchall()
        cur.execute(
            "SELECT d.id, -bm25(doc_fts) AS score FROM doc_fts JOIN doc d ON d.pk = doc_fts.rowid "
            "WHERE doc_fts MATCH ? AND d.pk IN (SELECT pk FROM temp.hits) "
            "ORDER BY score DESC LIMIT 20",
            (match,),
        ).fetchall()


async def in_process_service(env: dict[str, str]) -> Any:
    """The same index opened by a SearchService in this process: failcat's search without
    HTTP, token or hydration (and, on OpenSearch, the compiler of the engine's body)."""
    from services.search.service import SearchService
    from shared.db import Database
    from shared.settings import Settings

    names = {"FAILCAT_DATABASE_URL": "database_url", "FAILCAT_SEARCH_URL": "search_url"}
    names["FAILCAT_SEARCH_INDEX"] = "search_index"
    given = {field: env[var] for var, field in names.items() if var in env}
    settings = Settings(data_dir=Path(env["FAILCAT_DATA_DIR"]), **given)
    db = Database(settings.catalog_url)
    return await SearchService.start(settings, db)


async def measure(base: str, headers: dict[str, str], env: dict[str, str], args: Any) -> None:
    from shared.security import Principal, Sensitivity

    caller = Principal("bench", "bench", clearance=Sensitivity.CONFIDENTIAL)
    mix = queries(args.queries)
    raw = RawFts(Path(env["FAILCAT_DATA_DIR"])) if args.backend == "embedded" else None
    service = await in_process_service(env)
    times: dict[str, list[float]] = {"rest": [], "graphql": [], "service": [], "engine": []}
    # REST and GraphQL go through aiohttp, the HTTP client the engine's way goes through
    # (opensearch-py's async transport): httpx spent ~2.5 ms more than aiohttp on the same
    # request here (3.8 against 1.6 ms for /healthz), the client's cost, not the API's. Each
    # way reads and parses its whole answer, as opensearch-py does the engine's.
    async with (
        httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as client,
        aiohttp.ClientSession(base, headers=headers) as session,
    ):

        async def rest(q: str) -> None:
            params = {"q": q, "facets": ",".join(FACETS)}
            async with session.get("/search/v1/cases", params=params) as resp:
                body = orjson.loads(await resp.read())
                assert resp.status == 200, body

        async def graphql(q: str) -> None:
            variables = {"q": q, "facets": FACETS}
            payload = {"query": GRAPHQL, "variables": variables}
            async with session.post("/graphql", json=payload) as resp:
                body = orjson.loads(await resp.read())
                assert "errors" not in body, str(body)[:500]

        async def in_process(q: str) -> None:
            await service.search(caller, q, facets=FACETS, first=20)

        for round_ in range(2):  # the first round warms caches and is not counted
            for q in mix:
                for way, run in (("rest", rest), ("graphql", graphql), ("service", in_process)):
                    t0 = time.perf_counter()
                    await run(q)
                    if round_:
                        times[way].append((time.perf_counter() - t0) * 1000)
                if raw is not None:
                    w1, w2 = q[1:].split(")")[0].split(" OR ")
                    t0 = time.perf_counter()
                    raw.run(w1, w2)
                else:  # compiling is failcat's work, not the engine's: done before timing
                    body = service.backend.compiler.search(
                        service.build_request(caller, q, facets=FACETS, first=20)
                    )
                    t0 = time.perf_counter()
                    await service.backend.raw_search(body)
                if round_:
                    times["engine"].append((time.perf_counter() - t0) * 1000)
        browse_times = await browse(client, args.browse) if args.browse else {}
    if args.stages and raw is None:
        await stages(service, caller, mix, args.stages)
    await service.close()
    print(f"query latency over HTTP, {len(mix)} queries (ms):")
    for way, values in times.items():
        print(line(way, values))
    engine = statistics.median(times["engine"])
    for way in ("rest", "graphql", "service"):
        print(f"  p50 {way}/engine ratio: {statistics.median(times[way]) / engine:.2f}")
    if browse_times:
        print(f"browsing over REST, facets {','.join(FACETS)} on, {args.browse} each (ms):")
        for way, values in browse_times.items():
            print(line(way, values) + f"  p95={pct(values, 95):7.2f} ms")


async def stages(service: Any, caller: Any, mix: list[str], count: int) -> None:
    """The REST route (services/search/api.py) taken apart, each step timed on its own."""
    from services.catalog.hydration import case_answers
    from shared.audit import audit

    backend, db = service.backend, service.db
    times: dict[str, list[float]] = {}

    def lap(name: str, t0: int) -> int:
        now = time.perf_counter_ns()
        times.setdefault(name, []).append((now - t0) / 1e6)
        return now

    for round_ in range(2):  # the first round warms caches and is not counted
        for q in (mix * (count // len(mix) + 1))[:count]:
            t = t0 = time.perf_counter_ns()
            request = service.build_request(caller, q, facets=FACETS, first=20)
            body = backend.compiler.search(request)
            t = lap("compile", t)
            answer = await backend.raw_search(body)
            t = lap("engine", t)
            result = backend.compiler.result(request, answer)
            page = result.hits[:20]
            t = lap("answer parsed", t)
            async with db.transaction() as session:
                await session.execute(text("SELECT 1"))
                t = lap("session begun", t)
                ids = [h.id for h in page]
                details = {"query": q, "hits": result.total, "ids": ids}
                # Staged first, as the route does: on Postgres it rides along the hydration.
                audit(session, caller, "cases.search", None, details=details, read=True)
                cases = await case_answers(session, ids, caller)
                t = lap("hydrated+render", t)
            t = lap("commit", t)
            orjson.dumps({"hits": [{"id": h.id, "case": cases.get(h.id)} for h in page]})
            lap("encoded", t)
            lap("all", t0)
        if not round_:
            times.clear()
    print(f"REST route stages in process, {count} searches (p50, ms):")
    for name, values in times.items():
        print(f"  {name:16} {statistics.median(values):7.2f}")


# What a search page asks first: everything (no query), and one filter, facets on.
BROWSE = {"unfiltered": "", "one filter": "severity:S1"}


async def browse(client: httpx.AsyncClient, count: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {way: [] for way in BROWSE}
    for round_ in range(2):  # the first round warms caches and is not counted
        for _ in range(count if round_ else 2):
            for way, q in BROWSE.items():
                params = {"q": q, "facets": ",".join(FACETS)}
                t0 = time.perf_counter()
                (await client.get("/search/v1/cases", params=params)).raise_for_status()
                if round_:
                    times[way].append((time.perf_counter() - t0) * 1000)
    return times


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", choices=["embedded", "opensearch"], default="embedded")
    ap.add_argument("--cases", type=int, help="default 20,000")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--url", help="OpenSearch URL (default: infra/scripts/opensearch.sh url)")
    ap.add_argument("--database-url")
    ap.add_argument(
        "--browse",
        type=int,
        default=30,
        help="REST searches of each browse kind (unfiltered, one filter; facets on); 0: none",
    )
    ap.add_argument(
        "--stages",
        type=int,
        default=100,
        help="searches taken apart into the REST route's steps (OpenSearch only); 0: none",
    )
    ap.add_argument(
        "--reuse",
        type=Path,
        metavar="DATA_DIR",
        help="measure again on an earlier run's data dir (its bench-env.json), without ingesting",
    )
    args = ap.parse_args()
    if args.reuse:
        env = orjson.loads((args.reuse / "bench-env.json").read_bytes())
        args.backend = "opensearch" if "FAILCAT_SEARCH_URL" in env else "embedded"
        with served(env) as base:
            headers = {"Authorization": f"Bearer {token(base, args.reuse)}"}
            # --cases: wait until the indexer has that many (a run stopped mid-way).
            await asyncio.to_thread(ingest, base, headers, args.cases or 0, write=False)
            print(f"backend={args.backend}: reused {args.reuse}")
            await measure(base, headers, env, args)
        return
    args.cases = args.cases or 20_000
    extra: dict[str, str] = {}
    if args.backend == "opensearch":
        import secrets

        url = args.url or opensearch_url()  # once, before anything is timed
        extra = {
            "FAILCAT_DATABASE_URL": await fresh_postgres(args.database_url or postgres_url()),
            "FAILCAT_SEARCH_URL": url,
            "FAILCAT_SEARCH_INDEX": f"failcat-e2e-{secrets.token_hex(3)}",
        }
    env, data_dir = migrated_env("failcat-search-e2e-", **extra)
    # Kept after the run (a temp dir, a fresh database and index): to profile against again.
    (data_dir / "bench-env.json").write_text(orjson.dumps(env).decode())
    with served(env) as base:
        headers = {"Authorization": f"Bearer {token(base, data_dir)}"}
        t0 = time.perf_counter()
        await asyncio.to_thread(ingest, base, headers, args.cases)
        print(
            f"backend={args.backend}: {args.cases:,} cases ingested and searchable "
            f"in {time.perf_counter() - t0:.1f} s"
        )
        await measure(base, headers, env, args)


if __name__ == "__main__":
    asyncio.run(main())
