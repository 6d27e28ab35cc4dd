"""Search benchmark: query latency (service vs. direct), and index lag under ingestion.

Usage:
  python -m benchmarks.search --backend opensearch --url http://127.0.0.1:9200 --cases 1000000
  python -m benchmarks.search --backend embedded --cases 100000
  options: --queries N (per kind, default 200), --lag-seconds S (default 20, 0 to skip),
           --database-url URL (catalog for the lag run; default SQLite in a temp dir),
           --keep (keep the index afterwards)

What it does, in one run:
1. Generates --cases search documents and bulk-loads them into a fresh index (alias
   failcat-bench-<hex>). Cases come from benchmarks/generator.py (CaseGenerator, the
   ingestion benchmark's seeded generator: real incident write-ups as text, Zipf-distributed
   models and failure modes), turned into search documents as the catalog feed does; only
   status (curation, not capture) is drawn here. Query words are title words found in 1-5%
   of the generator's texts, so queries have realistic selectivity.
2. Runs a fixed query mix, each query through SearchService.search (parse, compile, send,
   parse the answer: what an API call costs minus HTTP) and, for OpenSearch, the same
   compiled body sent straight to OpenSearch with the same client, alternating the two:
     selective  - two full-text words + severity/region filters + facets model,
                  failure_mode, status
     phrase     - an exact two-word phrase + facets severity, team, tags
     heatmap    - a full-text word, heatmap failure_mode x model_version + histogram
     deep_page  - sort -occurred_at, the page after 100 pages of 20 (search_after cursor)
3. Index lag: ingests 1,000 cases/s into the catalog (case + outbox row per transaction
   batch) with the indexer running, and measures commit -> searchable per batch.
Prints p50/p90/p99 per kind and overall, the service/direct p50 ratio, and the lag.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import opensearch_url
from benchmarks.generator import WORDS, CaseGenerator
from services.search.backends.opensearch import OpenSearchBackend
from services.search.service import SearchService
from shared.security import Principal, Sensitivity

# A cross-team engineer: every generated case has a team, so a team-bound caller would see
# an eighth of the corpus and the queries would measure visibility rather than search.
CALLER = Principal("bench", "bench", team=None, clearance=Sensitivity.CONFIDENTIAL)


# ---- documents -----------------------------------------------------------------------------

# Curation the capture generator does not model (a case is captured as "new"); drawn here so
# status filters and facets have something to select.
STATUSES = ["new", "triaged", "confirmed", "in_remediation", "resolved", "wont_fix", "duplicate"]
STATUS_WEIGHTS = [30, 20, 15, 10, 15, 5, 5]
TAGS = ["refunds", "night", "new-merchant", "mobile", "holiday", "vip"]  # the generator's


class Documents:
    """Search documents made from benchmarks/generator.py cases (the ingestion benchmark's
    generator), shaped as the catalog's search feed shapes a stored case."""

    def __init__(self, seed: int = 7) -> None:
        self.cases = CaseGenerator(seed=seed)
        self.rng = random.Random(seed)

    def document(self, i: int) -> dict[str, Any]:
        case = self.cases.case()
        mode = case["failure_mode"]
        return {
            "id": f"bench-{i:08d}",
            "revision": 1,
            "title": case["title"],
            "summary": case["summary"],
            "impact": None,
            "writeup_hypothesis": None,
            "writeup_experiments": None,
            "writeup_results": None,
            "writeup_rationale": None,
            "model": case["model"]["name"],
            "model_version": case["model"]["version"],
            "data_source": case["data_source"],
            "failure_mode": mode,
            "failure_mode_parent": mode.split(".")[0],
            "severity": case["severity"],
            "status": self.rng.choices(STATUSES, STATUS_WEIGHTS)[0],
            "team": case["team"],
            "tags": case["tags"],
            "sensitivity": case["sensitivity"],
            "environment": case["environment"],
            "occurred_at": case["occurred_at"],
            "received_at": case["occurred_at"],
            "confidence": case["confidence"],
            "latency_ms": case["latency_ms"],
            "group_id": f"g-{self.rng.randrange(100_000)}",
            "merged_into_id": None,
        }

    def documents(self, n: int, start: int = 0) -> Iterator[dict[str, Any]]:
        for i in range(start, start + n):
            yield self.document(i)

    def _titles(self) -> list[str]:
        return [t for t, _ in self.cases.texts] or [" ".join(WORDS)]

    def query_words(self, count: int) -> list[str]:
        """Title words found in 1-5% of the generator's texts: selective but not empty."""
        texts = self.cases.texts or [(" ".join(WORDS), "")]
        df: dict[str, int] = {}
        for title, summary in texts:
            for w in set(re.findall(r"[a-z]{5,}", f"{title} {summary}".lower())):
                df[w] = df.get(w, 0) + 1
        in_titles = {w for t in self._titles() for w in re.findall(r"[a-z]{5,}", t.lower())}
        lo, hi = 0.01 * len(texts), 0.05 * len(texts)
        mid = sorted(w for w in in_titles if lo <= df.get(w, 0) <= hi) or sorted(in_titles)
        return self.rng.sample(mid, min(count, len(mid)))

    def phrases(self, count: int) -> list[str]:
        out = []
        titles = self._titles()
        while len(out) < count:
            words = re.findall(r"[A-Za-z]{4,}", self.rng.choice(titles))
            if len(words) >= 2:
                k = self.rng.randrange(len(words) - 1)
                out.append(f"{words[k]} {words[k + 1]}")
        return out


# ---- the query mix --------------------------------------------------------------------------


def query_mix(gen: Documents, per_kind: int) -> list[tuple[str, dict[str, Any]]]:
    words = gen.query_words(per_kind * 2)
    phrases = gen.phrases(per_kind)
    regions = ["eu-west-1", "us-east-1", "ap-south-1"]
    mix: list[tuple[str, dict[str, Any]]] = []
    for i in range(per_kind):
        w1, w2 = words[(2 * i) % len(words)], words[(2 * i + 1) % len(words)]
        mix.append(
            (
                "selective",
                {
                    "query": f"({w1} OR {w2}) severity:<=S2 env.region:{regions[i % 3]}",
                    "facets": ["model", "failure_mode", "status"],
                },
            )
        )
        mix.append(("phrase", {"query": f'"{phrases[i]}"', "facets": ["severity", "team", "tags"]}))
        mix.append(
            (
                "heatmap",
                {
                    "query": f"{w1} -status:resolved",
                    "heatmap": ["failure_mode", "model_version"],
                    "histogram": "week",
                    "first": 10,
                },
            )
        )
    return mix


async def deep_cursors(service: SearchService, count: int) -> list[dict[str, Any]]:
    """Cursors 100 pages (of 20) deep, each for a different tag filter."""
    out = []
    for i in range(count):
        query = f"-tags:{TAGS[i % len(TAGS)]} team:*"
        after = None
        for _ in range(100):
            res = await service.search(CALLER, query, first=20, after=after, sort="-occurred_at")
            after = res.next_cursor
            if after is None:
                break
        if after:
            out.append({"query": query, "first": 20, "after": after, "sort": "-occurred_at"})
    return out


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]


def line(name: str, values: list[float]) -> str:
    return (
        f"  {name:<22} n={len(values):<5} p50={pct(values, 50):7.2f} ms  "
        f"p90={pct(values, 90):7.2f} ms  p99={pct(values, 99):7.2f} ms"
    )


async def measure_queries(
    service: SearchService, mix: list[tuple[str, dict[str, Any]]], direct: bool
) -> dict[str, dict[str, list[float]]]:
    timings: dict[str, dict[str, list[float]]] = {}
    # The engine alone is timed on OpenSearch only: its compiled body replayed as it is.
    engine = service.backend if isinstance(service.backend, OpenSearchBackend) else None
    for kind, kw in mix:
        req = service.build_request(
            CALLER,
            kw["query"],
            facets=kw.get("facets", ()),
            first=kw.get("first", 20),
            after=kw.get("after"),
            sort=kw.get("sort", "relevance"),
            histogram=kw.get("histogram"),
            heatmap=kw.get("heatmap"),
        )
        t0 = time.perf_counter()
        await service.search(
            CALLER,
            kw["query"],
            facets=kw.get("facets", ()),
            first=kw.get("first", 20),
            after=kw.get("after"),
            sort=kw.get("sort", "relevance"),
            histogram=kw.get("histogram"),
            heatmap=kw.get("heatmap"),
        )
        t1 = time.perf_counter()
        bucket = timings.setdefault(kind, {"service": [], "direct": []})
        bucket["service"].append((t1 - t0) * 1000)
        if direct and engine is not None:
            body = engine.compiler.search(req)
            t2 = time.perf_counter()
            await engine.raw_search(body)
            bucket["direct"].append((time.perf_counter() - t2) * 1000)
    return timings


# ---- index lag ------------------------------------------------------------------------------


async def measure_lag(
    service: SearchService, gen: Documents, seconds: float, rate: int = 1000, batch: int = 50
) -> list[float]:
    """Write `rate` cases/s to the catalog (each batch one transaction with its outbox rows),
    run the indexer, and time commit -> searchable for every batch."""
    from sqlalchemy import insert

    from services.catalog.models import (
        DataSource,
        FailureCase,
        FailureGroup,
        Model,
        ModelVersion,
        Outbox,
    )
    from shared.ids import new_id

    now = datetime.now(UTC)
    ids = {"model": new_id(), "version": new_id(), "source": new_id()}
    async with service.db.transaction() as s:
        await s.execute(
            insert(Model).values(
                id=ids["model"], name=f"lag-{secrets.token_hex(3)}", created_at=now
            )
        )
        await s.execute(
            insert(ModelVersion).values(
                id=ids["version"], model_id=ids["model"], version="1.0", created_at=now
            )
        )
        await s.execute(
            insert(DataSource).values(
                id=ids["source"], name=f"lag-{secrets.token_hex(3)}", created_at=now
            )
        )
    indexer = asyncio.create_task(service.run_indexer())
    lags: list[float] = []
    pending: dict[str, float] = {}  # batch token -> commit time
    writing = True

    async def prober() -> None:
        # One search every 20 ms counts every pending batch at once (a tags facet), so the
        # measuring itself adds a fixed, small load.
        while writing or pending:
            tokens = list(pending)[:100]
            if tokens:
                query = " OR ".join(f"tags:{t}" for t in tokens)
                res = await service.search(CALLER, query, facets=["tags"], first=1)
                now_t = time.perf_counter()
                for b in res.facets["tags"]:
                    if b.value in pending and b.count >= batch:
                        lags.append((now_t - pending.pop(b.value)) * 1000)
            await asyncio.sleep(0.02)

    probe_task = asyncio.create_task(prober())
    interval = batch / rate
    start = time.perf_counter()
    k = 0
    while time.perf_counter() - start < seconds:
        token = f"lag{k}"
        t = datetime.now(UTC)
        groups, cases, outbox = [], [], []
        for i in range(batch):
            doc = gen.document(10_000_000 + k * batch + i)
            fp, case_id = secrets.token_hex(16), new_id()
            groups.append(
                {
                    "id": new_id(),
                    "fingerprint": fp,
                    "model_id": ids["model"],
                    "first_seen": t,
                    "last_seen": t,
                    "case_count": 1,
                    "sampled_out_count": 0,
                    "status": "open",
                }
            )
            cases.append(
                {
                    "id": case_id,
                    "model_id": ids["model"],
                    "model_version_id": ids["version"],
                    "data_source_id": ids["source"],
                    "occurred_at": t,
                    "received_at": t,
                    "source_key": "lag",
                    "fingerprint": fp,
                    "content_hash": secrets.token_hex(32),
                    "group_id": groups[-1]["id"],
                    "title": doc["title"],
                    "summary": doc["summary"],
                    "severity": doc["severity"],
                    "status": "new",
                    "tags": [token],
                    "sensitivity": "internal",
                    "team": None,
                    "revision": 1,
                    "updated_at": t,
                }
            )
            outbox.append({"case_id": case_id, "revision": 1, "created_at": t})
        async with service.db.transaction() as s:
            await s.execute(insert(FailureGroup), groups)
            await s.execute(insert(FailureCase), cases)
            await s.execute(insert(Outbox), outbox)
        pending[token] = time.perf_counter()
        k += 1
        await asyncio.sleep(max(0.0, start + k * interval - time.perf_counter()))
    elapsed = time.perf_counter() - start
    writing = False
    await asyncio.wait_for(probe_task, timeout=60)
    indexer.cancel()
    print(f"  ingested {k * batch} cases in {elapsed:.1f} s ({k * batch / elapsed:.0f}/s)")
    return lags


# ---- main -----------------------------------------------------------------------------------


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", choices=["embedded", "opensearch"], default="embedded")
    ap.add_argument("--url", help="OpenSearch URL (default: infra/scripts/opensearch.sh url)")
    ap.add_argument("--cases", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--lag-seconds", type=float, default=20)
    ap.add_argument("--database-url")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()

    from shared.db import Database
    from shared.migrate import upgrade_async
    from shared.settings import Settings

    tmp = Path(tempfile.mkdtemp(prefix="failcat-bench-"))
    extra: dict[str, Any] = {"data_dir": tmp, "indexer_poll_s": 0.02, "indexer_batch": 1000}
    if args.backend == "opensearch":
        url = args.url or opensearch_url()  # once, before anything is timed
        extra |= {"search_url": url, "search_index": f"failcat-bench-{secrets.token_hex(3)}"}
    if args.database_url:
        extra["database_url"] = args.database_url
    settings = Settings(**extra)
    await upgrade_async(settings.catalog_url)
    db = Database(settings.catalog_url)
    service = await SearchService.start(settings, db)
    backend = service.backend
    gen = Documents()
    print(f"backend={args.backend} cases={args.cases:,} index={settings.search_index}")

    t0 = time.perf_counter()
    chunk: list[dict[str, Any]] = []
    loaded = 0
    engine = backend if isinstance(backend, OpenSearchBackend) else None
    if engine is not None:  # bulk load without refreshes, as a reindex does
        await engine.client.indices.put_settings(
            index=engine.alias, body={"index": {"refresh_interval": "-1"}}
        )
    for doc in gen.documents(args.cases):
        chunk.append(doc)
        if len(chunk) == 5000:
            await backend.index(chunk)
            loaded += len(chunk)
            chunk = []
            if loaded % 100_000 == 0:
                print(
                    f"  loaded {loaded:,} ({loaded / (time.perf_counter() - t0):.0f}/s)", flush=True
                )
    await backend.index(chunk)
    if engine is not None:
        await engine.client.indices.put_settings(
            index=engine.alias, body={"index": {"refresh_interval": "1s"}}
        )
        await engine.client.indices.forcemerge(
            index=engine.alias, max_num_segments=1, request_timeout=3600
        )
    await backend.refresh()
    print(f"load: {args.cases:,} documents in {time.perf_counter() - t0:.1f} s")

    mix = query_mix(gen, args.queries)
    deep = await deep_cursors(service, max(10, args.queries // 4))
    mix += [("deep_page", kw) for kw in deep]
    direct = args.backend == "opensearch"
    await measure_queries(service, mix[:60], direct)  # warm-up
    random.Random(3).shuffle(mix)
    timings = await measure_queries(service, mix, direct)

    print("query latency (ms):")
    all_service: list[float] = []
    all_direct: list[float] = []
    for kind, t in timings.items():
        print(line(f"{kind} service", t["service"]))
        all_service += t["service"]
        if direct:
            print(line(f"{kind} direct", t["direct"]))
            all_direct += t["direct"]
    print(line("ALL service", all_service))
    if direct:
        print(line("ALL direct", all_direct))
        ratio = statistics.median(all_service) / statistics.median(all_direct)
        print(f"  p50 service/direct ratio: {ratio:.2f}")

    if args.lag_seconds > 0:
        print("index lag while ingesting 1,000 cases/s (commit -> searchable):")
        lags = await measure_lag(service, gen, args.lag_seconds)
        print(line("lag", lags))

    if args.keep:
        await service.close()
    else:
        await backend.drop()
    await db.dispose()
    if not args.keep:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
