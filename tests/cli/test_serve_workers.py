"""`failcat serve --workers N`: refused on the embedded backend, safe on Postgres."""

from __future__ import annotations

import asyncio
import contextlib
import json

import httpx
import pytest
from sqlalchemy import text

from services.auth.service import AuthService
from shared.db import Database
from shared.migrate import upgrade_async
from tests.cli.conftest import (
    CLI,
    clean_env,
    failcat,
    free_port,
    settings_env,
    start_server,
    stop,
)
from tests.conftest import make_settings


@pytest.mark.parametrize("workers", ["2", "0"])
async def test_workers_refused_on_the_embedded_backend(elsewhere, workers):
    env = clean_env(FAILCAT_DATA_DIR=str(elsewhere / "data"))
    result = await failcat(
        "serve", "--port", str(free_port()), "--workers", workers, cwd=elsewhere, env=env
    )
    assert result.code == 2
    if workers == "2":
        assert result.err == (
            "failcat: --workers 2 needs Postgres and OpenSearch (FAILCAT_DATABASE_URL, "
            "FAILCAT_SEARCH_URL); the embedded backend serves from one process\n"
        )
    else:
        assert result.err == "failcat: --workers 0: must be at least 1\n"
    assert list(elsewhere.iterdir()) == []  # refused before anything was created


async def test_a_port_out_of_range_is_refused_at_once(elsewhere):
    env = clean_env(FAILCAT_DATA_DIR=str(elsewhere / "data"))
    result = await failcat("serve", "--port", "99999", cwd=elsewhere, env=env)
    assert (result.code, result.err) == (2, "failcat: --port 99999: must be between 0 and 65535\n")


async def test_the_issuer_defaults_to_the_address_served(tmp_path):
    """Without FAILCAT_ISSUER, the metadata names this server's port, not 8000's: a client
    following it reaches this server (and sends its secret nowhere else)."""
    settings = await make_settings("embedded", tmp_path)
    port = free_port()
    env = {k: v for k, v in settings_env(settings).items() if k != "FAILCAT_ISSUER"}
    proc = await asyncio.create_subprocess_exec(
        *CLI,
        "serve",
        "--port",
        str(port),
        cwd=tmp_path,
        env=clean_env(**env),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient() as http:
            for _ in range(300):
                with contextlib.suppress(httpx.HTTPError):
                    meta = await http.get(f"{base}/.well-known/oauth-authorization-server")
                    break
                await asyncio.sleep(0.1)
        assert meta.json()["token_endpoint"] == f"{base}/oauth/token"
        assert meta.json()["issuer"] == base
    finally:
        await stop(proc)


async def test_bootstrap_client_is_created_once_by_racing_processes(tmp_path):
    settings = await make_settings("real", tmp_path)
    await upgrade_async(settings.catalog_url)
    # Separate engines: separate connections, as separate processes would have.
    dbs = [Database(settings.catalog_url) for _ in range(4)]
    try:
        for db in dbs:  # connected first, so the four really start together
            async with db.transaction() as session:
                await session.execute(text("SELECT 1"))
        created = await asyncio.gather(
            *(AuthService(settings, db).ensure_bootstrap_client() for db in dbs)
        )
        assert sum(c is not None for c in created) == 1
        async with dbs[0].transaction() as session:
            clients = await AuthService(settings, dbs[0]).list_clients(session)
        assert [c.name for c in clients] == ["bootstrap-admin"]
        [winner] = [c for c in created if c is not None]
        assert json.loads((tmp_path / "bootstrap-client.json").read_text()) == winner
    finally:
        for db in dbs:
            await db.dispose()


async def test_two_workers_on_postgres_serve_with_one_bootstrap_client(tmp_path):
    port = free_port()
    settings = await make_settings("real", tmp_path, issuer=f"http://127.0.0.1:{port}")
    await upgrade_async(settings.catalog_url)
    proc = await start_server(settings, port, "--workers", "2")
    try:
        creds = json.loads((tmp_path / "bootstrap-client.json").read_text())
        async with httpx.AsyncClient(base_url=settings.issuer) as http:
            token = await http.post(
                "/oauth/token",
                data={"grant_type": "client_credentials"},
                auth=(creds["client_id"], creds["client_secret"]),
            )
            assert token.status_code == 200, token.text
            headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
            # Tokens one worker issued are valid in the other (shared keys in the database).
            answers = await asyncio.gather(
                *(http.get("/catalog/v1/cases", headers=headers) for _ in range(40))
            )
            assert {r.status_code for r in answers} == {200}, [
                r.text for r in answers if r.status_code != 200
            ][:2]
        listed = await failcat(
            "clients", "list", cwd=tmp_path, env=clean_env(**settings_env(settings))
        )
        names = [c["name"] for c in json.loads(listed.out)]
        assert names.count("bootstrap-admin") == 1, names
    finally:
        await stop(proc)
