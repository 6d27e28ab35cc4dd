"""Client credentials: discovery, issuance, claims, scope rules, client authentication."""

from __future__ import annotations

import base64
import json

import httpx
import pytest
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata
from joserfc import jwt
from joserfc.jwk import KeySet

from shared.errors import BadUserInput
from tests.auth.builders import bearer, register


def _claims_and_header(token: str) -> tuple[dict, dict]:
    def part(i: int) -> dict:
        seg = token.split(".")[i]
        return json.loads(base64.urlsafe_b64decode(seg + "=" * (-len(seg) % 4)))

    return part(0), part(1)


async def test_metadata_is_valid_rfc8414(client, settings):
    resp = await client.get("/.well-known/oauth-authorization-server")
    assert resp.status_code == 200
    meta = AuthorizationServerMetadata(resp.json())
    meta.validate()
    assert meta["issuer"] == settings.issuer
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert "implicit" not in meta["grant_types_supported"]
    assert "password" not in meta["grant_types_supported"]


async def test_client_credentials_token_follows_rfc9068(client, app, settings):
    c = await register(
        app, scopes=["cases:read", "cases:ingest"], team="payments-ml", clearance="confidential"
    )
    resp = await client.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, auth=(c.client_id, c.secret)
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert resp.headers["cache-control"] == "no-store"
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == settings.access_token_ttl_s
    assert "refresh_token" not in body
    # No scope asked: every allowed scope.
    assert set(body["scope"].split()) == {"cases:read", "cases:ingest"}

    header, claims = _claims_and_header(body["access_token"])
    assert header["typ"] == "at+jwt"
    assert header["alg"] == "ES256"
    assert header["kid"] == app.state.auth.ring().signing_kid
    assert claims["iss"] == settings.issuer
    assert claims["aud"] == settings.audience
    assert claims["sub"] == c.client_id
    assert claims["client_id"] == c.client_id
    assert claims["team"] == "payments-ml"
    assert claims["clearance"] == "confidential"
    assert claims["exp"] - claims["iat"] == settings.access_token_ttl_s
    assert claims["jti"]

    # Verifiable independently against the published JWKS.
    jwks = (await client.get("/oauth/jwks.json")).json()
    assert all("d" not in k for k in jwks["keys"])  # never a private part
    decoded = jwt.decode(body["access_token"], KeySet.import_key_set(jwks), algorithms=["ES256"])
    assert decoded.claims["jti"] == claims["jti"]


async def test_token_is_accepted_by_resource_server(client, app, resource):
    c = await register(app, scopes=["cases:read"], team="t1")
    tok = (
        await client.post(
            "/oauth/token", data={"grant_type": "client_credentials"}, auth=(c.client_id, c.secret)
        )
    ).json()["access_token"]
    resp = await resource.get("/cases", headers=bearer(tok))
    assert resp.status_code == 200
    assert resp.json() == {"sub": c.client_id, "team": "t1", "clearance": "internal"}
    principal = app.state.auth.authenticate(f"Bearer {tok}")
    assert principal.client_id == c.client_id
    assert principal.scopes == frozenset({"cases:read"})


async def test_asked_scope_subset_is_granted_exactly(client, app):
    c = await register(app, scopes=["cases:read", "cases:write"])
    resp = await client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "scope": "cases:read"},
        auth=(c.client_id, c.secret),
    )
    assert resp.status_code == 200
    assert resp.json()["scope"] == "cases:read"


async def test_scope_not_allowed_is_invalid_scope_not_narrowed(client, app):
    c = await register(app, scopes=["cases:read"])
    for scope in ("cases:read cases:write", "admin", "no-such-scope"):
        resp = await client.post(
            "/oauth/token",
            data={"grant_type": "client_credentials", "scope": scope},
            auth=(c.client_id, c.secret),
        )
        assert resp.status_code == 400, scope
        assert resp.json()["error"] == "invalid_scope", scope


async def test_client_secret_post_also_works(client, app):
    c = await register(app)
    resp = await client.post(
        "/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": c.client_id,
            "client_secret": c.secret,
        },
    )
    assert resp.status_code == 200


async def test_wrong_secret_and_unknown_client_are_indistinguishable(client, app):
    c = await register(app)
    wrong = await client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(c.client_id, "not-the-secret"),
    )
    unknown = await client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=("no-such-client", "not-the-secret"),
    )
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()
    assert wrong.json()["error"] == "invalid_client"
    assert "exist" not in wrong.text
    assert wrong.headers["www-authenticate"] == unknown.headers["www-authenticate"]

    post_wrong = await client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "client_id": c.client_id, "client_secret": "x"},
    )
    post_unknown = await client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "client_id": "nobody", "client_secret": "x"},
    )
    assert post_wrong.status_code == post_unknown.status_code
    assert post_wrong.json() == post_unknown.json()


async def test_secret_is_stored_only_hashed(app, settings):
    from sqlalchemy import select

    from services.auth.models import OAuthClient

    c = await register(app)
    async with app.state.db.transaction() as s:
        row = await s.scalar(select(OAuthClient).where(OAuthClient.client_id == c.client_id))
    assert row.secret_hash != c.secret
    assert c.secret not in row.secret_hash


async def test_disabled_client_gets_no_token_and_its_tokens_die(client, app, resource):
    c = await register(app)
    tok = (
        await client.post(
            "/oauth/token", data={"grant_type": "client_credentials"}, auth=(c.client_id, c.secret)
        )
    ).json()["access_token"]
    async with app.state.db.transaction() as s:
        await app.state.auth.disable_client(s, c.client_id)
    resp = await client.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, auth=(c.client_id, c.secret)
    )
    assert resp.status_code == 401
    assert resp.json()["error"] == "invalid_client"
    assert (await resource.get("/cases", headers=bearer(tok))).status_code == 401


async def test_rotated_secret_replaces_old_one(client, app):
    c = await register(app)
    async with app.state.db.transaction() as s:
        _, new_secret = await app.state.auth.rotate_client_secret(s, c.client_id)
    old = await client.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, auth=(c.client_id, c.secret)
    )
    new = await client.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, auth=(c.client_id, new_secret)
    )
    assert old.status_code == 401
    assert new.status_code == 200


async def test_client_without_the_grant_is_unauthorized_client(client, app):
    c = await register(
        app,
        grant_types=["authorization_code", "refresh_token"],
        redirect_uris=["https://app.example/cb"],
    )
    resp = await client.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, auth=(c.client_id, c.secret)
    )
    assert resp.status_code == 400
    assert resp.json()["error"] == "unauthorized_client"


async def test_password_and_implicit_grants_do_not_exist(client, app):
    c = await register(app)
    resp = await client.post(
        "/oauth/token",
        data={"grant_type": "password", "username": "a", "password": "b"},
        auth=(c.client_id, c.secret),
    )
    assert resp.json()["error"] == "unsupported_grant_type"


async def test_repeated_failures_are_rate_limited(client, app):
    c = await register(app)
    for _ in range(10):
        resp = await client.post(
            "/oauth/token", data={"grant_type": "client_credentials"}, auth=(c.client_id, "wrong")
        )
        assert resp.status_code == 401
    resp = await client.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, auth=(c.client_id, "wrong")
    )
    assert resp.status_code == 429
    assert int(resp.headers["retry-after"]) > 0
    # Even the right secret waits, from that address: the limit is on the identity under
    # attack there.
    resp = await client.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, auth=(c.client_id, c.secret)
    )
    assert resp.status_code == 429
    # Instances elsewhere, holding the right secret, are not locked out by the failures of
    # one that still holds a rotated one.
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=("10.9.8.7", 4321)), base_url=client.base_url
    ) as elsewhere:
        resp = await elsewhere.post(
            "/oauth/token", data={"grant_type": "client_credentials"}, auth=(c.client_id, c.secret)
        )
        assert resp.status_code == 200, resp.text
    # Other clients are not affected.
    other = await register(app)
    resp = await client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(other.client_id, other.secret),
    )
    assert resp.status_code == 200


async def test_bootstrap_client_is_an_admin_with_a_private_file(bootstrap, client, settings):
    path = settings.data_dir / "bootstrap-client.json"
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    resp = await client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(bootstrap["client_id"], bootstrap["client_secret"]),
    )
    assert resp.status_code == 200
    _, claims = _claims_and_header(resp.json()["access_token"])
    assert "admin" in claims["scope"].split()
    assert claims["clearance"] == "restricted"
    assert claims["team"] is None


async def test_token_for_fixture(token_for, resource):
    tok = await token_for("cases:read", team="x")
    assert (await resource.get("/cases", headers=bearer(tok))).status_code == 200


async def test_an_empty_team_or_an_unprintable_name_is_refused_naming_the_field(
    client, app, admin_token
):
    """An empty team is not "no team" (that principal sees every team's cases): refused, as
    are names past their column or carrying control characters (NUL breaks Postgres)."""
    create = """mutation($c: ClientInput!) { createClient(client: $c) { client { clientId } } }"""
    refused = {
        "team": {"name": "te", "scopes": ["cases:read"], "team": ""},
        "name": {"name": "bad\u0000name", "scopes": ["cases:read"]},
    }
    for field, spec in [*refused.items(), ("name", {"name": "n" * 201, "scopes": ["cases:read"]})]:
        resp = await client.post(
            "/graphql",
            json={"query": create, "variables": {"c": spec}},
            headers={"Authorization": f"Bearer {admin_token}"},
        )
        [error] = resp.json()["errors"]
        assert error["extensions"]["code"] == "BAD_USER_INPUT", error
        assert [e["path"] for e in error["extensions"]["errors"]] == [field], error
    async with app.state.db.transaction() as s:
        for kwargs in ({"username": "nul\u0000user"}, {"username": "ok-user", "team": " "}):
            with pytest.raises(BadUserInput):
                await app.state.auth.create_user(
                    s, password="long enough password", roles=["viewer"], **kwargs
                )


async def test_basic_credentials_that_are_not_utf8_are_invalid_client(client):
    garbage = base64.b64encode(b"\xff\xfe:\xff").decode()
    for path, form in (
        ("/oauth/token", {"grant_type": "client_credentials"}),
        ("/oauth/introspect", {"token": "x"}),
        ("/oauth/revoke", {"token": "x"}),
        ("/oauth/device_authorization", {}),
    ):
        resp = await client.post(path, data=form, headers={"Authorization": f"Basic {garbage}"})
        assert resp.status_code == 401, (path, resp.text)
        assert resp.json()["error"] == "invalid_client"


async def test_a_missing_or_repeated_parameter_is_invalid_request_and_a_grant_type_is_named(
    client, app
):
    c = await register(app)

    async def token(body: str) -> httpx.Response:
        return await client.post(
            "/oauth/token",
            content=body,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            auth=(c.client_id, c.secret),
        )

    missing = await token("scope=cases:read")
    assert missing.status_code == 400
    assert missing.json() == {"error": "invalid_request", "error_description": "missing grant_type"}

    twice = await token("grant_type=client_credentials&grant_type=client_credentials")
    assert twice.status_code == 400
    assert twice.json() == {
        "error": "invalid_request",
        "error_description": "parameter given more than once: grant_type",
    }

    unknown = await token("grant_type=pass%22word%C3%A9")
    assert unknown.status_code == 400
    assert unknown.json()["error"] == "unsupported_grant_type"
    assert unknown.json()["error_description"] == (
        "grant_type pass%22word%C3%A9 is not supported: use one of authorization_code, "
        "client_credentials, refresh_token, urn:ietf:params:oauth:grant-type:device_code"
    )


@pytest.mark.parametrize("path", ["/oauth/token", "/oauth/introspect", "/oauth/revoke"])
async def test_a_body_that_is_not_a_readable_form_is_an_oauth_invalid_request(client, app, path):
    # Starlette's own refusals were {"detail": ...}, which no OAuth client reads.
    c = await register(app)
    cases = [
        (
            {"Content-Type": "application/json"},
            b'{"grant_type": "client_credentials"}',
            "send the parameters as application/x-www-form-urlencoded, not application/json",
        ),
        (
            {"Content-Type": "application/x-www-form-urlencoded"},
            b"grant_type=client_credentials&token=" + b"a" * (1024 * 1024 + 1),
            "unreadable form body: Field exceeded maximum size of 1024KB.",
        ),
        (
            {"Content-Type": "application/x-www-form-urlencoded"},
            b"&".join(b"k%d=v" % i for i in range(1001)),
            "unreadable form body: Too many fields. Maximum number of fields is 1000.",
        ),
    ]
    for headers, body, description in cases:
        resp = await client.post(path, content=body, headers=headers, auth=(c.client_id, c.secret))
        assert resp.status_code == 400, (path, resp.text)
        assert resp.json() == {"error": "invalid_request", "error_description": description}
        assert resp.headers["cache-control"] == "no-store"


async def test_a_failed_client_authentication_says_what_may_be_wrong(client, app):
    c = await register(app)
    public = await register(
        app,
        public=True,
        grant_types=["urn:ietf:params:oauth:grant-type:device_code", "refresh_token"],
    )
    expected = (
        "client authentication failed: unknown or disabled client, wrong or missing secret, "
        "or a method this client may not use (a public client sends only its client_id)"
    )
    for path, form, auth in (
        ("/oauth/token", {"grant_type": "client_credentials"}, (c.client_id, "wrong")),
        ("/oauth/token", {"grant_type": "client_credentials"}, None),
        ("/oauth/introspect", {"token": "x"}, ("nobody", "wrong")),
        ("/oauth/device_authorization", {"client_id": c.client_id}, None),
        ("/oauth/device_authorization", {"client_id": public.client_id}, (public.client_id, "s")),
    ):
        resp = await client.post(path, data=form, auth=auth)
        assert resp.status_code == 401, (path, resp.text)
        assert resp.json() == {"error": "invalid_client", "error_description": expected}
        assert resp.headers["www-authenticate"] == (
            f'Basic error="invalid_client", error_description="{expected}"'
        )
