"""Faults lose nothing, long form (issue 9 item 8): tests/test_faults.py runs the short one.

    python -m benchmarks.faults [--opensearch-down 30] [--postgres-down 10] [--batch 20]
                                [--pause 0.05] [--between 10]

Starts a PRIVATE Postgres and OpenSearch with the project's scripts (never the shared test
backends), then runs tests/faults/scenario.py while a client streams bulk requests of --batch
real incident records with stable external ids and a reader searches: OpenSearch is stopped for
--opensearch-down seconds (then the time its start takes); meanwhile `failcat serve` is killed
with SIGKILL mid-request and restarted (four times, 20 to 400 ms into a request, so some
batches commit and only their answer is lost) and Postgres is stopped for --postgres-down s;
then `failcat worker` is killed mid-drain and restarted. Prints the counts (sent, created,
duplicate, retried, 503s, catalog count, index differences) by phase; exits 1 if a case was
lost or doubled, the index did not converge, or a client got a 5xx other than 503 or a hang.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
import tempfile
from pathlib import Path

from tests.faults.infra import PrivateBackends
from tests.faults.scenario import FaultPlan, FaultReport, run_scenario


def failures(report: FaultReport) -> list[str]:
    rec = report.recorder
    checks = {
        "lost": report.lost,
        "duplicated": report.duplicated,
        "wrong id": report.wrong_id,
        "stored but never acknowledged": report.unacknowledged_in_catalog,
        "5xx other than 503": rec.server_errors,
        "hangs": rec.hangs,
    }
    out = [f"{name}: {values[:5]}" for name, values in checks.items() if values]
    if report.verify_exit != 0 or report.index_differences:
        out.append(f"index did not converge: {report.verify}")
    if rec.missing_retry_after:
        out.append(f"{rec.missing_retry_after} answers 503 without Retry-After")
    return out


async def main(plan: FaultPlan) -> int:
    backends = PrivateBackends(Path(f"/tmp/failcat-faults-{secrets.token_hex(3)}"))
    print("faults: starting a private Postgres and OpenSearch", file=sys.stderr)
    await backends.start()
    try:
        work = Path(tempfile.mkdtemp(prefix="failcat-faults-"))
        report = await run_scenario(
            backends, work, plan, say=lambda line: print(line, file=sys.stderr)
        )
    finally:
        await backends.teardown()
    print(report.summary())
    print(f"logs: {work}")
    problems = failures(report)
    for problem in problems:
        print(f"FAIL {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--opensearch-down", type=float, default=30.0)
    parser.add_argument("--postgres-down", type=float, default=10.0)
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--pause", type=float, default=0.05)
    parser.add_argument("--between", type=int, default=10, help="batches between two faults")
    args = parser.parse_args()
    plan = FaultPlan(
        opensearch_down_s=args.opensearch_down,
        postgres_down_s=args.postgres_down,
        batch=args.batch,
        pause_s=args.pause,
        batches_between_faults=args.between,
        api_kill_delays_s=(0.02, 0.1, 0.2, 0.4),
        converge_timeout_s=300.0,
    )
    sys.exit(asyncio.run(main(plan)))
