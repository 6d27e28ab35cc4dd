"""An audited case(id) on SQLite: its entry is appended and committed on the read's own trip to
the driver's thread (shared.audit.read_appending), so it costs no trip more than the unaudited
read; a refused read appends nothing, and inside a write the entry waits for that commit."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import aiosqlite
import httpx
import pytest
from sqlalchemy import func, select, text

from services.audit.models import AuditEntry
from services.audit.service import verify
from services.catalog import service as catalog
from services.gateway.app import create_app
from shared.audit import entry
from shared.errors import NotFound
from shared.migrate import upgrade_async
from shared.security import Principal, Sensitivity
from tests.catalog.builders import unique
from tests.conftest import auth_header, make_settings
from tests.corpus import aiid_cases

ONE = "query One($id: ID!) { case(id: $id) { id title model { name } } }"


@pytest.fixture
async def served(tmp_path) -> AsyncIterator[tuple[object, httpx.AsyncClient, str, list[str]]]:
    """An embedded app of the test's own (the trips are SQLite's), an admin token, two cases."""
    settings = await make_settings("embedded", tmp_path / "data")
    await upgrade_async(settings.catalog_url)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        async with app.state.db.transaction() as s:
            record, secret = await app.state.auth.create_client(
                s, name="trips", scopes=["admin"], clearance=Sensitivity.RESTRICTED
            )
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=settings.issuer) as client:
            token = await client.post(
                "/oauth/token",
                data={"grant_type": "client_credentials", "scope": "admin"},
                auth=(record.client_id, secret),
            )
            access = token.json()["access_token"]
            ingested = await client.post(
                "/catalog/v1/cases:bulk",
                json=unique(aiid_cases(2)),
                headers=auth_header(access),
            )
            ids = [r["id"] for r in ingested.json()["results"]]
            yield app, client, access, ids


# The trips of the request under test only (`counting`): the app's background jobs (indexer,
# deliveries) run in tasks created before it is set, whose contexts never see it.
_COUNTING: ContextVar[list[str] | None] = ContextVar("counting", default=None)


@contextmanager
def counting() -> Iterator[list[str]]:
    """The name of each function run on aiosqlite's thread by this task (and the tasks it
    starts) meanwhile."""
    seen: list[str] = []
    reset = _COUNTING.set(seen)
    try:
        yield seen
    finally:
        _COUNTING.reset(reset)


@pytest.fixture
def trips(monkeypatch) -> None:
    execute = aiosqlite.Connection._execute

    async def counted(self, fn, *args, **kwargs):
        counting = _COUNTING.get()
        if counting is not None:
            counting.append(getattr(fn, "__name__", repr(fn)))
        return await execute(self, fn, *args, **kwargs)

    monkeypatch.setattr(aiosqlite.Connection, "_execute", counted)


async def _reads_of(app, case_id: str) -> int:
    async with app.state.db.transaction() as s:
        stmt = select(func.count()).select_from(AuditEntry)
        stmt = stmt.where(AuditEntry.action == "case.read", AuditEntry.target == f"case:{case_id}")
        return (await s.execute(stmt)).scalar_one()


async def test_an_audited_case_read_is_one_trip_and_its_entry_is_stored(served, trips):
    app, client, token, [case_id, _] = served
    before = await _reads_of(app, case_id)
    read = {"query": ONE, "variables": {"id": case_id}}
    with counting() as seen:
        resp = await client.post("/graphql", json=read, headers=auth_header(token))
    assert resp.json()["data"]["case"]["id"] == case_id, resp.text
    assert seen == ["_run"]  # the read, its entry and the commit; no COMMIT trip after it
    assert await _reads_of(app, case_id) == before + 1
    checked = await verify(app.state.db, app.state.settings)
    assert checked.ok, checked


async def test_a_rest_case_read_is_one_trip_and_its_entry_is_stored(served, trips):
    """GET /catalog/v1/cases/{id}: the case with its relations (services/catalog/hydration.py)
    and its entry on the same trip; a case that is not there appends nothing."""
    app, client, token, [case_id, _] = served
    before = await _reads_of(app, case_id)
    with counting() as seen:
        resp = await client.get(f"/catalog/v1/cases/{case_id}", headers=auth_header(token))
    assert resp.status_code == 200 and resp.json()["model"]["name"], resp.text
    assert seen == ["_run"]
    assert await _reads_of(app, case_id) == before + 1
    missing = await client.get("/catalog/v1/cases/no-such-case", headers=auth_header(token))
    assert missing.status_code == 404, missing.text
    assert await _reads_of(app, "no-such-case") == 0
    checked = await verify(app.state.db, app.state.settings)
    assert checked.ok, checked


async def test_the_unaudited_read_takes_as_many_trips(served, trips):
    """The benchmark's baseline (FAILCAT_AUDIT_READS=false): the same one trip."""
    app, _, token, [case_id, _] = served
    quiet = create_app(app.state.settings.model_copy(update={"audit_reads": False}))
    async with quiet.router.lifespan_context(quiet):
        transport = httpx.ASGITransport(app=quiet)
        base = app.state.settings.issuer
        async with httpx.AsyncClient(transport=transport, base_url=base) as other:
            before = await _reads_of(app, case_id)
            read = {"query": ONE, "variables": {"id": case_id}}
            await other.post("/graphql", json=read, headers=auth_header(token))  # a warm pool
            with counting() as seen:
                resp = await other.post("/graphql", json=read, headers=auth_header(token))
            assert resp.json()["data"]["case"]["id"] == case_id, resp.text
            assert seen == ["_run"]
            assert await _reads_of(app, case_id) == before


async def test_a_refused_read_appends_nothing(served):
    app, _, _, [case_id, _] = served
    before = await _reads_of(app, case_id)
    outsider = Principal(
        subject="outsider",
        client_id="outsider",
        scopes=frozenset({"cases:read"}),
        team="another-team-" + secrets.token_hex(3),
        clearance=Sensitivity.PUBLIC,
    )
    async with app.state.db.transaction() as s:
        with pytest.raises(NotFound):
            await catalog.get_visible_case_and(
                s,
                case_id,
                outsider,
                lambda _: text("1"),
                {},
                entry(outsider, "case.read", f"case:{case_id}", read=True),
            )
        with pytest.raises(NotFound):
            await catalog.get_visible_case_and(
                s, "no-such-case", outsider, lambda _: text("1"), {}, entry(outsider, "case.read")
            )
    assert await _reads_of(app, case_id) == before


async def test_inside_a_write_the_entry_waits_for_its_commit(served):
    """A unit of work that has written keeps one transaction: the read's entry is staged, and
    goes with the write when it rolls back."""
    app, _, _, [_, case_id] = served
    admin = Principal(
        subject="admin",
        client_id="admin",
        scopes=frozenset({"admin"}),
        clearance=Sensitivity.RESTRICTED,
    )
    before = await _reads_of(app, case_id)
    with pytest.raises(RuntimeError):
        async with app.state.db.transaction() as s:
            await s.execute(text("UPDATE audit_head SET seq = seq WHERE id = 1"))  # a write
            await catalog.get_visible_case_and(
                s,
                case_id,
                admin,
                lambda _: text("1"),
                {},
                entry(admin, "case.read", f"case:{case_id}", read=True),
            )
            raise RuntimeError("the write fails")
    assert await _reads_of(app, case_id) == before
    async with app.state.db.transaction() as s:
        await s.execute(text("UPDATE audit_head SET seq = seq WHERE id = 1"))
        await catalog.get_visible_case_and(
            s,
            case_id,
            admin,
            lambda _: text("1"),
            {},
            entry(admin, "case.read", f"case:{case_id}", read=True),
        )
    assert await _reads_of(app, case_id) == before + 1
