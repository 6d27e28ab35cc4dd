"""failcat-client figures against the embedded server (`failcat serve`, SQLite, indexer off as
in production where `failcat worker` drains the outbox).

    python -m benchmarks.capture [--cases 50000] [--cost-cases 50000] [--batch 500]
                                 [--outage] [--outage-cases 50000] [--outage-s 30]

0. (see 2) the client's own ceiling: the same cases to a sink that only parses and answers;
1. raw: the bulk route itself, pre-serialized JSON arrays of `--batch` generated cases
   (benchmarks/generator.py) posted back to back: the server's ceiling;
2. sustained: one `Client` captures `--cases` generated cases as fast as the caller can and
   delivers them; cases/s from the first capture until `flush()` returns;
3. cost: `capture()` in the calling thread (perf_counter_ns around each call), p50/p99/p99.9,
   at full speed and paced (5,000/s, as serving code interleaves captures with work), while
   the sender delivers meanwhile; and with the server down and a small spool overflowing
   (the dropped counter then checked exactly by replaying the spool);
4. `--outage`: the issue's proof. Two client processes in turn capture `--outage-cases` cases
   (ids known in advance); the server is SIGKILLed during the first, stays down
   `--outage-s` seconds, the first process exits while it is down (its queue goes to the
   spool), the second starts on the same spool, the server comes back; every case must be
   stored exactly once (count and ids).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from failcat_client import Client

from benchmarks.common import ROOT, free_port
from benchmarks.generator import CaseGenerator

CLI = [sys.executable, "-m", "services.gateway.cli"]


class Server:
    """`failcat serve` on a fixed port, so it can be killed and started again."""

    def __init__(self, data_dir: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "FAILCAT_DATA_DIR": str(data_dir),
            "FAILCAT_ISSUER": self.base,
            "FAILCAT_RUN_INDEXER_IN_PROCESS": "false",
            "FAILCAT_LOG_LEVEL": "WARNING",
        }
        self.env.pop("FAILCAT_DATABASE_URL", None)
        self.log = data_dir.parent / "serve.log"
        self.proc: subprocess.Popen[bytes] | None = None
        subprocess.run([*CLI, "db", "upgrade"], cwd=ROOT, env=self.env, check=True,
                       capture_output=True)  # fmt: skip
        self.data_dir = data_dir

    def start(self) -> None:
        with self.log.open("a") as log:
            self.proc = subprocess.Popen(
                [*CLI, "serve", "--port", str(self.port)],
                cwd=ROOT, env=self.env, stdout=log, stderr=log,
            )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.base}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError(f"server did not start:\n{self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
            self.proc = None

    def creds(self) -> tuple[str, str, str]:
        c = json.loads((self.data_dir / "bootstrap-client.json").read_text())
        return self.base, c["client_id"], c["client_secret"]

    def token(self) -> str:
        _, cid, secret = self.creds()
        resp = httpx.post(f"{self.base}/oauth/token", data={"grant_type": "client_credentials"},
                          auth=(cid, secret))  # fmt: skip
        resp.raise_for_status()
        return resp.json()["access_token"]

    def external_ids(self, data_source: str) -> list[str]:
        headers = {"Authorization": f"Bearer {self.token()}"}
        out: list[str] = []
        after = None
        query = """query($f: CaseFilterInput, $after: String) {
          cases(filter: $f, first: 500, after: $after) {
            nodes { externalId } pageInfo { hasNextPage endCursor } } }"""
        with httpx.Client(timeout=120, headers=headers) as http:
            while True:
                body = http.post(f"{self.base}/graphql", json={"query": query, "variables": {
                    "f": {"dataSource": data_source}, "after": after}}).json()  # fmt: skip
                page = body["data"]["cases"]
                out += [n["externalId"] for n in page["nodes"]]
                if not page["pageInfo"]["hasNextPage"]:
                    return out
                after = page["pageInfo"]["endCursor"]


@contextmanager
def running(tmp: Path, name: str) -> Iterator[Server]:
    (tmp / name).mkdir()
    server = Server(tmp / name / ".failcat")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def percentiles(ns: list[int]) -> str:
    ns = sorted(ns)

    def at(q: float) -> float:
        return ns[min(len(ns) - 1, int(q * len(ns)))] / 1000

    return (
        f"p50 {at(0.5):6.2f} us  p99 {at(0.99):6.2f} us  p99.9 {at(0.999):7.1f} us  "
        f"max {ns[-1] / 1000:8.1f} us"
    )


def timed_captures(
    client: Any,
    cases: list[dict[str, Any]],
    rate: float = 0,
    cpu: list[int] | None = None,
    busy: bool = True,
) -> list[int]:
    """Wall time of each capture() call (what the request waits), and, into `cpu`, the
    calling thread's CPU time for it (what it costs, without preemption by other processes
    or waits for the GIL). Paced by spinning (`busy`, a serving thread that stays on its
    core) or by sleeping every 50 calls (kinder to a shared machine, but the first call
    after each sleep runs on cold caches, whatever the code: see `DictCopy`)."""
    clock, thread_clock = time.perf_counter_ns, time.thread_time_ns
    costs = []
    start = time.perf_counter()
    for i, case in enumerate(cases):
        if rate and busy:
            due = start + i / rate
            while time.perf_counter() < due:
                pass
        c0 = thread_clock()
        t0 = clock()
        client.capture(**case)
        t1 = clock()
        c1 = thread_clock()
        costs.append(t1 - t0)
        if cpu is not None:
            cpu.append(c1 - c0)
        if rate and not busy and i % 50 == 49:
            ahead = start + (i + 1) / rate - time.perf_counter()
            if ahead > 0:
                time.sleep(ahead)
    return costs


class DictCopy:
    """The harness floor: a `capture` that only copies its keywords. On a busy machine the
    first call after each pacing sleep is slow for any code (cold caches); this row shows how
    much of a paced percentile is that."""

    def capture(self, **fields: Any) -> dict[str, Any]:
        return dict(fields)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc): on a shared machine the
    steadier figure of what a side costs, beside its wall-clock rate."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def raw_rate(server: Server, cases: list[dict[str, Any]], batch: int) -> tuple[float, float]:
    """cases/s of the bulk route, and the server process's CPU time per case (us)."""
    bodies = [json.dumps(cases[i : i + batch]).encode() for i in range(0, len(cases), batch)]
    headers = {"Authorization": f"Bearer {server.token()}", "Content-Type": "application/json"}
    created = 0
    assert server.proc is not None
    with httpx.Client(base_url=server.base, headers=headers, timeout=300) as http:
        cpu_start = cpu_seconds(server.proc.pid)
        start = time.perf_counter()
        for body in bodies:
            resp = http.post("/catalog/v1/cases:bulk", content=body)
            resp.raise_for_status()
            created += resp.json()["counts"]["created"]
        elapsed = time.perf_counter() - start
        cpu = cpu_seconds(server.proc.pid) - cpu_start
    assert created == len(cases), f"raw: created {created} of {len(cases)}"
    return len(cases) / elapsed, cpu / len(cases) * 1e6


def sustained(
    server: Server, cases: list[dict[str, Any]], batch: int, cpu: list[int]
) -> tuple[float, list[int], tuple[float, float]]:
    """cases/s, each capture()'s wall time, and the CPU time per case (us) of the server
    process and of this (the client's) process: their sum against the cores there are is
    the ceiling of the two together."""
    client = Client(*server.creds(), queue_size=len(cases) + 1, batch_size=batch)
    assert server.proc is not None
    server_cpu, client_cpu = cpu_seconds(server.proc.pid), time.process_time()
    start = time.perf_counter()
    costs = timed_captures(client, cases, cpu=cpu)
    assert client.flush(900), client.stats()
    elapsed = time.perf_counter() - start
    server_cpu = cpu_seconds(server.proc.pid) - server_cpu
    client_cpu = time.process_time() - client_cpu
    stats = client.stats()
    client.close()
    assert stats["sent"] == len(cases), stats
    per_case = (server_cpu / len(cases) * 1e6, client_cpu / len(cases) * 1e6)
    return len(cases) / elapsed, costs, per_case


def down_and_full(tmp: Path, n: int) -> None:
    """Server down, spool of 1 MB overflowing: the caller's cost, then the exact count."""
    (tmp / "full").mkdir()
    server = Server(tmp / "full" / ".failcat")
    server.start()
    creds = server.creds()
    server.stop()
    spool = str(tmp / "full" / "spool")
    client = Client(*creds, spool_dir=spool, spool_max_bytes=1_000_000, max_retries=0,
                    flush_interval_s=0.05)  # fmt: skip
    cases = [
        {"model": {"name": "full", "version": "1"}, "data_source": "full",
         "external_id": f"full-{i}", "input": {"i": i, "text": "x" * 200}}
        for i in range(n)
    ]  # fmt: skip
    cpu: list[int] = []
    costs = timed_captures(client, cases, rate=5000, cpu=cpu)
    client.close(timeout=5)
    stats = client.stats()
    print(f"capture() wall, server down, spool full:  {percentiles(costs)}")
    print(f"capture() CPU,  server down, spool full:  {percentiles(cpu)}")
    server.start()
    try:
        replay = Client(*creds, spool_dir=spool)
        assert replay.flush(600), replay.stats()
        replay.close()
        stored = server.external_ids("full")
    finally:
        server.stop()
    expected = {c["external_id"] for c in cases[stats["dropped"] :]}
    exact = len(stored) == len(set(stored)) == n - stats["dropped"] and set(stored) == expected
    print(
        f"spool full: {n} captured, dropped counter {stats['dropped']}, stored "
        f"{len(stored)} (the newest {n - stats['dropped']}): exact={exact}"
    )


# ---- the engine's own ceiling ------------------------------------------------------------
TIMED_TABLES = ("failure_case", "case_revision", "case_link", "search_outbox")
REFERENCE_TABLES = ("model", "data_source", "model_version", "failure_group")


def sqlite_ceiling(stored: Path, empty: Path, batch: int) -> tuple[float, float]:
    """cases/s of sqlite3 itself storing the rows the service stored (cases, revisions,
    links, outbox entries, read back from `stored`) into the same tables of `empty` (a fresh
    database at the same migration, same pragmas): one executemany per table per batch of
    `batch` cases, one transaction per batch as the service commits each request. Models,
    sources, versions and groups are loaded first, untimed (as the Postgres COPY ceiling of
    benchmarks/ingest.py does). Returns cases/s and the CPU time per case (us)."""
    src = sqlite3.connect(stored)
    dst = sqlite3.connect(empty, isolation_level=None)
    for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON"):
        dst.execute(f"PRAGMA {pragma}")

    names = {t: [r[1] for r in src.execute(f"PRAGMA table_info({t})")]
             for t in TIMED_TABLES + REFERENCE_TABLES}  # fmt: skip

    def insert(table: str, rows: list[tuple[Any, ...]]) -> None:
        cols = names[table]
        marks = ", ".join("?" * len(cols))
        dst.executemany(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({marks})", rows)

    dst.execute("BEGIN")
    for table in REFERENCE_TABLES:
        insert(table, src.execute(f"SELECT * FROM {table}").fetchall())
    dst.execute("COMMIT")
    order = [r[0] for r in src.execute("SELECT case_id FROM search_outbox ORDER BY id")]
    data: dict[str, dict[str, list[tuple[Any, ...]]]] = {t: {} for t in TIMED_TABLES}
    for table in TIMED_TABLES:
        key = "id" if table == "failure_case" else "case_id"
        at = names[table].index(key)
        for row in src.execute(f"SELECT * FROM {table}"):
            data[table].setdefault(row[at], []).append(row)
    src.close()
    chunks = [order[i : i + batch] for i in range(0, len(order), batch)]
    work = [[[r for cid in ids for r in data[t].get(cid, ())] for t in TIMED_TABLES]
            for ids in chunks]  # fmt: skip
    start, cpu_start = time.perf_counter(), time.process_time()
    for tables in work:
        dst.execute("BEGIN")
        for table, rows in zip(TIMED_TABLES, tables, strict=True):
            insert(table, rows)
        dst.execute("COMMIT")
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    dst.close()
    return len(order) / elapsed, cpu / len(order) * 1e6


# ---- the client's own ceiling -------------------------------------------------------------
def sink(port: int) -> None:
    """A server that only parses and acknowledges (every item `created`): what one client
    can push when the server is not the limit."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    base = f"http://127.0.0.1:{port}"

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def answer(self, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self.answer({"issuer": base, "token_endpoint": f"{base}/oauth/token"})

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.path == "/oauth/token":
                self.answer({"access_token": "sink", "expires_in": 3600})
                return
            n = len(json.loads(body))
            results = [{"index": i, "status": "created", "id": str(i)} for i in range(n)]
            self.answer({"results": results, "counts": {"created": n}})

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


def client_ceiling(cases: list[dict[str, Any]], batch: int) -> tuple[float, float]:
    """Cases/s to the sink, and the client process's CPU time per case (capture, encoding,
    HTTP): on a busy machine the second is the steadier figure."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.capture", "sink", str(port)],
                            cwd=ROOT)  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        client = Client(f"http://127.0.0.1:{port}", "id", "secret",
                        queue_size=len(cases) + 1, batch_size=batch)  # fmt: skip
        start, cpu_start = time.perf_counter(), time.process_time()
        for case in cases:
            client.capture(**case)
        assert client.flush(600), client.stats()
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        assert client.stats()["sent"] == len(cases)
        client.close()
    finally:
        proc.terminate()
        proc.wait()
    return len(cases) / elapsed, cpu / len(cases) * 1e6


# ---- the outage proof --------------------------------------------------------------------
def child(args: argparse.Namespace) -> None:
    """One client process: capture ids [start, stop) at `rate`, then exit (atexit close)."""
    client = Client(args.url, args.client_id, args.secret, spool_dir=args.spool,
                    exit_timeout_s=args.exit_timeout, queue_size=20_000)  # fmt: skip
    cases = [
        {"model": {"name": "outage", "version": "1"}, "data_source": args.source,
         "external_id": f"outage-{i}", "input": {"i": i}, "confidence": 0.2}
        for i in range(args.start, args.stop)
    ]  # fmt: skip
    costs = timed_captures(client, cases, rate=args.rate, busy=False)
    if args.drain:
        client.flush(args.exit_timeout)
    client.close()
    print(json.dumps({"stats": client.stats(), "cost": percentiles(costs)}))


def outage(tmp: Path, n: int, down_s: float) -> None:
    with running(tmp, "outage") as server:
        url, cid, secret = server.creds()
        spool = str(tmp / "outage-spool")
        half = n // 2
        rate = 1250.0  # each half takes ~20 s: the outage spans the process restart
        common = [sys.executable, "-m", "benchmarks.capture", "child", "--url", url,
                  "--client-id", cid, "--secret", secret, "--spool", spool,
                  "--source", "outage", "--rate", str(rate)]  # fmt: skip
        started = time.monotonic()
        first = subprocess.Popen(
            [*common, "--start", "0", "--stop", str(half), "--exit-timeout", "2"],
            cwd=ROOT, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        time.sleep(8)
        server.kill()
        killed = time.monotonic()
        print(f"outage: server killed at {killed - started:.1f} s")
        out1 = json.loads(first.communicate()[0].strip().splitlines()[-1])
        print(f"outage: first client exited at {time.monotonic() - started:.1f} s: {out1}")
        second = subprocess.Popen(
            [*common, "--start", str(half), "--stop", str(n), "--exit-timeout", "600",
             "--drain"],
            cwd=ROOT, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        time.sleep(max(0.0, killed + down_s - time.monotonic()))
        server.start()
        print(f"outage: server back at {time.monotonic() - started:.1f} s")
        out2 = json.loads(second.communicate()[0].strip().splitlines()[-1])
        print(f"outage: second client done at {time.monotonic() - started:.1f} s: {out2}")
        stored = server.external_ids("outage")
    expected = {f"outage-{i}" for i in range(n)}
    print(
        f"outage: {len(stored)} stored, {len(set(stored))} distinct, of {n} captured; "
        f"exactly once: {len(stored) == n and set(stored) == expected}"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd")
    sink_cmd = sub.add_parser("sink")
    sink_cmd.add_argument("port", type=int)
    c = sub.add_parser("child")
    for flag in ("--url", "--client-id", "--secret", "--spool", "--source"):
        c.add_argument(flag, required=True)
    c.add_argument("--start", type=int, required=True)
    c.add_argument("--stop", type=int, required=True)
    c.add_argument("--rate", type=float, default=0)
    c.add_argument("--exit-timeout", type=float, default=5)
    c.add_argument("--drain", action="store_true")
    ap.add_argument("--cases", type=int, default=50_000)
    ap.add_argument("--cost-cases", type=int, default=50_000)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--outage", action="store_true")
    ap.add_argument("--outage-cases", type=int, default=50_000)
    ap.add_argument("--outage-s", type=float, default=30)
    args = ap.parse_args()
    if args.cmd == "child":
        child(args)
        return
    if args.cmd == "sink":
        sink(args.port)
        return

    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        # Each measurement on a fresh server: SQLite slows down as it grows.
        with running(tmp, "raw") as server:
            raw, raw_cpu = raw_rate(server, CaseGenerator(seed=3).batch(args.cases), args.batch)
        print(f"server bulk route, raw ({args.batch}/request):  {raw:8.0f} cases/s, "
              f"server CPU {raw_cpu:.0f} us/case")  # fmt: skip
        (tmp / "engine").mkdir()
        engine, engine_cpu = sqlite_ceiling(
            server.data_dir / "catalog.db",
            Server(tmp / "engine" / ".failcat").data_dir / "catalog.db",
            args.batch,
        )
        print(f"sqlite3 executemany of the same rows:     {engine:8.0f} cases/s, "
              f"CPU {engine_cpu:.0f} us/case (the bulk route is {raw / engine:.2f} of it, "
              f"{engine_cpu / raw_cpu:.2f} in CPU per case)")  # fmt: skip
        with running(tmp, "client") as server:
            cpu: list[int] = []
            cases = CaseGenerator(seed=3).batch(args.cases)
            rate, costs, (server_cpu, client_cpu) = sustained(server, cases, args.batch, cpu)
        print(f"one Client, capture -> stored:           {rate:8.0f} cases/s "
              f"({rate / raw:.2f} of raw)")  # fmt: skip
        both = server_cpu + client_cpu
        print(f"  CPU per case: server {server_cpu:.0f} us + client {client_cpu:.0f} us = "
              f"{both:.0f} us: at most {os.cpu_count() or 1} x 1e6 / {both:.0f} = "
              f"{(os.cpu_count() or 1) * 1e6 / both:,.0f} cases/s on this machine's "
              f"{os.cpu_count()} cores if nothing else ran")  # fmt: skip
        print(f"capture() wall, full speed:               {percentiles(costs)}")
        print(f"capture() CPU,  full speed:               {percentiles(cpu)}")
        ceiling, per_case = client_ceiling(CaseGenerator(seed=3).batch(args.cases), args.batch)
        print(f"one Client to a no-op sink (its ceiling): {ceiling:8.0f} cases/s, "
              f"{per_case:.1f} us CPU per case in the client process "
              f"(= {1e6 / per_case:,.0f} cases/s per core)")  # fmt: skip
        with running(tmp, "paced") as server:
            cost_cases = CaseGenerator(seed=5).batch(args.cost_cases)
            client = Client(*server.creds(), queue_size=args.cost_cases + 1)
            rows = {}
            for busy in (True, False):
                cpu = []
                half = (
                    cost_cases[: args.cost_cases // 2]
                    if busy
                    else cost_cases[args.cost_cases // 2 :]
                )
                rows[busy] = timed_captures(client, half, rate=5000, cpu=cpu, busy=busy), cpu
            client.flush(900)
            client.close()
        for busy, label in ((True, "spin-paced"), (False, "sleep-paced")):
            wall, cpu = rows[busy]
            print(f"capture() wall, {label} 5,000/s:      {percentiles(wall)}")
            print(f"capture() CPU,  {label} 5,000/s:      {percentiles(cpu)}")
            floor: list[int] = []
            timed_captures(DictCopy(), cost_cases[:20_000], rate=5000, cpu=floor, busy=busy)
            print(f"harness floor (dict copy) CPU, {label}: {percentiles(floor)}")
        down_and_full(tmp, 20_000)
        if args.outage:
            outage(tmp, args.outage_cases, args.outage_s)


if __name__ == "__main__":
    main()
