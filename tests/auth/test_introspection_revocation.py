"""RFC 7662 introspection and RFC 7009 revocation: authenticated, own tokens only, fast effect."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

from joserfc import jwt

from services.auth import tokens
from services.auth.keys import ALG
from services.auth.models import IssuedAccessToken
from services.auth.tokens import unverified_claims
from tests.auth.builders import bearer, register


async def _token(client, c, scope=None) -> str:
    data = {"grant_type": "client_credentials"}
    if scope:
        data["scope"] = scope
    resp = await client.post("/oauth/token", data=data, auth=(c.client_id, c.secret))
    assert resp.status_code == 200, resp.text
    return resp.json()["access_token"]


async def test_introspection_of_own_token(client, app, settings):
    c = await register(app, scopes=["cases:read", "plans:read"], team="t")
    token = await _token(client, c)
    resp = await client.post(
        "/oauth/introspect", data={"token": token}, auth=(c.client_id, c.secret)
    )
    assert resp.status_code == 200
    body = resp.json()
    assert body["active"] is True
    assert body["client_id"] == c.client_id
    assert body["scope"] == "cases:read plans:read"
    assert body["iss"] == settings.issuer
    assert body["aud"] == settings.audience
    assert body["token_type"] == "Bearer"
    assert body["team"] == "t"
    assert body["exp"] > time.time()


async def test_introspection_requires_client_authentication(client, app):
    c = await register(app)
    token = await _token(client, c)
    anonymous = await client.post("/oauth/introspect", data={"token": token})
    assert anonymous.status_code in (400, 401)
    assert anonymous.json()["error"] == "invalid_client"
    wrong = await client.post(
        "/oauth/introspect", data={"token": token}, auth=(c.client_id, "wrong")
    )
    assert wrong.status_code == 401
    assert "active" not in wrong.json()


async def test_introspection_hides_other_clients_tokens(client, app):
    owner, other = await register(app), await register(app)
    token = await _token(client, owner)
    resp = await client.post(
        "/oauth/introspect", data={"token": token}, auth=(other.client_id, other.secret)
    )
    assert resp.status_code == 200
    assert resp.json() == {"active": False}


async def test_introspection_of_garbage_is_inactive(client, app):
    c = await register(app)
    for junk in ("nope", "a.b.c", ""):
        resp = await client.post(
            "/oauth/introspect", data={"token": junk}, auth=(c.client_id, c.secret)
        )
        assert resp.status_code in (200, 400)
        if resp.status_code == 200:
            assert resp.json() == {"active": False}


async def test_revocation_takes_effect_everywhere(client, app, resource):
    c = await register(app)
    token = await _token(client, c)
    assert (await resource.get("/cases", headers=bearer(token))).status_code == 200
    resp = await client.post(
        "/oauth/revoke",
        data={"token": token, "token_type_hint": "access_token"},
        auth=(c.client_id, c.secret),
    )
    assert resp.status_code == 200
    www = (await resource.get("/cases", headers=bearer(token))).headers["www-authenticate"]
    assert 'error="invalid_token"' in www
    intro = await client.post(
        "/oauth/introspect", data={"token": token}, auth=(c.client_id, c.secret)
    )
    assert intro.json() == {"active": False}
    # Revoking again, or revoking junk, is not an error (RFC 7009 section 2.2).
    again = await client.post("/oauth/revoke", data={"token": token}, auth=(c.client_id, c.secret))
    assert again.status_code == 200
    junk = await client.post("/oauth/revoke", data={"token": "junk"}, auth=(c.client_id, c.secret))
    assert junk.status_code == 200


async def test_client_cannot_revoke_another_clients_token(client, app, resource):
    owner, other = await register(app), await register(app)
    token = await _token(client, owner)
    resp = await client.post(
        "/oauth/revoke", data={"token": token}, auth=(other.client_id, other.secret)
    )
    assert resp.status_code == 400
    assert (await resource.get("/cases", headers=bearer(token))).status_code == 200


async def test_revocation_requires_client_authentication(client, app, resource):
    c = await register(app)
    token = await _token(client, c)
    resp = await client.post("/oauth/revoke", data={"token": token})
    assert resp.status_code in (400, 401)
    assert (await resource.get("/cases", headers=bearer(token))).status_code == 200


async def test_revocation_reaches_another_process_within_the_poll_interval(client, app, settings):
    """A second AuthService on the same database stands for another API process: it learns of
    the revocation only through its poll, never by a call per request."""
    from services.auth.service import AuthService
    from shared.db import Database

    c = await register(app)
    token = await _token(client, c)
    db = Database(settings.catalog_url)
    other = await AuthService.start(settings, db)
    try:
        assert other.authenticate(f"Bearer {token}").client_id == c.client_id
        revoked_at = time.monotonic()
        await client.post("/oauth/revoke", data={"token": token}, auth=(c.client_id, c.secret))
        while True:
            try:
                other.authenticate(f"Bearer {token}")
            except Exception:
                break
            assert time.monotonic() - revoked_at < 5, "revocation not seen within 5 s"
            await asyncio.sleep(0.05)
        assert time.monotonic() - revoked_at <= settings.revocation_poll_s + 1
    finally:
        await other.close()
        await db.dispose()


async def _expired_within_leeway(app, client, c, seconds_ago: int = 10) -> str:
    """A token of `c` whose exp passed `seconds_ago` (less than tokens.LEEWAY_S) ago: its
    claims re-signed with the service's signing key, its row's expiry moved to match."""
    claims = unverified_claims(await _token(client, c))
    now = int(time.time())
    claims.update(exp=now - seconds_ago, iat=now - 600)
    assert seconds_ago < tokens.LEEWAY_S
    ring = app.state.auth.ring()
    header = {"alg": ALG, "typ": "at+jwt", "kid": ring.signing_kid}
    token = jwt.encode(header, claims, ring.signing_keys, algorithms=[ALG], default_type=None)
    async with app.state.db.transaction() as s:
        row = await s.get(IssuedAccessToken, claims["jti"])
        row.expires_at = datetime.fromtimestamp(claims["exp"], UTC)
    return token


async def test_a_token_just_past_exp_is_refused_where_introspection_says_inactive(
    client, app, resource
):
    """Introspection reported such a token inactive (RFC 7662) while resource servers still
    accepted it for LEEWAY_S: exp is now checked without the leeway on both sides."""
    c = await register(app)
    token = await _expired_within_leeway(app, client, c)
    intro = await client.post(
        "/oauth/introspect", data={"token": token}, auth=(c.client_id, c.secret)
    )
    assert intro.json() == {"active": False}
    resp = await resource.get("/cases", headers=bearer(token))
    assert resp.status_code == 401, resp.text
    assert 'error_description="token expired"' in resp.headers["www-authenticate"]


async def test_a_revoked_token_is_not_accepted_again_once_past_exp(client, app, resource):
    """The revocation set forgets a jti at its exp; with the leeway, the token then worked
    again until exp + LEEWAY_S."""
    c = await register(app)
    token = await _expired_within_leeway(app, client, c)
    revoked = await client.post(
        "/oauth/revoke", data={"token": token}, auth=(c.client_id, c.secret)
    )
    assert revoked.status_code == 200
    await app.state.auth.refresh_revocations()  # the poll: prunes what is past its exp
    assert (await resource.get("/cases", headers=bearer(token))).status_code == 401


async def test_an_unknown_token_type_hint_is_ignored_and_a_missing_token_named(
    client, app, resource
):
    # RFC 7009 section 2.2: an invalid hint "is ignored ... and does not influence the
    # revocation response". It was refused: 401 unsupported_token_type, no WWW-Authenticate.
    c = await register(app)
    token = await _token(client, c)
    auth = (c.client_id, c.secret)
    hint = {"token": token, "token_type_hint": "jwt"}
    intro = await client.post("/oauth/introspect", data=hint, auth=auth)
    assert intro.status_code == 200, intro.text
    assert intro.json()["active"] is True
    revoked = await client.post("/oauth/revoke", data=hint, auth=auth)
    assert revoked.status_code == 200, revoked.text
    assert (await resource.get("/cases", headers=bearer(token))).status_code == 401

    for path in ("/oauth/introspect", "/oauth/revoke"):
        resp = await client.post(path, data={"token_type_hint": "access_token"}, auth=auth)
        assert resp.status_code == 400
        assert resp.json() == {"error": "invalid_request", "error_description": "missing token"}
