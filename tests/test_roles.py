"""`failcat serve --role auth` runs the authorization server alone (DESIGN: one image, roles)."""

from __future__ import annotations

import httpx

from services.gateway.app import create_app


async def test_auth_role_serves_oauth_but_no_catalog_or_graphql(settings, bootstrap):
    app = create_app(settings, role="auth")
    async with app.router.lifespan_context(app):
        assert app.state.search is None
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=settings.issuer) as c:
            meta = await c.get("/.well-known/oauth-authorization-server")
            assert meta.status_code == 200 and meta.json()["issuer"] == settings.issuer
            token = await c.post(
                "/oauth/token",
                data={"grant_type": "client_credentials"},
                auth=(bootstrap["client_id"], bootstrap["client_secret"]),
            )
            assert token.status_code == 200
            assert (await c.get("/oauth/jwks.json")).json()["keys"]
            assert (await c.get("/healthz")).status_code == 200
            headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
            assert (
                await c.post("/graphql", json={"query": "{ models { name } }"}, headers=headers)
            ).status_code == 404
            assert (
                await c.post("/catalog/v1/cases:bulk", json=[], headers=headers)
            ).status_code == 404


async def test_api_role_validates_tokens_but_issues_none(settings, client, admin_token):
    app = create_app(settings, role="api")
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=settings.issuer) as c:
            assert (await c.post("/oauth/token", data={})).status_code == 404
            headers = {"Authorization": f"Bearer {admin_token}"}
            resp = await c.post("/graphql", json={"query": "{ models { name } }"}, headers=headers)
            assert resp.status_code == 200 and "errors" not in resp.json()
