"""`Query.case(id)` requests/s beside a bare Starlette route doing the same essential work
(benchmarks/bare_case_route.py: validate the same token, read the same row), in one run.

    python -m benchmarks.case_read [--postgres] [--seconds 10] [--connections 16] [--rounds 3]

Both servers are single uvicorn processes; wrk (Debian's `wrk`) loads each in turn, `rounds`
times alternately so both see the same machine, cycling through 100 real AIID cases. Prints
requests/s of each and the ratio (target: failcat >= 1/3 of the bare route).
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
BARE_LUA = """
ids = {%s}
token = "%s"
i = 0
request = function()
  i = i + 1
  local headers = {["Authorization"] = "Bearer " .. token}
  return wrk.format("GET", "/case/" .. ids[(i %% #ids) + 1], headers)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--postgres", action="store_true", help="Postgres instead of SQLite")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
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
            for _ in range(100):
                try:
                    httpx.get(bare_base, timeout=1)
                    break
                except httpx.HTTPError:
                    time.sleep(0.1)
            gql_script = GRAPHQL_LUA % (ids, tok, ONE.replace('"', '\\"'))
            bare_script = BARE_LUA % (ids, tok)
            wrk(base, gql_script, 2, args.connections)  # warm-up
            wrk(bare_base, bare_script, 2, args.connections)
            failcat_rates, bare_rates = [], []
            for _ in range(args.rounds):
                failcat_rates.append(wrk(base, gql_script, args.seconds, args.connections))
                bare_rates.append(wrk(bare_base, bare_script, args.seconds, args.connections))
        finally:
            bare.terminate()
            bare.wait(timeout=30)

    f, b = statistics.median(failcat_rates), statistics.median(bare_rates)
    backend = "Postgres" if args.postgres else "embedded SQLite"
    load = f"wrk {args.connections} connections, {args.seconds:.0f} s x {args.rounds}"
    print(f"backend: {backend}; {load}")
    print(f"Query.case(id) through failcat: {f:8,.0f} requests/s  (rounds: {failcat_rates})")
    print(f"bare Starlette, same token+row: {b:8,.0f} requests/s  (rounds: {bare_rates})")
    print(f"ratio failcat / bare: {f / b:.2f} (target >= 0.33)")


if __name__ == "__main__":
    main()
