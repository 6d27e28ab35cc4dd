"""failcat-client against the real server: `failcat serve` in a subprocess on loopback, with a
fresh data directory (and, for the [real] backend, a fresh Postgres database and OpenSearch
index), that tests may kill and restart on the same port."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from benchmarks.common import free_port
from tests.conftest import fresh_postgres_database, opensearch_url, postgres_url

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "services.gateway.cli"]


class FailcatServer:
    def __init__(self, home: Path, backend: str, **env: str) -> None:
        self.home = home
        self.data_dir = home / ".failcat"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "FAILCAT_DATA_DIR": str(self.data_dir),
            "FAILCAT_ISSUER": self.base,
            "FAILCAT_LOG_LEVEL": "WARNING",
            **env,
        }
        if backend == "real":
            self.env["FAILCAT_DATABASE_URL"] = asyncio.run(fresh_postgres_database(postgres_url()))
            self.env["FAILCAT_SEARCH_URL"] = opensearch_url()
            self.env["FAILCAT_SEARCH_INDEX"] = f"failcat-sdk-{secrets.token_hex(4)}"
        self.proc: subprocess.Popen[bytes] | None = None
        self._token: str | None = None
        subprocess.run(
            [*CLI, "db", "upgrade"], cwd=ROOT, env=self.env, check=True, capture_output=True
        )

    # ---- life cycle ----------------------------------------------------------------------
    def start(self) -> None:
        log = (self.home / "serve.log").open("a")
        self.proc = subprocess.Popen(
            [*CLI, "serve", "--port", str(self.port)],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=log,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                if httpx.get(f"{self.base}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        pytest.fail(f"failcat serve did not start:\n{(self.home / 'serve.log').read_text()}")

    def kill(self) -> None:
        """SIGKILL: requests in flight lose their answers, as in a crash."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
        self.proc = None

    # ---- credentials and reads -----------------------------------------------------------
    @property
    def creds(self) -> dict[str, str]:
        return json.loads((self.data_dir / "bootstrap-client.json").read_text())

    def client_args(self) -> tuple[str, str, str]:
        creds = self.creds
        return self.base, creds["client_id"], creds["client_secret"]

    def token(self) -> str:
        if self._token is None:
            creds = self.creds
            resp = httpx.post(
                f"{self.base}/oauth/token",
                data={"grant_type": "client_credentials"},
                auth=(creds["client_id"], creds["client_secret"]),
            )
            resp.raise_for_status()
            self._token = resp.json()["access_token"]
        return self._token

    def graphql(self, query: str, **variables: Any) -> dict[str, Any]:
        resp = httpx.post(
            f"{self.base}/graphql",
            json={"query": query, "variables": variables},
            headers={"Authorization": f"Bearer {self.token()}"},
            timeout=60,
        )
        body = resp.json()
        assert resp.status_code == 200 and not body.get("errors"), body
        return body["data"]

    def cases(self, data_source: str) -> list[dict[str, Any]]:
        """Every stored case of a data source, through GraphQL `cases` (paged)."""
        out: list[dict[str, Any]] = []
        after = None
        while True:
            page = self.graphql(
                """query($f: CaseFilterInput, $after: String) {
                  cases(filter: $f, first: 500, after: $after) {
                    nodes { id externalId title input prediction confidence latencyMs
                            signals occurredAt receivedAt model { name } modelVersion { version } }
                    pageInfo { hasNextPage endCursor }
                  }
                }""",
                f={"dataSource": data_source},
                after=after,
            )["cases"]
            out.extend(page["nodes"])
            if not page["pageInfo"]["hasNextPage"]:
                return out
            after = page["pageInfo"]["endCursor"]


@pytest.fixture(scope="module")
def server(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FailcatServer]:
    """One server per module and backend, shared by tests that never stop it (each test
    uses its own data source)."""
    srv = FailcatServer(tmp_path_factory.mktemp(f"sdk-{backend}"), backend)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def own_server(backend: str, tmp_path: Path) -> Iterator[FailcatServer]:
    """A server this test may kill and restart (started by the test)."""
    srv = FailcatServer(tmp_path / "server", backend)
    try:
        yield srv
    finally:
        srv.stop()


def unique_source(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"
