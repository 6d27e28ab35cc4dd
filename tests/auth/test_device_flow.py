"""RFC 8628 device authorization: how the CLI signs a person in without a browser of its own."""

from __future__ import annotations

import re

import pytest

from tests.auth.builders import bearer, make_user, register

DEVICE = "urn:ietf:params:oauth:grant-type:device_code"
CSRF_RE = re.compile(r"name=csrf_token value='([^']+)'")


@pytest.fixture
async def cli_client(app):
    return await register(
        app,
        name="failcat-cli",
        public=True,
        scopes=["cases:read", "cases:write", "audit:read"],
        grant_types=[DEVICE, "refresh_token"],
    )


async def _start(client, c, scope=None) -> dict:
    data = {"client_id": c.client_id}
    if scope:
        data["scope"] = scope
    resp = await client.post("/oauth/device_authorization", data=data)
    assert resp.status_code == 200, resp.text
    return resp.json()


async def _poll(client, c, device_code):
    return await client.post(
        "/oauth/token",
        data={"grant_type": DEVICE, "client_id": c.client_id, "device_code": device_code},
    )


async def _approve(client, user_code, username, password, decision="allow"):
    page = await client.get("/oauth/device", params={"user_code": user_code})
    csrf = CSRF_RE.search(page.text).group(1)
    return await client.post(
        "/oauth/device",
        data={
            "user_code": user_code,
            "username": username,
            "password": password,
            "csrf_token": csrf,
            "decision": decision,
        },
    )


async def test_device_flow_end_to_end(client, app, cli_client, settings, resource):
    user = await make_user(app, ["curator"], team="search")
    start = await _start(client, cli_client)
    assert start["verification_uri"] == f"{settings.issuer}/oauth/device"
    assert start["user_code"] in start["verification_uri_complete"]

    pending = await _poll(client, cli_client, start["device_code"])
    assert pending.status_code == 400
    assert pending.json()["error"] == "authorization_pending"
    # Polling faster than the interval is told to slow down.
    fast = await _poll(client, cli_client, start["device_code"])
    assert fast.json()["error"] == "slow_down"

    approved = await _approve(client, start["user_code"], *user)
    assert approved.status_code == 200
    token = await _poll(client, cli_client, start["device_code"])
    assert token.status_code == 200, token.text
    body = token.json()
    # No scope asked: what the client may have and the curator holds.
    assert set(body["scope"].split()) == {"cases:read", "cases:write"}
    assert body["refresh_token"]
    assert (await resource.get("/cases", headers=bearer(body["access_token"]))).status_code == 200
    # A device code yields tokens once.
    again = await _poll(client, cli_client, start["device_code"])
    assert again.status_code == 400


async def test_denied_device(client, app, cli_client):
    user = await make_user(app, ["viewer"])
    start = await _start(client, cli_client)
    await _approve(client, start["user_code"], *user, decision="deny")
    resp = await _poll(client, cli_client, start["device_code"])
    assert resp.json()["error"] == "access_denied"


async def test_device_scope_beyond_client_is_invalid_scope(client, cli_client):
    resp = await client.post(
        "/oauth/device_authorization", data={"client_id": cli_client.client_id, "scope": "admin"}
    )
    assert resp.status_code == 400
    assert resp.json()["error"] == "invalid_scope"


async def test_device_scope_beyond_user_is_refused_at_approval(client, app, cli_client):
    user = await make_user(app, ["viewer"])
    start = await _start(client, cli_client, scope="cases:write")
    resp = await _approve(client, start["user_code"], *user)
    assert resp.status_code == 403
    pending = await _poll(client, cli_client, start["device_code"])
    assert pending.json()["error"] == "authorization_pending"


async def test_wrong_password_does_not_approve(client, app, cli_client):
    user = await make_user(app, ["viewer"])
    start = await _start(client, cli_client)
    resp = await _approve(client, start["user_code"], user[0], "not-the-password")
    assert resp.status_code == 401
    assert (await _poll(client, cli_client, start["device_code"])).json()["error"] == (
        "authorization_pending"
    )


async def test_unknown_client_and_confidential_client_without_grant(client, app):
    resp = await client.post("/oauth/device_authorization", data={"client_id": "nobody"})
    assert resp.json()["error"] == "invalid_client"
    service = await register(app)
    resp = await client.post(
        "/oauth/device_authorization", data={}, auth=(service.client_id, service.secret)
    )
    assert resp.json()["error"] == "unauthorized_client"
