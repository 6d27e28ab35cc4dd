"""Interop: authlib's own httpx OAuth2 client, configured only from RFC 8414 discovery."""

from __future__ import annotations

import time

import httpx
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import AsyncOAuth2Client
from joserfc import jwt
from joserfc.jwk import KeySet
from joserfc.jwt import JWTClaimsRegistry

from tests.auth.builders import make_user, query_of, register, sign_in

REDIRECT = "https://interop.example/cb"


def _oauth(app, settings, **kwargs) -> AsyncOAuth2Client:
    return AsyncOAuth2Client(
        transport=httpx.ASGITransport(app=app), base_url=settings.issuer, **kwargs
    )


def _verify_independently(token: str, jwks: dict, settings) -> dict:
    decoded = jwt.decode(token, KeySet.import_key_set(jwks), algorithms=["ES256"])
    assert decoded.header["typ"] == "at+jwt"
    JWTClaimsRegistry(
        iss={"essential": True, "value": settings.issuer},
        aud={"essential": True, "value": settings.audience},
        exp={"essential": True},
        jti={"essential": True},
    ).validate(decoded.claims)
    return decoded.claims


async def test_client_credentials_introspect_revoke_with_authlib_client(app, settings):
    c = await register(app, scopes=["cases:read", "plans:read"])
    async with _oauth(
        app, settings, client_id=c.client_id, client_secret=c.secret, scope="cases:read"
    ) as oauth:
        meta = (
            await oauth.request(
                "GET", "/.well-known/oauth-authorization-server", withhold_token=True
            )
        ).json()
        jwks = (await oauth.request("GET", meta["jwks_uri"], withhold_token=True)).json()

        token = await oauth.fetch_token(meta["token_endpoint"], grant_type="client_credentials")
        assert token["scope"] == "cases:read"
        claims = _verify_independently(token["access_token"], jwks, settings)
        assert claims["client_id"] == c.client_id
        assert claims["exp"] > time.time()

        intro = await oauth.introspect_token(
            meta["introspection_endpoint"], token=token["access_token"]
        )
        assert intro.json()["active"] is True

        revoked = await oauth.revoke_token(meta["revocation_endpoint"], token=token["access_token"])
        assert revoked.status_code == 200
        intro = await oauth.introspect_token(
            meta["introspection_endpoint"], token=token["access_token"]
        )
        assert intro.json() == {"active": False}


async def test_authorization_code_pkce_and_refresh_with_authlib_client(app, settings, client):
    c = await register(
        app,
        scopes=["cases:read", "cases:write"],
        grant_types=["authorization_code", "refresh_token"],
        redirect_uris=[REDIRECT],
    )
    user = await make_user(app, ["curator"])
    async with _oauth(
        app,
        settings,
        client_id=c.client_id,
        client_secret=c.secret,
        redirect_uri=REDIRECT,
        scope="cases:read",
        code_challenge_method="S256",
    ) as oauth:
        meta = (
            await oauth.request(
                "GET", "/.well-known/oauth-authorization-server", withhold_token=True
            )
        ).json()
        verifier = generate_token(48)
        url, state = oauth.create_authorization_url(
            meta["authorization_endpoint"], code_verifier=verifier
        )
        params = dict(httpx.URL(url).params)
        assert params["code_challenge_method"] == "S256"

        # The person's browser: our test client signs in on the page.
        resp = await sign_in(client, params, *user)
        location = resp.headers["location"]
        assert query_of(location)["state"] == state

        token = await oauth.fetch_token(
            meta["token_endpoint"], authorization_response=location, code_verifier=verifier
        )
        jwks = (await oauth.request("GET", meta["jwks_uri"], withhold_token=True)).json()
        claims = _verify_independently(token["access_token"], jwks, settings)
        assert claims["scope"] == "cases:read"

        refreshed = await oauth.refresh_token(
            meta["token_endpoint"], refresh_token=token["refresh_token"]
        )
        assert refreshed["access_token"] != token["access_token"]
        assert refreshed["refresh_token"] != token["refresh_token"]
