"""The fault scenario of issue 9 item 8, shared by tests/test_faults.py (short form) and
benchmarks/faults.py (long form).

While a client streams bulk requests (tests/faults/client.py) against a real `failcat serve`,
and a reader searches:
1. OpenSearch is stopped, kept down for `opensearch_down_s` and started again; while it starts
   (tens of seconds)
2. the API process is killed with SIGKILL while a request is in flight, and started again, and
3. Postgres is stopped for `postgres_down_s` and started again;
4. then `failcat worker` starts on the backlog all this left in the outbox, is killed with
   SIGKILL in the middle of draining it, and is started again.
Then the stream stops and the report holds what the client was told, what the catalog holds
and what `failcat search verify` says about the index.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from tests.faults.client import BulkStreamer, Credentials, Recorder, SearchProber
from tests.faults.infra import PrivateBackends
from tests.faults.processes import FailcatProcess, api_process, failcat_run, worker_process

INDEXER_BATCH = 50


@dataclass(frozen=True)
class FaultPlan:
    opensearch_down_s: float = 5.0
    postgres_down_s: float = 3.0
    batch: int = 20  # cases per bulk request
    pause_s: float = 0.3  # between two answered requests
    batches_between_faults: int = 3
    api_kill_delays_s: tuple[float, ...] = (0.02,)  # after a request went out, one kill each
    converge_timeout_s: float = 120.0


@dataclass
class FaultReport:
    recorder: Recorder
    told: dict[str, Any]
    catalog: dict[str, list[str]] = field(default_factory=dict)  # external id -> case ids
    verify: dict[str, Any] = field(default_factory=dict)
    verify_exit: int | None = None
    worker_killed_at_backlog: tuple[int, int] | None = None  # (backlog at start, at kill)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def acknowledged(self) -> dict[str, str | None]:
        """Items the client was told are stored: external id -> case id."""
        return {k: t.id for k, t in self.told.items() if t.status in ("created", "duplicate")}

    @property
    def lost(self) -> list[str]:
        return [k for k in self.acknowledged if k not in self.catalog]

    @property
    def duplicated(self) -> list[str]:
        return [k for k, ids in self.catalog.items() if len(ids) > 1]

    @property
    def wrong_id(self) -> list[str]:
        told = self.acknowledged
        return [k for k, cid in told.items() if k in self.catalog and [cid] != self.catalog[k]]

    @property
    def unacknowledged_in_catalog(self) -> list[str]:
        return [k for k in self.catalog if k not in self.acknowledged]

    @property
    def index_differences(self) -> int:
        return sum(int(self.verify.get(k, 0)) for k in ("missing", "stale", "extra", "ahead"))

    def summary(self) -> str:
        r = self.recorder
        lines = [
            "fault scenario:",
            f"  sent {r.total('sent')}  created {r.total('created')}  duplicate "
            f"{r.total('duplicate')}  invalid {r.total('invalid')}  sampled_out "
            f"{r.total('sampled_out')}",
            f"  retried requests {r.total('retried')}  503s {r.total('503')}  connection errors "
            f"{r.total('connection_errors')}  search 503s {r.total('search_503')}  "
            f"5xx other than 503 {len(r.server_errors)}  hangs {len(r.hangs)}  "
            f"503 without Retry-After {r.missing_retry_after}",
            f"  catalog {sum(len(v) for v in self.catalog.values())} cases for "
            f"{len(self.acknowledged)} acknowledged: lost {len(self.lost)}, duplicated "
            f"{len(self.duplicated)}, wrong id {len(self.wrong_id)}",
            f"  index: verify exit {self.verify_exit}, differences {self.index_differences} "
            f"({json.dumps({k: self.verify.get(k) for k in ('catalog_count', 'index_count')})})",
            f"  worker killed with backlog {self.worker_killed_at_backlog} (at start, at kill)",
            "  by phase: "
            + "; ".join(f"{p}: {dict(sorted(c.items()))}" for p, c in r.events.items()),
            "  timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in self.timings.items()),
        ]
        return "\n".join(lines)


def _pg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


async def _outbox_size(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM search_outbox"))
    finally:
        await conn.close()


async def _catalog(dsn: str) -> dict[str, list[str]]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT external_id, id FROM failure_case ORDER BY id")
    finally:
        await conn.close()
    out: dict[str, list[str]] = {}
    for row in rows:
        out.setdefault(row["external_id"], []).append(str(row["id"]))
    return out


async def run_scenario(
    backends: PrivateBackends,
    work_dir: Path,
    plan: FaultPlan = FaultPlan(),
    say: Callable[[str], None] = print,
) -> FaultReport:
    data_dir = work_dir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    env = {
        "FAILCAT_DATA_DIR": str(data_dir),
        "FAILCAT_DATABASE_URL": backends.postgres.url,
        "FAILCAT_SEARCH_URL": backends.opensearch.url,
        "FAILCAT_SEARCH_INDEX": "failcat-faults",
        # Production shape: the API does not index, `failcat worker` does.
        "FAILCAT_RUN_INDEXER_IN_PROCESS": "false",
        "FAILCAT_INDEXER_BATCH": str(INDEXER_BATCH),
    }
    rc, _, err = await failcat_run(env, "db", "upgrade")
    assert rc == 0, err
    api = api_process(env, work_dir)
    worker = worker_process(env, work_dir)
    dsn = _pg_dsn(backends.postgres.url)
    recorder = Recorder()
    clock = time.monotonic()

    def mark(phase: str) -> None:
        say(f"faults: {phase} (+{time.monotonic() - clock:.1f} s)")
        recorder.phase = phase

    await api.start()
    creds_file = json.loads((data_dir / "bootstrap-client.json").read_text())
    creds = Credentials(creds_file["client_id"], creds_file["client_secret"])
    timeout = httpx.Timeout(30.0, connect=5.0)
    async with httpx.AsyncClient(base_url=api.base_url, timeout=timeout) as http:
        streamer = BulkStreamer(http, creds, recorder, plan.batch, plan.pause_s)
        prober = SearchProber(http, creds, recorder)
        tasks = [asyncio.create_task(streamer.run()), asyncio.create_task(prober.run())]
        report = FaultReport(recorder, streamer.told)
        try:
            await _faults(plan, backends, api, worker, streamer, dsn, report, mark)
            mark("drain")
            streamer.stop()
            prober.stop()
            await asyncio.wait_for(asyncio.gather(*tasks), 120)
            await _converge(plan, env, dsn, report)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await worker.terminate()
            await api.terminate()
    report.catalog = await _catalog(dsn)
    report.timings["total"] = time.monotonic() - clock
    return report


async def _faults(
    plan: FaultPlan,
    backends: PrivateBackends,
    api: Any,
    worker: FailcatProcess,
    streamer: BulkStreamer,
    dsn: str,
    report: FaultReport,
    mark: Callable[[str], None],
) -> None:
    between = plan.batches_between_faults
    await streamer.wait_batches(between)

    # 1. OpenSearch stops: ingestion goes on (the outbox keeps the changes), search says 503.
    mark("opensearch-down")
    os_started = time.monotonic()
    await backends.opensearch.stop()
    await asyncio.sleep(plan.opensearch_down_s)
    # Its start takes tens of seconds: the API's and Postgres's faults happen meanwhile.
    restart = asyncio.create_task(backends.opensearch.start_again())
    try:
        # 2. The API dies with a request in flight: early in it, or (further kills) later,
        # when the batch may have committed and only the answer is lost.
        mark("api-kill")
        for delay in plan.api_kill_delays_s:
            await streamer.in_flight.wait()
            await asyncio.sleep(delay)
            started = time.monotonic()
            await api.kill()
            await api.start()
            report.timings["api restart"] = time.monotonic() - started
            await streamer.wait_batches(between)

        # 3. Postgres stops: every request needs it, so the client must be told to come back.
        mark("postgres-down")
        started = time.monotonic()
        await backends.postgres.stop()
        await asyncio.sleep(plan.postgres_down_s)
        await backends.postgres.start_again()
        report.timings["postgres down"] = time.monotonic() - started
        mark("opensearch-starting")
    finally:
        await restart
    report.timings["opensearch down"] = time.monotonic() - os_started
    mark("recovered")
    await streamer.wait_batches(between)

    # 4. The worker dies while draining the backlog the stream built up without it.
    mark("worker-kill")
    report.worker_killed_at_backlog = await _kill_worker_mid_drain(worker, streamer, dsn)
    # Small batches made the kill land mid-drain; the restarted worker drains at full size.
    worker.env = worker.env | {"FAILCAT_INDEXER_BATCH": "500"}
    await worker.start()
    await streamer.wait_batches(between)


async def _kill_worker_mid_drain(
    worker: FailcatProcess, streamer: BulkStreamer, dsn: str, attempts: int = 4
) -> tuple[int, int]:
    """Start the worker on a backlog of several batches and SIGKILL it once it has indexed
    some but not all of it. A worker that drains everything before it is caught is stopped
    and tried again on a new backlog."""
    for _ in range(attempts):
        while (backlog := await _outbox_size(dsn)) < 6 * INDEXER_BATCH:
            await streamer.wait_batches(1)
        await worker.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            left = await _outbox_size(dsn)
            if 0 < left <= backlog - INDEXER_BATCH:
                await worker.kill()
                return backlog, left
            if left == 0:
                break
            await asyncio.sleep(0.02)
        await worker.kill()
    raise AssertionError("the worker was never caught in the middle of a drain")


async def _converge(plan: FaultPlan, env: dict[str, str], dsn: str, report: FaultReport) -> None:
    """The worker drains what is left; `failcat search verify` must then find no difference
    (the index refreshes once a second, so a few tries are allowed)."""
    started = time.monotonic()
    deadline = started + plan.converge_timeout_s
    while await _outbox_size(dsn) > 0:
        if time.monotonic() > deadline:
            raise AssertionError("the worker did not drain the outbox in time")
        await asyncio.sleep(0.2)
    while True:
        rc, out, err = await failcat_run(env, "search", "verify")
        report.verify_exit = rc
        report.verify = json.loads(out) if out.strip() else {"error": err[-500:]}
        if rc == 0 or time.monotonic() > deadline:
            break
        await asyncio.sleep(1.0)
    report.timings["converge"] = time.monotonic() - started
