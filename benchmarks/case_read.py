"""`Query.case(id)` requests/s beside a bare Starlette route doing the same essential work
(benchmarks/bare_case_route.py: validate the same token, read the same row), in one run.

    python -m benchmarks.case_read [--postgres] [--seconds 10] [--connections 16] [--rounds 3]
    python -m benchmarks.case_read --blind-rule [--postgres] [--reads 2000]

Both servers are single uvicorn processes; wrk (Debian's `wrk`) loads each in turn, `rounds`
times alternately so both see the same machine, cycling through 100 real AIID cases. Prints
requests/s of each and the ratio (target: failcat >= 1/3 of the bare route), and the same for
the REST read of the whole case (GET /catalog/v1/cases/{id}: relations, links, audit entry).

--blind-rule (issue 11: the rule adds <= 10% to case(id)): in one process, the read `case(id)`
runs (the case, its model and the blind-read flag in one statement: annotation
service.visible_case_for) against the same statement without the rule's column, alternating,
each in its own transaction, for a reader the rule must evaluate to the end (an annotator
assigned to every case, not submitted, the cases adjudicated).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import httpx
import orjson

from benchmarks.common import (
    ROOT,
    free_port,
    fresh_postgres,
    migrated_env,
    postgres_url,
    served,
    token,
)

sys.path.insert(0, str(ROOT))
from tests.corpus import aiid_cases

ONE = "query One($id: ID!) { case(id: $id) { id title severity status model { name } } }"

GRAPHQL_LUA = """
ids = {%s}
token = "%s"
i = 0
request = function()
  i = i + 1
  local body = '{"query": "%s", "variables": {"id": "' .. ids[(i %% #ids) + 1] .. '"}}'
  return wrk.format("POST", "/graphql",
    {["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json"}, body)
end
"""
# A GET of `path prefix .. id` with the token: the REST read and the bare route.
GET_LUA = """
ids = {%s}
token = "%s"
i = 0
request = function()
  i = i + 1
  local headers = {["Authorization"] = "Bearer " .. token}
  return wrk.format("GET", "%s" .. ids[(i %% #ids) + 1], headers)
end
"""


def wrk(base: str, script: str, seconds: float, connections: int) -> float:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    done = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{int(seconds)}s", "-s", f.name, base],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed:\n{done.stdout}{done.stderr}")
    out = done.stdout
    if "Non-2xx" in out:
        raise RuntimeError(f"wrk saw errors:\n{out}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


async def blind_rule(postgres: bool, reads: int) -> None:
    from sqlalchemy import false

    from services.annotation import service as annotation
    from services.catalog import service as catalog
    from shared.db import Database
    from shared.migrate import upgrade_async
    from shared.security import Principal, Scope, Sensitivity

    with tempfile.TemporaryDirectory() as tmp:
        if postgres:
            url = await fresh_postgres(postgres_url())
        else:
            url = f"sqlite+aiosqlite:///{tmp}/catalog.db"
        await upgrade_async(url)
        db = Database(url)
        every = frozenset(s.value for s in Scope)
        lead, first = (
            Principal(n, n, every, clearance=Sensitivity.RESTRICTED) for n in ("lead", "first")
        )
        reader = Principal("second", "second", every, clearance=Sensitivity.RESTRICTED)
        try:
            async with db.transaction() as s:
                results = await catalog.ingest_cases(s, aiid_cases(100), lead)
            ids = [r.id for r in results if r.id]
            values = {"failure_mode": "safety.harmful_content", "severity": "S2"}
            async with db.transaction() as s:
                await annotation.assign_annotators(s, ids, ["first", "second"], 2, lead)
            for case_id in ids:
                async with db.transaction() as s:
                    await annotation.submit_annotation(s, case_id, "failcat", values, first)
                    case = await catalog.get_visible_case(s, case_id, lead)
                    await annotation.adjudicate(s, case_id, "failcat", values, case.revision, lead)
            async with db.transaction() as s:
                _, _, blinded = await annotation.visible_case_for(s, ids[0], reader)
            assert blinded, "the reader should be blinded"

            async def with_rule(s, case_id):
                return await annotation.visible_case_for(s, case_id, reader)

            def no_flag(_case_id: object) -> object:
                return false()

            async def without_rule(s, case_id):
                return await catalog.get_visible_case_and(s, case_id, reader, no_flag, {})

            times: dict[str, list[float]] = {"with": [], "without": []}
            reads_of = {"with": with_rule, "without": without_rule}
            for i in range(reads + 200):
                for name in ("with", "without") if i % 2 else ("without", "with"):
                    started = time.perf_counter()
                    async with db.transaction() as s:
                        await reads_of[name](s, ids[i % len(ids)])
                    if i >= 200:  # the first ones warm the statement caches
                        times[name].append(time.perf_counter() - started)
        finally:
            await db.dispose()
    p50 = {k: statistics.median(v) * 1000 for k, v in times.items()}
    backend = "Postgres" if postgres else "embedded SQLite"
    print(f"backend: {backend}; {reads} reads each, alternating, in-process")
    print(f"case read with the blind-read flag folded in: p50 {p50['with']:.3f} ms")
    print(f"the same read without the rule's column:       p50 {p50['without']:.3f} ms")
    print(f"the rule adds {(p50['with'] / p50['without'] - 1) * 100:+.1f}% (target <= +10%)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--postgres", action="store_true", help="Postgres instead of SQLite")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--blind-rule", action="store_true", help="the blind-read rule's cost")
    parser.add_argument("--reads", type=int, default=2000)
    args = parser.parse_args()
    if args.blind_rule:
        asyncio.run(blind_rule(args.postgres, args.reads))
        return
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt-get install wrk")

    extra = {}
    if args.postgres:
        extra["FAILCAT_DATABASE_URL"] = asyncio.run(fresh_postgres(postgres_url()))
    env, data_dir = migrated_env("failcat-bench-case-", **extra)
    database = env.get("FAILCAT_DATABASE_URL", f"sqlite+aiosqlite:///{data_dir}/catalog.db")
    with served(env) as base:
        tok = token(base, data_dir)
        resp = httpx.post(
            f"{base}/catalog/v1/cases:bulk",
            content=orjson.dumps(aiid_cases(100)),
            headers={"Authorization": f"Bearer {tok}", "Content-Type": "application/json"},
            timeout=60,
        )
        resp.raise_for_status()
        ids = ",".join(json.dumps(r["id"]) for r in resp.json()["results"])
        issuer = httpx.get(f"{base}/.well-known/oauth-authorization-server").json()["issuer"]
        port = free_port()
        bare = subprocess.Popen(
            [
                *[sys.executable, "-m", "benchmarks.bare_case_route"],
                *["--jwks", f"{base}/oauth/jwks.json", "--issuer", issuer],
                *["--database", database, "--port", str(port)],
            ],
            cwd=ROOT,
        )
        try:
            bare_base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60  # a loaded machine starts it slowly
            while True:
                try:
                    httpx.get(bare_base, timeout=1)
                    break
                except httpx.HTTPError:
                    if time.monotonic() > deadline:
                        raise RuntimeError("the bare route did not start") from None
                    time.sleep(0.1)
            gql_script = GRAPHQL_LUA % (ids, tok, ONE.replace('"', '\\"'))
            rest_script = GET_LUA % (ids, tok, "/catalog/v1/cases/")
            bare_script = GET_LUA % (ids, tok, "/case/")
            wrk(base, gql_script, 2, args.connections)  # warm-up
            wrk(base, rest_script, 2, args.connections)
            wrk(bare_base, bare_script, 2, args.connections)
            failcat_rates, rest_rates, bare_rates = [], [], []
            for _ in range(args.rounds):
                failcat_rates.append(wrk(base, gql_script, args.seconds, args.connections))
                rest_rates.append(wrk(base, rest_script, args.seconds, args.connections))
                bare_rates.append(wrk(bare_base, bare_script, args.seconds, args.connections))
        finally:
            bare.terminate()
            bare.wait(timeout=30)

    f, b = statistics.median(failcat_rates), statistics.median(bare_rates)
    r = statistics.median(rest_rates)
    backend = "Postgres" if args.postgres else "embedded SQLite"
    load = f"wrk {args.connections} connections, {args.seconds:.0f} s x {args.rounds}"
    print(f"backend: {backend}; {load}")
    print(f"Query.case(id) through failcat: {f:8,.0f} requests/s  (rounds: {failcat_rates})")
    print(f"bare Starlette, same token+row: {b:8,.0f} requests/s  (rounds: {bare_rates})")
    print(f"ratio failcat / bare: {f / b:.2f} (target >= 0.33)")
    print(f"REST GET /catalog/v1/cases/{{id}}: {r:8,.0f} requests/s  (rounds: {rest_rates})")
    print(f"ratio REST / bare: {r / b:.2f}")


if __name__ == "__main__":
    main()
