"""Authorization code + PKCE (S256 only) + refresh tokens, for people with local accounts."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import pytest
from sqlalchemy import update

from services.auth.credentials import digest
from services.auth.models import AuthorizationCode, AuthUser
from shared.db import utcnow
from tests.auth.builders import bearer, make_user, pkce_pair, query_of, register, sign_in

REDIRECT = "https://app.example/cb"


def _claims(token: str) -> dict:
    seg = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(seg + "=" * (-len(seg) % 4)))


@pytest.fixture
async def web_client(app):
    return await register(
        app,
        scopes=["cases:read", "cases:write", "plans:read", "audit:read"],
        grant_types=["authorization_code", "refresh_token"],
        redirect_uris=[REDIRECT],
        clearance="confidential",
    )


@pytest.fixture
async def curator(app):
    return await make_user(app, ["curator"], team="payments-ml", clearance="restricted")


def _params(c, challenge: str, **extra: str) -> dict[str, str]:
    return {
        "response_type": "code",
        "client_id": c.client_id,
        "redirect_uri": REDIRECT,
        "scope": "cases:read cases:write",
        "state": "st-123",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **extra,
    }


async def _code(client, c, user, verifier_challenge=None, **extra) -> tuple[str, str]:
    verifier, challenge = verifier_challenge or pkce_pair()
    resp = await sign_in(client, _params(c, challenge, **extra), *user)
    assert resp.status_code == 302, resp.text
    q = query_of(resp.headers["location"])
    return q["code"], verifier


async def _redeem(client, c, code, verifier, **extra):
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "code_verifier": verifier,
        **extra,
    }
    return await client.post("/oauth/token", data=data, auth=(c.client_id, c.secret))


async def test_full_flow_issues_user_token_and_refresh_token(
    client, app, web_client, curator, settings, resource
):
    verifier, challenge = pkce_pair()
    page = await client.get("/oauth/authorize", params=_params(web_client, challenge))
    assert page.status_code == 200
    assert "cases:write" in page.text
    assert page.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]

    resp = await sign_in(client, _params(web_client, challenge), *curator)
    assert resp.status_code == 302
    location = resp.headers["location"]
    assert location.startswith(REDIRECT + "?")
    q = query_of(location)
    assert q["state"] == "st-123"
    assert q["iss"] == settings.issuer  # RFC 9207

    token = await _redeem(client, web_client, q["code"], verifier)
    assert token.status_code == 200, token.text
    body = token.json()
    assert body["refresh_token"]
    assert body["scope"] == "cases:read cases:write"
    claims = _claims(body["access_token"])
    assert claims["team"] == "payments-ml"
    # The person may see restricted, the client only confidential: the token gets the lower.
    assert claims["clearance"] == "confidential"
    assert claims["client_id"] == web_client.client_id
    assert claims["sub"] != web_client.client_id
    assert claims["preferred_username"] == curator[0]  # who signed in, by name
    assert (await resource.post("/cases", headers=bearer(body["access_token"]))).status_code == 200


async def test_no_scope_asked_gets_client_and_user_intersection(client, app, web_client, curator):
    verifier, challenge = pkce_pair()
    params = _params(web_client, challenge)
    del params["scope"]
    resp = await sign_in(client, params, *curator)
    code = query_of(resp.headers["location"])["code"]
    body = (await _redeem(client, web_client, code, verifier)).json()
    # audit:read is allowed to the client but not held by a curator.
    assert set(body["scope"].split()) == {"cases:read", "cases:write", "plans:read"}


async def test_scope_the_user_lacks_is_invalid_scope(client, app, web_client, curator):
    _, challenge = pkce_pair()
    resp = await sign_in(client, _params(web_client, challenge, scope="audit:read"), *curator)
    assert resp.status_code == 302
    q = query_of(resp.headers["location"])
    assert q["error"] == "invalid_scope"
    assert "code" not in q


async def test_scope_the_client_lacks_is_invalid_scope(client, app, web_client):
    _, challenge = pkce_pair()
    resp = await client.get(
        "/oauth/authorize", params=_params(web_client, challenge, scope="cases:read admin")
    )
    assert resp.status_code == 302
    assert query_of(resp.headers["location"])["error"] == "invalid_scope"


async def test_pkce_is_required_even_for_confidential_clients(client, web_client):
    params = _params(web_client, "x")
    del params["code_challenge"], params["code_challenge_method"]
    resp = await client.get("/oauth/authorize", params=params)
    assert resp.status_code == 302
    assert query_of(resp.headers["location"])["error"] == "invalid_request"


async def test_plain_pkce_is_refused(client, web_client):
    verifier, _ = pkce_pair()
    for method in ("plain", None):
        params = _params(web_client, verifier)
        if method:
            params["code_challenge_method"] = method
        else:
            del params["code_challenge_method"]
        resp = await client.get("/oauth/authorize", params=params)
        assert resp.status_code == 302
        assert query_of(resp.headers["location"])["error"] == "invalid_request"


async def test_pkce_verifier_mismatch_is_refused(client, web_client, curator):
    code, _ = await _code(client, web_client, curator)
    other_verifier, _ = pkce_pair()
    resp = await _redeem(client, web_client, code, other_verifier)
    assert resp.status_code == 400
    assert resp.json()["error"] == "invalid_grant"
    missing = await client.post(
        "/oauth/token",
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT},
        auth=(web_client.client_id, web_client.secret),
    )
    assert missing.status_code == 400


@pytest.mark.parametrize(
    "uri",
    [
        "https://app.example/cb/",
        "https://app.example/cb/../evil",
        "https://app.example/cb?next=x",
        "https://APP.example/cb",
        "https://app.example.evil.test/cb",
        "http://app.example/cb",
    ],
)
async def test_redirect_uri_must_match_exactly_and_is_never_followed_otherwise(
    client, web_client, uri
):
    _, challenge = pkce_pair()
    resp = await client.get(
        "/oauth/authorize", params=_params(web_client, challenge, redirect_uri=uri)
    )
    assert resp.status_code == 400
    assert "location" not in resp.headers


@pytest.mark.parametrize("uri", [REDIRECT + '"', REDIRECT + "\\", REDIRECT + "é"])
async def test_unregistered_redirect_uri_with_any_character_is_named_not_a_500(
    client, web_client, uri
):
    # authlib refuses to build an error whose description holds these characters (a 500).
    _, challenge = pkce_pair()
    resp = await client.get(
        "/oauth/authorize", params=_params(web_client, challenge, redirect_uri=uri)
    )
    assert resp.status_code == 400
    assert "location" not in resp.headers
    assert "is not registered for this client" in resp.text


@pytest.mark.parametrize(
    ("response_type", "error", "description"),
    [
        ("token", "unsupported_response_type", "response_type token is not supported: use code"),
        (
            'to"ken',
            "unsupported_response_type",
            "response_type to%22ken is not supported: use code",
        ),
        (
            "tokén",
            "unsupported_response_type",
            "response_type tok%C3%A9n is not supported: use code",
        ),
        ("", "invalid_request", "missing response_type (must be code)"),
    ],
)
async def test_unsupported_or_missing_response_type_goes_back_with_a_clear_error(
    client, web_client, response_type, error, description
):
    _, challenge = pkce_pair()
    resp = await client.get(
        "/oauth/authorize", params=_params(web_client, challenge, response_type=response_type)
    )
    assert resp.status_code == 302, resp.text
    q = query_of(resp.headers["location"])
    assert (q["error"], q["error_description"], q["state"]) == (error, description, "st-123")


async def test_redirect_uri_at_token_endpoint_must_match(client, web_client, curator):
    code, verifier = await _code(client, web_client, curator)
    resp = await _redeem(client, web_client, code, verifier, redirect_uri=REDIRECT + "/x")
    assert resp.json()["error"] == "invalid_grant"


async def test_reused_code_is_refused_and_its_tokens_revoked(
    client, app, web_client, curator, resource
):
    code, verifier = await _code(client, web_client, curator)
    first = (await _redeem(client, web_client, code, verifier)).json()
    assert (await resource.get("/cases", headers=bearer(first["access_token"]))).status_code == 200

    again = await _redeem(client, web_client, code, verifier)
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant"
    # Tokens from the first redemption are revoked: at once in this process ...
    assert (await resource.get("/cases", headers=bearer(first["access_token"]))).status_code == 401
    # ... in the database (introspection) ...
    intro = await client.post(
        "/oauth/introspect",
        data={"token": first["access_token"]},
        auth=(web_client.client_id, web_client.secret),
    )
    assert intro.json() == {"active": False}
    # ... and the refresh token is dead too.
    refresh = await client.post(
        "/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]},
        auth=(web_client.client_id, web_client.secret),
    )
    assert refresh.json()["error"] == "invalid_grant"


async def test_code_is_bound_to_its_client(client, app, web_client, curator):
    other = await register(
        app,
        scopes=["cases:read", "cases:write"],
        grant_types=["authorization_code"],
        redirect_uris=[REDIRECT],
    )
    code, verifier = await _code(client, web_client, curator)
    resp = await _redeem(client, other, code, verifier)
    assert resp.json()["error"] == "invalid_grant"


async def test_wrong_password_shows_the_form_again(client, web_client, curator):
    _, challenge = pkce_pair()
    resp = await sign_in(client, _params(web_client, challenge), curator[0], "wrong-password!")
    assert resp.status_code == 401
    assert "Wrong username or password" in resp.text
    unknown = await sign_in(client, _params(web_client, challenge), "nobody", "wrong-password!")
    assert unknown.status_code == 401
    assert unknown.text.replace(curator[0], "") == resp.text.replace(curator[0], "")


async def test_sign_in_without_csrf_token_is_refused(client, web_client, curator):
    _, challenge = pkce_pair()
    form = {
        **_params(web_client, challenge),
        "username": curator[0],
        "password": curator[1],
        "decision": "allow",
        "csrf_token": "forged",
    }
    resp = await client.post("/oauth/authorize", data=form)
    assert resp.status_code == 403


async def test_deny_redirects_with_access_denied(client, web_client, curator):
    _, challenge = pkce_pair()
    resp = await sign_in(client, _params(web_client, challenge), *curator, decision="deny")
    assert resp.status_code == 302
    q = query_of(resp.headers["location"])
    assert q["error"] == "access_denied"
    assert q["state"] == "st-123"


async def test_refresh_rotates_and_reuse_kills_the_family(client, web_client, curator, resource):
    code, verifier = await _code(client, web_client, curator)
    first = (await _redeem(client, web_client, code, verifier)).json()
    auth = (web_client.client_id, web_client.secret)

    narrowed = await client.post(
        "/oauth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": first["refresh_token"],
            "scope": "cases:read",
        },
        auth=auth,
    )
    assert narrowed.status_code == 200, narrowed.text
    second = narrowed.json()
    assert second["scope"] == "cases:read"
    assert second["refresh_token"] != first["refresh_token"]

    wider = await client.post(
        "/oauth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": second["refresh_token"],
            "scope": "cases:read plans:write",
        },
        auth=auth,
    )
    assert wider.json()["error"] == "invalid_scope"

    # Replaying the rotated-out token revokes everything of this authorization.
    replay = await client.post(
        "/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]},
        auth=auth,
    )
    assert replay.json()["error"] == "invalid_grant"
    latest = await client.post(
        "/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": second["refresh_token"]},
        auth=auth,
    )
    assert latest.json()["error"] == "invalid_grant"
    assert (await resource.get("/cases", headers=bearer(second["access_token"]))).status_code == 401


async def test_public_client_with_loopback_redirect(client, app, curator):
    loopback = "http://127.0.0.1:53682/callback"
    cli = await register(
        app,
        scopes=["cases:read"],
        public=True,
        grant_types=["authorization_code", "refresh_token"],
        redirect_uris=[loopback],
    )
    assert cli.secret is None
    verifier, challenge = pkce_pair()
    params = {
        "response_type": "code",
        "client_id": cli.client_id,
        "redirect_uri": loopback,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "state": "s",
    }
    resp = await sign_in(client, params, *curator)
    code = query_of(resp.headers["location"])["code"]
    token = await client.post(
        "/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": loopback,
            "client_id": cli.client_id,
            "code_verifier": verifier,
        },
    )
    assert token.status_code == 200, token.text
    assert token.json()["scope"] == "cases:read"


@pytest.mark.parametrize("path", ["/oauth/authorize", "/oauth/device"])
async def test_the_pages_refuse_an_unreadable_form_with_a_page(client, path):
    body = b"username=x&password=" + b"a" * (1024 * 1024 + 1)
    resp = await client.post(
        path, content=body, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert resp.status_code == 400
    assert resp.headers["content-type"].startswith("text/html")
    assert "unreadable form body: Field exceeded maximum size of 1024KB." in resp.text


async def test_a_refused_scope_is_named(client, web_client, curator):
    # web_client may have cases:read cases:write plans:read audit:read; a curator holds no
    # audit:read. authlib's words were "The requested scope is invalid, unknown, or malformed."
    _, challenge = pkce_pair()
    for scope, description in (
        ("cases:read bogus", "unknown scope: bogus (known: "),
        ("cases:read admin", "scope not allowed for this client: cases:read admin"),
    ):
        resp = await client.get(
            "/oauth/authorize", params=_params(web_client, challenge, scope=scope)
        )
        assert resp.status_code == 302, resp.text
        q = query_of(resp.headers["location"])
        assert q["error"] == "invalid_scope"
        assert q["error_description"].startswith(description), q

    code, verifier = await _code(client, web_client, curator)
    tokens = (await _redeem(client, web_client, code, verifier)).json()

    async def refresh(scope: str):
        data = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
        return await client.post(
            "/oauth/token",
            data={**data, "scope": scope},
            auth=(web_client.client_id, web_client.secret),
        )

    beyond = await refresh("cases:read plans:read")
    assert beyond.status_code == 400
    assert beyond.json() == {
        "error": "invalid_scope",
        "error_description": "scope beyond this sign-in's grant: plans:read",
    }
    unknown = await refresh("cases:read caseZ:read")
    assert unknown.json()["error_description"].startswith("unknown scope: caseZ:read (known: ")


async def test_a_refresh_that_cannot_be_honoured_is_invalid_grant_saying_why(
    client, app, web_client, curator
):
    code, verifier = await _code(client, web_client, curator)
    first = (await _redeem(client, web_client, code, verifier)).json()

    async def refresh(token: str):
        data = {"grant_type": "refresh_token", "refresh_token": token}
        return await client.post(
            "/oauth/token", data=data, auth=(web_client.client_id, web_client.secret)
        )

    unknown = await refresh("no-such-token")
    assert unknown.json() == {
        "error": "invalid_grant",
        "error_description": "unknown refresh token",
    }

    second = (await refresh(first["refresh_token"])).json()
    replay = await refresh(first["refresh_token"])
    assert replay.status_code == 400
    assert replay.json()["error"] == "invalid_grant"
    assert replay.json()["error_description"].startswith("refresh token already used or revoked")
    assert (await refresh(second["refresh_token"])).json()["error"] == "invalid_grant"

    # A disabled account: invalid_grant (authlib answered invalid_request "There is no 'user'
    # for this token."), for its refresh tokens and for a code it approved before.
    code, verifier = await _code(client, web_client, curator)
    live = (await _redeem(client, web_client, code, verifier)).json()
    code, verifier = await _code(client, web_client, curator)
    async with app.state.db.transaction() as s:
        await s.execute(
            update(AuthUser).where(AuthUser.username == curator[0]).values(disabled=True)
        )
    resp = await refresh(live["refresh_token"])
    assert resp.status_code == 400
    assert resp.json() == {
        "error": "invalid_grant",
        "error_description": "the account of this refresh token is disabled",
    }
    resp = await _redeem(client, web_client, code, verifier)
    assert resp.json() == {
        "error": "invalid_grant",
        "error_description": "the account that approved this code is disabled",
    }


async def test_a_code_that_cannot_be_redeemed_says_why(client, app, web_client, curator):
    # authlib said "Invalid 'code' in request." for an unknown or expired code, and "Invalid
    # 'redirect_uri' in request." for a missing one.
    code, verifier = await _code(client, web_client, curator)
    for extra, description in (
        ({"code_": "no-such-code"}, "unknown authorization code"),
        ({"redirect_uri": ""}, "redirect_uri must be the one given to the authorization endpoint"),
        (
            {"redirect_uri": REDIRECT + "/x"},
            "redirect_uri must be the one given to the authorization endpoint",
        ),
    ):
        used = extra.pop("code_", code)
        resp = await _redeem(client, web_client, used, verifier, **extra)
        assert resp.status_code == 400
        assert resp.json() == {"error": "invalid_grant", "error_description": description}

    async with app.state.db.transaction() as s:
        await s.execute(
            update(AuthorizationCode)
            .where(AuthorizationCode.code_hash == digest(code))
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    resp = await _redeem(client, web_client, code, verifier)
    assert resp.json() == {
        "error": "invalid_grant",
        "error_description": "authorization code expired (it lives 5 minutes)",
    }
