"""Fixtures: every behaviour runs on the embedded backends and on real Postgres + OpenSearch.

The real backends come from the project's scripts (infra/scripts/test.sh exports their URLs as
FAILCAT_TEST_DATABASE_URL and FAILCAT_TEST_OPENSEARCH_URL). Under CI=true a missing backend
fails the run naming it; elsewhere those tests skip with the reason.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from shared.db import Database
from shared.migrate import upgrade_async
from shared.settings import Settings

IN_CI = os.environ.get("CI", "").lower() == "true"
BACKENDS = ["embedded", "real"]


def backend_unavailable(reason: str) -> None:
    """A real backend is missing: under CI=true the run fails naming it; elsewhere it skips."""
    if IN_CI:
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)  # not in CI: see above


def require_env(name: str, what: str) -> str:
    value = os.environ.get(name)
    if not value:
        backend_unavailable(f"{what} is not available: set {name} (make test starts it)")
    return value


def postgres_url() -> str:
    return require_env("FAILCAT_TEST_DATABASE_URL", "real Postgres")


def opensearch_url() -> str:
    return require_env("FAILCAT_TEST_OPENSEARCH_URL", "real OpenSearch")


async def fresh_postgres_database(base_url: str) -> str:
    """A new empty database on the test cluster, so sessions never see each other's rows."""
    import asyncpg

    name = f"failcat_t_{secrets.token_hex(4)}"
    dsn = base_url.replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return base_url.rsplit("/", 1)[0] + "/" + name


async def make_settings(backend: str, data_dir: Path, **extra: object) -> Settings:
    if backend == "embedded":
        return Settings(data_dir=data_dir, **extra)
    db_url = await fresh_postgres_database(postgres_url())
    return Settings(
        data_dir=data_dir,
        database_url=db_url,
        search_url=opensearch_url(),
        search_index=f"failcat-t-{secrets.token_hex(4)}",
        **extra,
    )


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


# The session's tokens (admin_token, token_for) are minted once and used for the whole run,
# which on a slow machine outlasts the default 15-minute lifetime; and tests/auth/test_cli.py
# rotates the session's signing key, which retires the old one lifetime + 2 min later. Six
# hours covers any run; expiry itself is tested on servers of its own (tests/sdk/test_auth.py).
SESSION_TOKEN_TTL_S = 6 * 3600


@pytest.fixture(scope="session")
async def settings(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    s = await make_settings(
        backend,
        tmp_path_factory.mktemp(f"data-{backend}"),
        access_token_ttl_s=SESSION_TOKEN_TTL_S,
    )
    await upgrade_async(s.catalog_url)
    return s


@pytest.fixture(scope="session")
async def db(settings: Settings) -> AsyncIterator[Database]:
    database = Database(settings.catalog_url)
    yield database
    await database.dispose()


@pytest.fixture
async def session(db: Database) -> AsyncIterator[object]:
    """A session whose transaction is rolled back after the test."""
    async with db.sessionmaker() as s:
        await s.begin()
        try:
            yield s
        finally:
            await s.rollback()


@pytest.fixture(scope="session")
async def app(settings: Settings) -> AsyncIterator[object]:
    from services.gateway.app import create_app

    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture(scope="session")
async def client(app: object, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url=settings.issuer) as c:
        yield c


@pytest.fixture(scope="session")
async def bootstrap(app: object) -> dict[str, str]:
    created = await app.state.auth.ensure_bootstrap_client()  # type: ignore[attr-defined]
    if created is None:
        import json

        path = app.state.settings.data_dir / "bootstrap-client.json"  # type: ignore[attr-defined]
        created = json.loads(path.read_text())
    return created


@dataclass
class TokenFactory:
    app: object
    client: httpx.AsyncClient

    async def __call__(
        self, scopes: str, team: str | None = None, clearance: str = "internal"
    ) -> str:
        auth = self.app.state.auth  # type: ignore[attr-defined]
        async with self.app.state.db.transaction() as s:  # type: ignore[attr-defined]
            record, secret = await auth.create_client(
                s,
                name=f"test-{secrets.token_hex(3)}",
                scopes=scopes.split(),
                team=team,
                clearance=clearance,
            )
        resp = await self.client.post(
            "/oauth/token",
            data={"grant_type": "client_credentials", "scope": scopes},
            auth=(record.client_id, secret),
        )
        assert resp.status_code == 200, resp.text
        return resp.json()["access_token"]


@pytest.fixture(scope="session")
def token_for(app: object, client: httpx.AsyncClient) -> Callable[..., Awaitable[str]]:
    return TokenFactory(app, client)


@pytest.fixture(scope="session")
async def admin_token(token_for: Callable[..., Awaitable[str]]) -> str:
    return await token_for("admin", clearance="restricted")


def auth_header(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
