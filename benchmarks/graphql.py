"""GraphQL overhead: 100 cases with nested fields through GraphQL versus the plain REST route,
and requests/s for Query.case(id), against `failcat serve` (uvicorn, embedded backend).

    python -m benchmarks.graphql [--rounds 200] [--seconds 5] [--concurrency 16]

1. 100 real incidents (../shared/corpora, AIID) are ingested through the bulk route (untimed);
2. GET /catalog/v1/cases?first=100 and a GraphQL query selecting the same data (every leaf
   field, model, version, data source, links, plus group and last revision) are timed
   `rounds` times each, alternately (so both see the same machine load); the median
   latencies and their ratio are printed (target: GraphQL <= 3x REST);
3. Query.case(id) is sent by `concurrency` keep-alive clients for `seconds`: requests/s.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time

import httpx
import orjson

from benchmarks.common import ROOT, migrated_env, served, token

sys.path.insert(0, str(ROOT))
from tests.corpus import aiid_cases

LIST = """query List($n: Int!) {
  cases(first: $n) {
    nodes {
      id revision externalId title summary occurredAt capturedAt receivedAt updatedAt
      environment input prediction expected confidence latencyMs signals failureMode
      taxonomyVersion severity impact status tags sensitivity team fingerprint contentHash
      mergedIntoId
      model { id name } modelVersion { id version } dataSource { name }
      links { kind url title } writeup { hypothesis experiments results rationale }
      provenance { source pipelineVersion capturedBy batchId }
      group { id status caseCount } lastRevision { revision actor createdAt }
    }
    pageInfo { hasNextPage endCursor }
  }
}"""
ONE = "query One($id: ID!) { case(id: $id) { id title severity status model { name } } }"


def timed(fns: tuple, rounds: int) -> list[float]:
    """Median latency of each of `fns`, called in turn `rounds` times."""
    samples: list[list[float]] = [[] for _ in fns]
    for _ in range(rounds):
        for fn, out in zip(fns, samples, strict=True):
            start = time.perf_counter()
            fn()
            out.append(time.perf_counter() - start)
    return [statistics.median(s) for s in samples]


async def case_rate(base: str, headers: dict, ids: list[str], seconds: float, conc: int) -> float:
    done = 0
    stop = time.perf_counter() + seconds

    async def worker(k: int) -> None:
        nonlocal done
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as c:
            i = k
            while time.perf_counter() < stop:
                resp = await c.post(
                    "/graphql", json={"query": ONE, "variables": {"id": ids[i % len(ids)]}}
                )
                assert resp.status_code == 200 and b'"errors"' not in resp.content, resp.text
                done += 1
                i += conc

    start = time.perf_counter()
    await asyncio.gather(*(worker(k) for k in range(conc)))
    return done / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()

    env, data_dir = migrated_env("failcat-bench-gql-")
    with served(env) as base:
        headers = {"Authorization": f"Bearer {token(base, data_dir)}"}
        cases = aiid_cases(100)
        for i, c in enumerate(cases):
            c["links"] = [{"kind": "ticket", "url": f"https://tickets.example/FC-{i}"}]
            c["writeup"] = {"hypothesis": c["summary"][:200]}
        with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
            resp = client.post(
                "/catalog/v1/cases:bulk",
                content=orjson.dumps(cases),
                headers={"Content-Type": "application/json"},
            )
            resp.raise_for_status()
            ids = [r["id"] for r in resp.json()["results"]]

            def rest() -> None:
                r = client.get("/catalog/v1/cases", params={"first": 100})
                assert r.status_code == 200 and len(r.json()["cases"]) == 100

            def graphql() -> None:
                r = client.post("/graphql", json={"query": LIST, "variables": {"n": 100}})
                body = r.json()
                assert "errors" not in body and len(body["data"]["cases"]["nodes"]) == 100

            timed((rest, graphql), 10)  # warm-up
            rest_s, gql_s = timed((rest, graphql), args.rounds)
        rate = asyncio.run(case_rate(base, headers, ids, args.seconds, args.concurrency))

    print(f"list 100 cases, REST    GET /catalog/v1/cases?first=100: {rest_s * 1000:7.2f} ms")
    print(f"list 100 cases, GraphQL cases(first: 100) nested:        {gql_s * 1000:7.2f} ms")
    print(f"GraphQL / REST: {gql_s / rest_s:.2f}x (target <= 3x)")
    print(
        f"Query.case(id): {rate:,.0f} requests/s ({args.concurrency} clients, one uvicorn "
        f"process, embedded SQLite)"
    )


if __name__ == "__main__":
    main()
