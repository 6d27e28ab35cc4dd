"""Helpers shared by the benchmark scripts: fresh databases, a served app, timing."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def postgres_url() -> str:
    url = os.environ.get("FAILCAT_BENCH_DATABASE_URL") or os.environ.get(
        "FAILCAT_TEST_DATABASE_URL"
    )
    if url:
        return url
    out = subprocess.run(
        ["bash", str(ROOT / "infra/scripts/postgres.sh"), "start"],
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip().splitlines()[-1]


def opensearch_url() -> str:
    """A running OpenSearch: the tests' (FAILCAT_TEST_OPENSEARCH_URL), else the one
    infra/scripts/opensearch.sh runs."""
    url = os.environ.get("FAILCAT_TEST_OPENSEARCH_URL")
    if url:
        return url
    out = subprocess.run(
        ["bash", str(ROOT / "infra/scripts/opensearch.sh"), "url"],
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


async def fresh_postgres(base_url: str) -> str:
    import asyncpg

    name = f"failcat_bench_{secrets.token_hex(3)}"
    conn = await asyncpg.connect(base_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return base_url.rsplit("/", 1)[0] + "/" + name


def migrated_env(prefix: str, **extra: str) -> tuple[dict[str, str], Path]:
    """A fresh data dir migrated to head (embedded unless `extra` names a database): the
    environment `served` takes, and the dir (its bootstrap client is what `token` reads)."""
    data_dir = Path(tempfile.mkdtemp(prefix=prefix))
    env = {"FAILCAT_DATA_DIR": str(data_dir), "FAILCAT_LOG_LEVEL": "WARNING", **extra}
    subprocess.run(
        [sys.executable, "-m", "services.gateway.cli", "db", "upgrade"],
        cwd=ROOT,
        env={**os.environ, **env},
        check=True,
        capture_output=True,
    )
    return env, data_dir


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def served(env: dict[str, str], workers: int = 1) -> Iterator[str]:
    """`failcat serve` in a subprocess (its own core), until the block ends; its log is
    printed if the block fails."""
    port = free_port()
    log_path = Path(tempfile.mkdtemp()) / "serve.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "services.gateway.cli",
                "serve",
                "--port",
                str(port),
                "--workers",
                str(workers),
            ],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            raise RuntimeError("server did not start")
        yield base
    except Exception:
        print(f"server log:\n{log_path.read_text()[-3000:]}", file=sys.stderr)
        raise
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def token(base: str, data_dir: Path) -> str:
    import json

    creds = json.loads((data_dir / "bootstrap-client.json").read_text())
    resp = httpx.post(
        f"{base}/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(creds["client_id"], creds["client_secret"]),
    )
    resp.raise_for_status()
    return resp.json()["access_token"]
