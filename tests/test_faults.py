"""Faults lose nothing (issue 9 item 8), short form; benchmarks/faults.py runs the long one.

Real processes on a PRIVATE Postgres and OpenSearch (tests/faults/infra.py; the shared test
backends are never stopped), while a client streams bulk requests with stable external ids and
retries, and a reader searches: OpenSearch is stopped (5 s, then the tens of seconds its start
takes); meanwhile `failcat serve` is killed with SIGKILL mid-request and restarted, and
Postgres is stopped for 3 s; then `failcat worker` is killed mid-drain and restarted. Afterwards
every case the client was told `created` or `duplicate` is in the catalog exactly once under
the id it was told, the index converges (`failcat search verify` exits 0 with no difference),
and during each outage the client got 503 + Retry-After: never another 5xx, never a hang.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from shared.db import Database, database_unreachable
from shared.errors import Unavailable
from tests.conftest import backend_unavailable, postgres_url
from tests.faults.infra import InfraUnavailable, PrivateBackends
from tests.faults.processes import free_port
from tests.faults.scenario import FaultPlan, run_scenario


@pytest.fixture(scope="module")
async def private_backends() -> AsyncIterator[PrivateBackends]:
    backends = PrivateBackends(Path(f"/tmp/failcat-faults-{secrets.token_hex(3)}"))
    try:
        await backends.start()
    except InfraUnavailable as exc:
        backend_unavailable(f"private backends for the fault test: {exc}")
    try:
        yield backends
    finally:
        await backends.teardown()


@pytest.mark.postgres
@pytest.mark.opensearch
async def test_faults_lose_nothing(private_backends: PrivateBackends, tmp_path: Path) -> None:
    report = await run_scenario(private_backends, tmp_path, FaultPlan())
    print(report.summary())
    rec = report.recorder

    # Nothing the client was told is stored is lost, doubled or under another id.
    assert report.acknowledged, "the stream stored nothing"
    assert report.lost == []
    assert report.duplicated == []
    assert report.wrong_id == []
    # Every batch was sent until answered, so nothing is stored that the client was not told.
    assert report.unacknowledged_in_catalog == []
    assert rec.total("invalid") == 0  # the corpus is valid: every item counts above

    # The index converged to the catalog.
    assert report.verify_exit == 0, report.verify
    assert report.index_differences == 0
    assert report.verify["catalog_count"] == len(report.acknowledged)

    # Outages were answered with a clear retryable error, never a 500 or a hang.
    assert rec.server_errors == []
    assert rec.hangs == []
    assert rec.missing_retry_after == 0
    assert rec.in_phase("api-kill", "connection_errors") >= 1  # the kill hit the stream
    assert rec.in_phase("postgres-down", "503") >= 1
    assert rec.in_phase("opensearch-down", "search_503") >= 1
    # Ingestion does not need the index: no bulk request was refused while it was down.
    assert rec.in_phase("opensearch-down", "503") == 0
    # Requests in flight when the API died, and those refused while Postgres was down, were
    # sent again, and their items answered `duplicate` where the first try had committed.
    assert rec.total("retried") >= 2
    backlog, left = report.worker_killed_at_backlog or (0, 0)
    assert 0 < left < backlog  # the worker died with part of its backlog indexed


@pytest.mark.postgres
async def test_database_outage_is_classified_from_real_driver_errors() -> None:
    """The 503 mapping rests on this: a refused connection is an outage, a bad statement
    is not (it must stay a 500 and be fixed)."""
    from sqlalchemy import text

    down = Database(f"postgresql+asyncpg://failcat:failcat@127.0.0.1:{free_port()}/failcat")
    try:
        with pytest.raises(Unavailable) as caught:
            async with down.transaction() as s:
                await s.execute(text("SELECT 1"))
        assert database_unreachable(caught.value.__cause__)
    finally:
        await down.dispose()

    up = Database(postgres_url())
    try:
        with pytest.raises(Exception) as caught:
            async with up.transaction() as s:
                await s.execute(text("SELEC 1"))
        assert not isinstance(caught.value, Unavailable)
        assert not database_unreachable(caught.value)
    finally:
        await up.dispose()
