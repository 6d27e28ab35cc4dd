"""Search benchmark: query latency (service vs. direct), and index lag under ingestion.

Usage:
  python -m benchmarks.search --backend opensearch --url http://127.0.0.1:9200 --cases 1000000
  python -m benchmarks.search --backend embedded --cases 100000
  options: --queries N (per kind, default 200), --lag-seconds S (default 20, 0 to skip),
           --database-url URL (catalog for the lag run; default SQLite in a temp dir),
           --keep (keep the index afterwards)

What it does, in one run:
1. Generates --cases search documents and bulk-loads them into a fresh index (alias
   failcat-bench-<hex>). Text is sampled from the public corpora in /work/shared/corpora
   (real titles and sentences), facets from fixed distributions, so queries have realistic
   selectivity. (The ingestion benchmark has no shared generator yet; this one is seeded.)
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
import json
import random
import re
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from services.search.service import SearchService
from shared.security import Principal, Sensitivity

CORPORA = Path("/work/shared/corpora")
CALLER = Principal("bench", "bench", team="team-3", clearance=Sensitivity.CONFIDENTIAL)


# ---- document generator ---------------------------------------------------------------------


class Generator:
    def __init__(self, seed: int = 7) -> None:
        self.rng = random.Random(seed)
        self.titles: list[str] = []
        self.sentences: list[str] = []
        for line in (CORPORA / "aiid_incidents.jsonl").open(encoding="utf-8"):
            rec = json.loads(line)
            self.titles.append(rec["title"])
            self.sentences += _sentences(rec.get("description") or "")
        for line in (CORPORA / "avid_reports.jsonl").open(encoding="utf-8"):
            rec = json.loads(line)
            self.titles.append(rec["problemtype"]["description"]["value"])
            self.sentences += _sentences((rec.get("description") or {}).get("value") or "")
        for line in (CORPORA / "aiaaic_incidents.jsonl").open(encoding="utf-8"):
            rec = json.loads(line)
            if rec.get("Headline"):
                self.titles.append(rec["Headline"])
        self.models = [f"model-{i}" for i in range(50)]
        self.modes = [
            f"{p}.{c}"
            for p in (
                "data_quality",
                "distribution_shift",
                "label_noise",
                "adversarial_input",
                "robustness",
                "fairness",
                "safety",
                "latency",
                "integration",
            )
            for c in ("a", "b", "c", "d")
        ]
        self.base = datetime(2025, 1, 1, tzinfo=UTC)

    def document(self, i: int) -> dict[str, Any]:
        r = self.rng
        mode = r.choice(self.modes)
        return {
            "id": f"bench-{i:08d}",
            "revision": 1,
            "title": r.choice(self.titles),
            "summary": " ".join(r.choice(self.sentences) for _ in range(r.randint(2, 5))),
            "impact": None,
            "writeup_hypothesis": r.choice(self.sentences) if i % 4 == 0 else None,
            "writeup_experiments": None,
            "writeup_results": None,
            "writeup_rationale": None,
            "model": r.choice(self.models),
            "model_version": f"{r.randint(1, 10)}.0",
            "data_source": f"source-{r.randint(0, 19)}",
            "failure_mode": mode,
            "failure_mode_parent": mode.split(".")[0],
            "severity": f"S{min(4, int(r.expovariate(0.6)))}",
            "status": r.choice(
                [
                    "new",
                    "triaged",
                    "confirmed",
                    "in_remediation",
                    "resolved",
                    "wont_fix",
                    "duplicate",
                ]
            ),
            "team": f"team-{r.randint(0, 7)}" if r.random() < 0.8 else None,
            "tags": r.sample([f"tag-{t}" for t in range(30)], r.randint(0, 3)),
            "sensitivity": r.choices(
                ["public", "internal", "confidential", "restricted"], [20, 60, 15, 5]
            )[0],
            "environment": {
                "region": r.choice(
                    [
                        "eu-west-1",
                        "us-east-1",
                        "us-west-2",
                        "ap-south-1",
                        "eu-central-1",
                        "sa-east-1",
                    ]
                ),
                "app_version": f"7.{r.randint(0, 9)}",
            },
            "occurred_at": (self.base + timedelta(seconds=r.randint(0, 400 * 86400))).isoformat(),
            "received_at": None,
            "confidence": round(r.random(), 3),
            "latency_ms": round(r.expovariate(1 / 200), 1),
            "group_id": f"g-{r.randint(0, 99999)}",
            "merged_into_id": None,
        }

    def documents(self, n: int, start: int = 0) -> Iterator[dict[str, Any]]:
        for i in range(start, start + n):
            yield self.document(i)

    def query_words(self, count: int) -> list[str]:
        """Words of middling frequency in titles: selective but not empty."""
        freq: dict[str, int] = {}
        for t in self.titles:
            for w in set(re.findall(r"[a-z]{5,}", t.lower())):
                freq[w] = freq.get(w, 0) + 1
        mid = sorted(w for w, c in freq.items() if 8 <= c <= 60)
        return self.rng.sample(mid, min(count, len(mid)))

    def phrases(self, count: int) -> list[str]:
        out = []
        while len(out) < count:
            words = re.findall(r"[A-Za-z]{4,}", self.rng.choice(self.titles))
            if len(words) >= 2:
                k = self.rng.randrange(len(words) - 1)
                out.append(f"{words[k]} {words[k + 1]}")
        return out


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+", text) if 30 < len(s.strip()) < 400]


# ---- the query mix --------------------------------------------------------------------------


def query_mix(gen: Generator, per_kind: int) -> list[tuple[str, dict[str, Any]]]:
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
        query = f"-tags:tag-{i % 30} team:*"
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
    backend = service.backend
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
        if direct:
            from services.search.backends.opensearch import compile_search

            body = compile_search(req)
            t2 = time.perf_counter()
            await backend.raw_search(body)  # type: ignore[attr-defined]
            bucket["direct"].append((time.perf_counter() - t2) * 1000)
    return timings


# ---- index lag ------------------------------------------------------------------------------


async def measure_lag(
    service: SearchService, gen: Generator, seconds: float, rate: int = 1000, batch: int = 50
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
        url = args.url
        if not url:
            import subprocess

            url = subprocess.run(  # noqa: ASYNC221 - once, before anything is timed
                ["bash", "infra/scripts/opensearch.sh", "url"],
                check=True,
                capture_output=True,
                text=True,
            ).stdout.strip()
        extra |= {"search_url": url, "search_index": f"failcat-bench-{secrets.token_hex(3)}"}
    if args.database_url:
        extra["database_url"] = args.database_url
    settings = Settings(**extra)
    await upgrade_async(settings.catalog_url)
    db = Database(settings.catalog_url)
    service = await SearchService.start(settings, db)
    backend = service.backend
    gen = Generator()
    print(f"backend={args.backend} cases={args.cases:,} index={settings.search_index}")

    t0 = time.perf_counter()
    chunk: list[dict[str, Any]] = []
    loaded = 0
    slow_refresh = getattr(backend, "client", None)
    if slow_refresh is not None:  # bulk load without refreshes, as a reindex does
        await backend.client.indices.put_settings(  # type: ignore[attr-defined]
            index=backend.alias, body={"index": {"refresh_interval": "-1"}}
        )  # type: ignore[attr-defined]
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
    if slow_refresh is not None:
        await backend.client.indices.put_settings(  # type: ignore[attr-defined]
            index=backend.alias, body={"index": {"refresh_interval": "1s"}}
        )  # type: ignore[attr-defined]
        await backend.client.indices.forcemerge(  # type: ignore[attr-defined]
            index=backend.alias, max_num_segments=1, request_timeout=3600
        )  # type: ignore[attr-defined]
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

    if not args.keep and hasattr(backend, "drop"):
        await backend.drop()  # type: ignore[attr-defined]
    await service.close()
    await db.dispose()
    if not args.keep:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
