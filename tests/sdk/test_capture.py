"""failcat-client end to end against `failcat serve`: captures arrive once, with their fields,
whatever the server does meanwhile."""

from __future__ import annotations

import itertools
import json
import logging
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from failcat_client import Client

from tests.corpus import CORPORA
from tests.sdk.conftest import FailcatServer, unique_source

MODEL = {"name": "incident-classifier", "version": "2.0.0"}


def corpus_inputs(n: int) -> list[dict[str, Any]]:
    """Real incident records (AI Incident Database) as model inputs."""
    with (CORPORA / "aiid_incidents.jsonl").open(encoding="utf-8") as fh:
        return [json.loads(line) for line in itertools.islice(fh, n)]


def by_external_id(cases: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {c["externalId"]: c for c in cases}


def test_captures_arrive_with_their_fields(server: FailcatServer) -> None:
    source = unique_source("arrive")
    records = corpus_inputs(120)
    with Client(*server.client_args(), batch_size=50, flush_interval_s=0.1) as client:
        ids = [
            client.capture(
                model=MODEL,
                data_source=source,
                input=rec,
                prediction={"label": "harmless"},
                expected={"label": "harmful"},
                confidence=0.25 + (i % 50) / 100,
                latency_ms=12.5,
                title=rec["title"],
                environment={"region": "eu-west-1"},
            )
            for i, rec in enumerate(records)
        ]
        assert client.flush(60)
        stats = client.stats()
    assert all(ids) and len(set(ids)) == len(records)
    assert stats["sent"] == len(records)
    assert stats["queued"] == len(records)
    assert (stats["dropped"], stats["invalid"], stats["spooled"], stats["pending"]) == (0, 0, 0, 0)

    stored = by_external_id(server.cases(source))
    assert set(stored) == set(ids)
    for external_id, rec in zip(ids, records, strict=True):
        case = stored[external_id]
        assert case["input"] == rec
        assert case["title"] == rec["title"]
        assert case["prediction"] == {"label": "harmless"}
        assert case["model"]["name"] == MODEL["name"]
        assert case["modelVersion"]["version"] == MODEL["version"]
        assert case["latencyMs"] == 12.5


def test_invalid_items_are_counted_and_logged_never_retried(
    server: FailcatServer, caplog: pytest.LogCaptureFixture
) -> None:
    source = unique_source("invalid")
    with Client(*server.client_args(), flush_interval_s=0.1) as client:
        good = client.capture(model=MODEL, data_source=source, input={"ok": 1}, confidence=0.4)
        bad_confidence = client.capture(model=MODEL, data_source=source, confidence=7.0)
        no_version = client.capture(model="incident-classifier", data_source=source)
        nan_input = client.capture(
            model=MODEL, data_source=source, input={"score": float("nan")}, confidence=0.1
        )
        with caplog.at_level(logging.WARNING, logger="failcat_client"):
            assert client.flush(60)
        stats = client.stats()
    assert stats["invalid"] == 2 and stats["sent"] == 2 and stats["retried"] == 0
    warning = "\n".join(r.getMessage() for r in caplog.records)
    assert bad_confidence in warning and "confidence" in warning
    assert no_version in warning and "model.version" in warning
    stored = by_external_id(server.cases(source))
    assert set(stored) == {good, nan_input}
    # NaN is not JSON: it travels as null instead of spoiling the whole batch.
    assert stored[nan_input]["input"] == {"score": None}


@pytest.mark.parametrize("url", [None, "", "failcat.example.com"])
def test_a_missing_or_schemeless_url_is_a_clear_error_at_construction(url: Any) -> None:
    """Not an AttributeError from url.rstrip, nor a client that only logs while it drops."""
    from failcat_client import AsyncClient

    for cls in (Client, AsyncClient):
        with pytest.raises(ValueError, match=r"^failcat_client: url .*(required|http)"):
            cls(url, "id", "secret")


def test_caller_never_blocks_or_raises_when_the_server_is_down(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{_closed_port()}"
    client = Client(
        dead, "id", "secret", queue_size=100, batch_size=10, max_retries=1,
        backoff_base_s=0.01, flush_interval_s=0.01, timeout_s=1,
    )  # fmt: skip
    n = 5000
    worst = 0.0
    for i in range(n):
        started = time.perf_counter()
        result = client.capture(model=MODEL, data_source="down", input={"i": i})
        worst = max(worst, time.perf_counter() - started)
        assert result is None or isinstance(result, str)
    # Bad arguments are the caller's bug, but still never an exception in its path.
    client.capture(model=object(), data_source=None, input=object())
    started = time.perf_counter()
    client.flush(0.2)  # True or False by timing (dropped cases leave nothing pending)
    assert time.perf_counter() - started < 1.0
    client.close(timeout=2)
    stats = client.stats()
    # Without a spool every case is accounted as dropped: at the full queue, after retries,
    # or at close.
    assert stats["sent"] == 0 and stats["pending"] == 0 and stats["spooled"] == 0
    assert stats["dropped"] == n + 1
    assert stats["queued"] < n  # the queue bound was hit (queue_size=100)
    assert worst < 0.5, f"a capture() call took {worst * 1000:.1f} ms"


def test_retries_never_duplicate_across_a_server_crash(own_server: FailcatServer, tmp_path: Path):
    source = unique_source("crash")
    own_server.start()
    client = Client(
        *own_server.client_args(),
        batch_size=100,
        flush_interval_s=0.05,
        backoff_base_s=0.05,
        backoff_max_s=0.5,
        spool_dir=str(tmp_path / "spool"),
    )
    n = 3000
    ids: list[str] = []

    def produce() -> None:
        for i in range(n):
            ids.append(client.capture(model=MODEL, data_source=source, input={"i": i}))
            if i % 100 == 0:
                time.sleep(0.02)

    producer = threading.Thread(target=produce)
    producer.start()
    time.sleep(0.3)
    own_server.kill()  # mid-stream: some batches are lost in flight, answers included
    time.sleep(1.5)
    own_server.start()
    producer.join()
    assert client.flush(120), client.stats()
    stats = client.stats()
    client.close()

    stored = [c["externalId"] for c in own_server.cases(source)]
    assert len(stored) == n, f"{len(stored)} stored of {n}: {stats}"
    assert set(stored) == set(ids)
    assert stats["sent"] == n and stats["dropped"] == 0
    assert stats["retried"] > 0  # the crash was noticed, not slept through


def test_recorded_events_arrive_beside_the_cases(server: FailcatServer) -> None:
    source = unique_source("events")
    with Client(*server.client_args(), flush_interval_s=0.05) as client:
        before = client.capture(model=MODEL, data_source=source, input={"n": 1})
        deploy = client.record_event(
            "deploy",
            model=MODEL,
            data_source=source,
            environment={"region": "eu"},
            link="https://ci.example/deploys/42",
            rollout="canary 10%",
        )
        drift = client.record_event(
            "drift_alert",
            model=MODEL,
            data_source=source,
            metric="psi",
            value=0.31,
            threshold=0.2,
            feature="merchant_category",
            title="PSI over threshold",
        )
        after = client.capture(model=MODEL, data_source=source, input={"n": 2})
        assert client.flush(60)
        stats = client.stats()
    assert stats["sent"] == 4 and stats["dropped"] == 0 and stats["invalid"] == 0, stats
    assert {c["externalId"] for c in server.cases(source)} == {before, after}
    listed = httpx.get(
        f"{server.base}/catalog/v1/events",
        params={"data_source": source},
        headers={"Authorization": f"Bearer {server.token()}"},
    )
    assert listed.status_code == 200, listed.text
    events = {e["external_id"]: e for e in listed.json()["events"]}
    assert {deploy, drift} <= set(events)  # events with an open source scope list too
    assert events[deploy]["scope"]["version"] == MODEL["version"]
    assert events[deploy]["details"]["rollout"] == "canary 10%"
    details = events[drift]["details"]
    assert (details["metric"], details["value"], details["threshold"]) == ("psi", 0.31, 0.2)
    assert events[drift]["title"] == "PSI over threshold"


def test_an_event_the_server_refuses_counts_invalid_with_a_warning(
    server: FailcatServer, caplog: pytest.LogCaptureFixture
) -> None:
    source = unique_source("bad-events")
    with Client(*server.client_args(), flush_interval_s=0.05) as client:
        client.record_event("no_such_kind", model=MODEL, data_source=source)
        client.record_event("deploy", model={"name": MODEL["name"]}, data_source=source)
        assert client.flush(60)
        stats = client.stats()
    assert stats["invalid"] == 2 and stats["sent"] == 0, stats
    assert any("not stored" in r.getMessage() and "kind" in r.getMessage() for r in caplog.records)


class CountingTransport(httpx.AsyncHTTPTransport):
    """The real network transport, counting requests per path."""

    def __init__(self) -> None:
        super().__init__()
        self.paths: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        return await super().handle_async_request(request)


def test_consecutive_events_share_a_request(server: FailcatServer) -> None:
    """Each event was a request of its own: 913 deploys (one per AIID incident) took 17.6 s
    where the same number of cases took 0.8 s. Consecutive events now go as one array, in
    capture order with the cases around them, and are answered item by item."""
    source = unique_source("many-events")
    records = corpus_inputs(300)
    transport = CountingTransport()
    with Client(*server.client_args(), transport=transport, flush_interval_s=60) as client:
        first = client.capture(model=MODEL, data_source=source, input={"n": 1})
        ids = [
            client.record_event(
                "deploy",
                model=MODEL,
                data_source=source,
                occurred_at=f"{r['date']}T00:00:00Z",
                title=r["title"][:200],
                rollout="full",
            )
            for r in records
        ]
        client.record_event("deploy", model={"name": MODEL["name"]}, data_source=source)
        last = client.capture(model=MODEL, data_source=source, input={"n": 2})
        assert client.flush(60)
        stats = client.stats()
    assert stats["sent"] == 302 and stats["invalid"] == 1 and stats["dropped"] == 0, stats
    assert transport.paths.count("/catalog/v1/events") == 1, transport.paths
    assert {c["externalId"] for c in server.cases(source)} == {first, last}
    listed = httpx.get(
        f"{server.base}/catalog/v1/events",
        params={"data_source": source, "first": 500},
        headers={"Authorization": f"Bearer {server.token()}"},
    )
    assert listed.status_code == 200, listed.text
    assert set(ids) <= {e["external_id"] for e in listed.json()["events"]}


def _closed_port() -> int:
    from benchmarks.common import free_port

    return free_port()


# Forking a process that runs threads (pytest's event loop, aiosqlite workers) can deadlock
# the child on a lock some thread held; the pre-forked server is a fresh process, as here.
FORK_SCENARIO = """
import json, os, sys
from failcat_client import Client

url, client_id, secret, source, spool, mid_import = sys.argv[1:7]
model = {"name": "incident-classifier", "version": "2.0.0"}
if mid_import == "yes":
    importing = hold_sender_imports()
client = Client(url, client_id, secret, spool_dir=spool, flush_interval_s=0.05)
parent_id = client.capture(model=model, data_source=source, input={"who": "parent"})
if mid_import == "yes":
    importing.wait(3)  # fork while the sender is inside an import, if it ever imports
read, write = os.pipe()
pid = os.fork()
if pid == 0:  # the child: a pre-forked worker
    code = 1
    try:
        os.close(read)
        child_id = client.capture(model=model, data_source=source, input={"who": "child"})
        flushed = client.flush(30)
        stats = client.stats()
        if not flushed:  # where the child's sender is stuck, for the failure message
            import faulthandler; faulthandler.dump_traceback(all_threads=True)
        ok = flushed and stats["sent"] == 1
        os.write(write, json.dumps({"id": child_id, "ok": ok, "stats": stats}).encode())
        code = 0
    finally:
        os._exit(code)
os.close(write)
with os.fdopen(read) as pipe:
    child = json.loads(pipe.read())
child_status = os.waitpid(pid, 0)[1]
flushed = client.flush(30)
client.close()
print(json.dumps({"parent": parent_id, "child": child, "child_status": child_status,
                  "flushed": flushed, "parent_sent": client.stats()["sent"]}))
"""


# For the mid-import variant: the sender thread's imports stall half way (the module already in
# `sys.modules`, not yet executed), the way a slow import on a busy machine does.
HOLD_SENDER_IMPORTS = """
import importlib.abc, importlib.machinery, sys, threading, time

class _Stall(importlib.abc.MetaPathFinder):
    def __init__(self, importing):
        self.importing = importing

    def find_spec(self, name, path, target=None):
        if threading.current_thread().name != "failcat-client-sender" or "." in name:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return None
        run, importing = spec.loader.exec_module, self.importing

        def exec_module(module):
            importing.set()
            time.sleep(1)
            run(module)

        spec.loader.exec_module = exec_module
        return spec

def hold_sender_imports():
    importing = threading.Event()
    sys.meta_path.insert(0, _Stall(importing))
    return importing
"""


@pytest.mark.parametrize("mid_import", ["no", "yes"])
def test_a_client_created_before_fork_works_in_the_child(
    server: FailcatServer, tmp_path: Path, mid_import: str
):
    """`yes`: the parent forks while its sender thread is inside an import (httpx imports
    httpcore lazily): the child must not inherit a half-initialized module."""
    source = unique_source("fork")
    scenario = HOLD_SENDER_IMPORTS + FORK_SCENARIO
    done = subprocess.run(
        [sys.executable, "-c", scenario, *server.client_args(), source, str(tmp_path), mid_import],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["child_status"] == 0 and answer["child"]["ok"], (answer, done.stderr)
    assert answer["flushed"]
    assert answer["parent_sent"] == 1  # the parent's own case, counted once
    stored = {c["externalId"] for c in server.cases(source)}
    assert stored == {answer["parent"], answer["child"]["id"]}


IMPORTS_SCENARIO = """
import json, ssl, sys, threading
from failcat_client import Client

made_by = []  # the threads that made an SSL context (httpx: ssl.create_default_context)
make = ssl.create_default_context

def watched(*args, **kwargs):
    made_by.append(threading.current_thread().name)
    return make(*args, **kwargs)

ssl.create_default_context = watched

url, client_id, secret, source = sys.argv[1:5]
client = Client(url, client_id, secret, flush_interval_s=0.05)
constructed = set(sys.modules)
client.capture(model={"name": "incident-classifier", "version": "2.0.0"}, data_source=source)
flushed = client.flush(30)
client.close()
print(json.dumps({"flushed": flushed, "sent": client.stats()["sent"], "ssl": made_by,
                  "late": sorted(set(sys.modules) - constructed)}))
"""


def test_the_sender_imports_nothing_and_makes_no_ssl_context(server: FailcatServer):
    """httpx imports httpcore, anyio, h11 and certifi lazily. Done by the sender thread on
    its first request, a fork in the middle (gunicorn --preload forking right after the Client
    was made) left the child a half-initialized httpcore and a dead sender: the
    [real] flake of the fork test. Everything is imported before the constructor returns."""
    done = subprocess.run(
        [sys.executable, "-c", IMPORTS_SCENARIO, *server.client_args(), unique_source("imports")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["flushed"] and answer["sent"] == 1, answer
    assert answer["late"] == [], answer  # imported by the sender after construction
    # Nor does it make its SSL context: a fork inside SSL_CTX_new left OpenSSL's locks held in
    # the child, whose sender then hung making its own.
    assert answer["ssl"] == ["MainThread"], answer


class LoseFirstAnswer(httpx.AsyncHTTPTransport):
    """The real network, except that the first bulk answer is lost after the server has
    stored the batch (a connection reset on the way back)."""

    def __init__(self) -> None:
        super().__init__()
        self.bulk_requests = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await super().handle_async_request(request)
        if request.url.path.endswith(":bulk"):
            self.bulk_requests += 1
            if self.bulk_requests == 1:
                await response.aread()
                await response.aclose()
                raise httpx.ReadError("connection reset by peer", request=request)
        return response


def test_a_batch_whose_answer_was_lost_is_resent_and_stored_once(server: FailcatServer):
    source = unique_source("lost-answer")
    transport = LoseFirstAnswer()
    # One batch of 50, sent when the 50th case arrives (no timer in between).
    client = Client(*server.client_args(), transport=transport, batch_size=50,
                    flush_interval_s=30, backoff_base_s=0.01)  # fmt: skip
    ids = [client.capture(model=MODEL, data_source=source, input={"i": i}) for i in range(50)]
    assert client.flush(30)
    client.close()
    stats = client.stats()
    assert transport.bulk_requests == 2
    assert stats["retried"] == 50 and stats["sent"] == 50
    stored = [c["externalId"] for c in server.cases(source)]
    assert sorted(stored) == sorted(ids)  # the resent batch was answered `duplicate`


class BodySizes(httpx.AsyncHTTPTransport):
    """The real network, noting the size of each bulk request body."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[int] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith(":bulk"):
            self.sizes.append(len(request.content))
        return await super().handle_async_request(request)


def test_requests_are_cut_by_bytes_as_well_as_by_count(server: FailcatServer) -> None:
    source = unique_source("bytes")
    transport = BodySizes()
    client = Client(*server.client_args(), transport=transport, batch_size=500,
                    batch_bytes=4096, flush_interval_s=30)  # fmt: skip
    records = corpus_inputs(40)
    for rec in records:
        client.capture(model=MODEL, data_source=source, input={"text": rec["description"]})
    assert client.flush(30)
    client.close()
    assert client.stats()["sent"] == 40
    assert len(transport.sizes) > 1
    assert max(transport.sizes) <= 4096 + 2  # the array's brackets
    assert len(server.cases(source)) == 40
