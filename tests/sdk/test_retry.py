"""Backoff and Retry-After: the pure rules, then a 503 with Retry-After on the real network."""

from __future__ import annotations

import email.utils
import subprocess
import sys
import textwrap
import time

import httpx
from failcat_client import Client
from failcat_client._retry import backoff_delay, parse_retry_after

from tests.sdk.conftest import FailcatServer, unique_source

MODEL = {"name": "retry-model", "version": "1.0.0"}


def test_backoff_is_full_jitter_under_an_exponential_cap() -> None:
    for attempt, cap in ((1, 0.5), (2, 1.0), (3, 2.0), (10, 30.0)):
        delays = [backoff_delay(attempt, 0.5, 30.0) for _ in range(2000)]
        assert min(delays) >= 0 and max(delays) <= cap
        # Full jitter: spread over the whole range, not bunched near the cap.
        assert min(delays) < cap * 0.05 and max(delays) > cap * 0.95


def test_retry_after_is_a_floor_in_seconds_or_an_http_date() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    later = email.utils.formatdate(time.time() + 20, usegmt=True)
    assert 18 <= parse_retry_after(later) <= 20  # type: ignore[operator]
    assert all(backoff_delay(1, 0.1, 1.0, retry_after_s=3.0) >= 3.0 for _ in range(100))
    assert backoff_delay(1, 0.1, 1.0, retry_after_s=10_000) == 300.0


class BusyOnce(httpx.AsyncHTTPTransport):
    """The real network, except that the first bulk request is answered 503 with
    Retry-After: 1 (an overloaded proxy) without reaching the server."""

    def __init__(self) -> None:
        super().__init__()
        self.bulk_at: list[float] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith(":bulk"):
            self.bulk_at.append(time.monotonic())
            if len(self.bulk_at) == 1:
                return httpx.Response(503, headers={"Retry-After": "1"}, request=request)
        return await super().handle_async_request(request)


def test_a_503_is_retried_no_sooner_than_retry_after(server: FailcatServer) -> None:
    source = unique_source("busy")
    transport = BusyOnce()
    client = Client(*server.client_args(), transport=transport, batch_size=20,
                    flush_interval_s=30, backoff_base_s=0.01)  # fmt: skip
    ids = [client.capture(model=MODEL, data_source=source, input={"i": i}) for i in range(20)]
    assert client.flush(30)
    client.close()
    assert len(transport.bulk_at) == 2
    assert transport.bulk_at[1] - transport.bulk_at[0] >= 1.0
    stats = client.stats()
    assert stats["retried"] == 20 and stats["sent"] == 20 and stats["spooled"] == 0
    assert {c["externalId"] for c in server.cases(source)} == set(ids)


def test_cases_captured_just_before_exit_are_delivered(server: FailcatServer, tmp_path) -> None:
    source = unique_source("atexit")
    script = textwrap.dedent(
        """
        import sys
        from failcat_client import Client
        url, client_id, secret, source = sys.argv[1:5]
        client = Client(url, client_id, secret, flush_interval_s=60)
        for i in range(25):
            print(client.capture(model={"name": "exit", "version": "1"}, data_source=source,
                                 input={"i": i}))
        # no flush, no close: the interpreter's exit hook delivers
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script, *server.client_args(), source],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    ids = set(done.stdout.split())
    assert len(ids) == 25
    assert {c["externalId"] for c in server.cases(source)} == ids
