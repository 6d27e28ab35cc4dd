"""/healthz and /readyz; when the search backend is down, catalog reads and ingestion go on."""

from __future__ import annotations

import httpx

from services.gateway.app import create_app
from tests.catalog.builders import unique
from tests.conftest import auth_header
from tests.corpus import aiid_cases


async def test_health_and_ready(client):
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    resp = await client.get("/readyz")
    assert resp.status_code == 200
    assert resp.json()["checks"] == {"catalog_database": "ok", "search_backend": "ok"}


async def test_search_down_is_503_naming_it_while_catalog_keeps_working(settings, bootstrap):
    # Same catalog database and keys; an OpenSearch URL where nothing listens.
    dead = settings.model_copy(
        update={"search_url": "http://127.0.0.1:9", "database_url": settings.catalog_url}
    )
    app = create_app(dead)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=dead.issuer) as c:
            ready = await c.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["down"] == ["search_backend"]

            creds = bootstrap
            token = (
                await c.post(
                    "/oauth/token",
                    data={"grant_type": "client_credentials"},
                    auth=(creds["client_id"], creds["client_secret"]),
                )
            ).json()
            headers = auth_header(token["access_token"])
            resp = await c.post(
                "/catalog/v1/cases:bulk", json=unique(aiid_cases(2)), headers=headers
            )
            assert resp.status_code == 200 and resp.json()["counts"]["created"] == 2
            case_id = resp.json()["results"][0]["id"]
            got = await c.get(f"/catalog/v1/cases/{case_id}", headers=headers)
            assert got.status_code == 200 and got.json()["id"] == case_id
