"""The authorization server's wire names are defined once (services/auth/protocol.py): the
metadata advertises exactly the endpoints that are served, the device flow's verification URI
is the page that is served, and every advertised grant type can be registered."""

from __future__ import annotations

from urllib.parse import urlsplit

from tests.auth.builders import register


async def test_advertised_endpoints_are_served(client, settings):
    meta = (await client.get("/.well-known/oauth-authorization-server")).json()
    endpoints = {k: v for k, v in meta.items() if k.endswith("_endpoint") or k == "jwks_uri"}
    assert set(endpoints) == {
        "authorization_endpoint",
        "token_endpoint",
        "jwks_uri",
        "introspection_endpoint",
        "revocation_endpoint",
        "device_authorization_endpoint",
    }
    for name, url in endpoints.items():
        assert url.startswith(settings.issuer), name
        method = "GET" if name in ("authorization_endpoint", "jwks_uri") else "POST"
        resp = await client.request(method, urlsplit(url).path)
        assert resp.status_code not in (404, 405), f"{name} {url} is not served: {resp.text}"
    # The documented contract paths (DESIGN.md), as the advertised ones.
    assert urlsplit(meta["token_endpoint"]).path == "/oauth/token"
    assert urlsplit(meta["introspection_endpoint"]).path == "/oauth/introspect"
    assert urlsplit(meta["revocation_endpoint"]).path == "/oauth/revoke"
    assert urlsplit(meta["jwks_uri"]).path == "/oauth/jwks.json"


async def test_device_verification_uri_is_the_served_page(client, app, settings):
    meta = (await client.get("/.well-known/oauth-authorization-server")).json()
    device = "urn:ietf:params:oauth:grant-type:device_code"
    assert device in meta["grant_types_supported"]
    cli = await register(app, public=True, grant_types=[device])
    resp = await client.post(
        meta["device_authorization_endpoint"], data={"client_id": cli.client_id}
    )
    assert resp.status_code == 200, resp.text
    uri = resp.json()["verification_uri"]
    assert uri == f"{settings.issuer}/oauth/device"
    page = await client.get(urlsplit(uri).path)
    assert page.status_code == 200 and "action='/oauth/device'" in page.text


async def test_every_advertised_grant_type_can_be_registered(client, app):
    meta = (await client.get("/.well-known/oauth-authorization-server")).json()
    grants = meta["grant_types_supported"]
    assert set(grants) == {
        "authorization_code",
        "client_credentials",
        "refresh_token",
        "urn:ietf:params:oauth:grant-type:device_code",
    }
    c = await register(app, grant_types=grants, redirect_uris=["https://app.example/cb"])
    assert sorted(c.record.grant_types) == sorted(grants)
