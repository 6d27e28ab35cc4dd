"""Tokens: found through the server's metadata, replaced before they expire, and replaced
once when the server answers 401 (a revoked token)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from failcat_client import Client

from tests.sdk.conftest import FailcatServer, unique_source

MODEL = {"name": "auth-model", "version": "1.0.0"}


class Recording(httpx.AsyncHTTPTransport):
    """The real network transport, noting each request's path, status and bearer token."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, int, str]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await super().handle_async_request(request)
        bearer = request.headers.get("authorization", "").removeprefix("Bearer ")
        self.seen.append((request.url.path, response.status_code, bearer))
        return response


@pytest.fixture
def short_tokens(backend: str, tmp_path) -> Iterator[FailcatServer]:
    srv = FailcatServer(tmp_path / "server", backend, FAILCAT_ACCESS_TOKEN_TTL_S="30")
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def test_token_is_refreshed_before_it_expires(short_tokens: FailcatServer) -> None:
    source = unique_source("refresh")
    recording = Recording()
    # 30 s tokens renewed with 28.5 s left: every 1.5 s.
    client = Client(*short_tokens.client_args(), transport=recording,
                    token_refresh_margin_s=28.5, flush_interval_s=0.05)  # fmt: skip
    first = client.capture(model=MODEL, data_source=source, input={"n": 1})
    assert client.flush(30)
    time.sleep(2)
    second = client.capture(model=MODEL, data_source=source, input={"n": 2})
    assert client.flush(30)
    client.close()

    paths = [path for path, _, _ in recording.seen]
    assert paths[0] == "/.well-known/oauth-authorization-server"  # discovered, not assumed
    assert paths.count("/.well-known/oauth-authorization-server") == 1
    assert paths.count("/oauth/token") == 2
    bulk = [(status, token) for path, status, token in recording.seen if path.endswith(":bulk")]
    assert [status for status, _ in bulk] == [200, 200]  # renewed ahead: no 401 on the way
    assert bulk[0][1] != bulk[1][1]
    assert client.stats()["token_fetches"] == 2
    assert {c["externalId"] for c in short_tokens.cases(source)} == {first, second}


def test_a_401_fetches_a_new_token_once_and_resends(server: FailcatServer) -> None:
    source = unique_source("revoked")
    recording = Recording()
    client = Client(*server.client_args(), transport=recording, flush_interval_s=0.05)
    first = client.capture(model=MODEL, data_source=source, input={"n": 1})
    assert client.flush(30)
    token = next(t for p, _, t in recording.seen if p.endswith(":bulk"))
    creds = server.creds
    revoked = httpx.post(
        f"{server.base}/oauth/revoke",
        data={"token": token},
        auth=(creds["client_id"], creds["client_secret"]),
    )
    assert revoked.status_code == 200
    second = client.capture(model=MODEL, data_source=source, input={"n": 2})
    assert client.flush(30)
    client.close()

    bulk = [(status, t) for p, status, t in recording.seen if p.endswith(":bulk")]
    assert [status for status, _ in bulk] == [200, 401, 200]
    assert bulk[1][1] == token and bulk[2][1] != token
    stats = client.stats()
    assert stats["sent"] == 2 and stats["retried"] == 0 and stats["token_fetches"] == 2
    assert {c["externalId"] for c in server.cases(source)} == {first, second}


def test_refused_credentials_keep_the_cases_in_the_spool(server: FailcatServer, tmp_path, caplog):
    source = unique_source("badsecret")
    base, client_id, _ = server.client_args()
    # Few attempts (the first, one probe per flush): the token endpoint slows down loopback
    # after ten failures a minute, which would starve the other tests of this server.
    client = Client(base, client_id, "wrong-secret", spool_dir=str(tmp_path / "spool"),
                    max_retries=0, backoff_base_s=30, flush_interval_s=0.02)  # fmt: skip
    client.capture(model=MODEL, data_source=source, input={"n": 1})
    assert not client.flush(1)
    client.close(timeout=0.2)
    stats = client.stats()
    assert stats["spooled"] == 1 and stats["dropped"] == 0 and stats["sent"] == 0
    # Logged as an error, as the README says: nothing is delivered until the secret is fixed.
    levels = {r.levelname for r in caplog.records if "credentials refused" in r.getMessage()}
    assert levels == {"ERROR"}
