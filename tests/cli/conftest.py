"""A real `failcat serve` on a loopback port, and the CLI run as a subprocess from elsewhere."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.migrate import upgrade_async
from shared.settings import Settings
from tests.conftest import make_settings

CLI = [sys.executable, "-m", "services.gateway.cli"]
# Variables of the test process that must not leak into a CLI run (each run says what it uses).
SCRUB = ("FAILCAT_", "XDG_CONFIG_HOME")
RUN_TIMEOUT_S = 120


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def settings_env(settings: Settings) -> dict[str, str]:
    env = {
        "FAILCAT_DATA_DIR": str(settings.data_dir),
        "FAILCAT_ISSUER": settings.issuer,
        # A process that rotates keys retires the old one a token lifetime later: it must use
        # the lifetime the tokens it should keep working were minted with.
        "FAILCAT_ACCESS_TOKEN_TTL_S": str(settings.access_token_ttl_s),
    }
    if settings.database_url:
        env["FAILCAT_DATABASE_URL"] = settings.database_url
    if not settings.embedded_search:
        env["FAILCAT_SEARCH_URL"] = settings.search_url
        env["FAILCAT_SEARCH_INDEX"] = settings.search_index
    return env


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(SCRUB)}
    env.update(extra)
    return env


@dataclass
class Result:
    code: int
    out: str
    err: str


async def failcat(*argv: str, cwd: Path, env: dict[str, str], stdin: str = "") -> Result:
    proc = await asyncio.create_subprocess_exec(
        *CLI,
        *argv,
        cwd=cwd,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode()), RUN_TIMEOUT_S)
    return Result(proc.returncode or 0, out.decode(), err.decode())


@dataclass
class Server:
    url: str
    settings: Settings
    bootstrap: dict[str, str]
    proc: asyncio.subprocess.Process

    @property
    def operator_env(self) -> dict[str, str]:
        """What an operator on the server's host has: its database and data dir."""
        return clean_env(**settings_env(self.settings))


async def start_server(
    settings: Settings, port: int, *extra: str, stderr: Any = asyncio.subprocess.DEVNULL
) -> asyncio.subprocess.Process:
    """`failcat serve` for `settings`, once it answers /readyz; `stderr`: where its log goes."""
    proc = await asyncio.create_subprocess_exec(
        *CLI,
        "serve",
        "--port",
        str(port),
        *extra,
        cwd=settings.data_dir,
        env=clean_env(**settings_env(settings)),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=stderr,
    )
    url = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient() as http:
        for _ in range(300):
            if proc.returncode is not None:
                raise RuntimeError(f"failcat serve exited with {proc.returncode}")
            try:
                if (await http.get(f"{url}/readyz")).status_code == 200:
                    return proc
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    proc.kill()
    raise RuntimeError("failcat serve did not become ready in 30 s")


async def stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 15)
        except TimeoutError:
            proc.kill()
            await proc.wait()


@pytest.fixture(scope="session")
async def server(backend: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Server]:
    port = free_port()
    settings = await make_settings(
        backend, tmp_path_factory.mktemp(f"served-{backend}"), issuer=f"http://127.0.0.1:{port}"
    )
    await upgrade_async(settings.catalog_url)
    proc = await start_server(settings, port)
    bootstrap = json.loads((settings.data_dir / "bootstrap-client.json").read_text())
    try:
        yield Server(settings.issuer, settings, bootstrap, proc)
    finally:
        await stop(proc)


@pytest.fixture
def elsewhere(tmp_path: Path) -> Path:
    """An empty directory to run the CLI from (and where nothing may appear)."""
    path = tmp_path / "elsewhere"
    path.mkdir()
    return path
