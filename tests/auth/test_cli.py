"""`failcat clients|users|keys` against the test database, through the real entry point."""

from __future__ import annotations

import asyncio
import io
import json
import sys
from datetime import timedelta

import pytest
from sqlalchemy import select

from services.auth.models import SigningKey
from services.gateway.cli import main
from shared.db import utcnow
from tests.auth.builders import bearer, make_user, pkce_pair, query_of, register, sign_in


def _failcat(monkeypatch, settings, capsys, *argv: str, stdin: str = "") -> tuple[int, str, str]:
    monkeypatch.setenv("FAILCAT_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("FAILCAT_DATABASE_URL", settings.catalog_url)
    # `keys rotate` retires the old key one token lifetime from now: the lifetime must be the
    # session's (6 h), not the default 15 min, or the session's tokens stop verifying mid-run.
    monkeypatch.setenv("FAILCAT_ACCESS_TOKEN_TTL_S", str(settings.access_token_ttl_s))
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


async def _in_thread(*args, **kwargs):
    # The CLI runs its own event loop (asyncio.run); keep it off the test loop.
    return await asyncio.to_thread(_failcat, *args, **kwargs)


async def test_clients_lifecycle(monkeypatch, settings, capsys, client):
    code, out, _ = await _in_thread(
        monkeypatch,
        settings,
        capsys,
        "clients",
        "create",
        "--name",
        "ingest-bot",
        "--scopes",
        "cases:ingest cases:read",
        "--team",
        "payments-ml",
        "--clearance",
        "confidential",
    )
    assert code == 0
    created = json.loads(out)
    assert set(created) == {"client_id", "client_secret"}

    token = await client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(created["client_id"], created["client_secret"]),
    )
    assert token.status_code == 200

    code, out, _ = await _in_thread(
        monkeypatch, settings, capsys, "clients", "show", created["client_id"]
    )
    shown = json.loads(out)
    assert shown["team"] == "payments-ml"
    assert shown["scopes"] == ["cases:ingest", "cases:read"]
    assert "secret" not in out  # never shown again

    code, out, _ = await _in_thread(monkeypatch, settings, capsys, "clients", "list")
    assert created["client_id"] in {c["client_id"] for c in json.loads(out)}

    code, out, _ = await _in_thread(
        monkeypatch, settings, capsys, "clients", "rotate-secret", created["client_id"]
    )
    rotated = json.loads(out)["client_secret"]
    assert rotated != created["client_secret"]

    code, out, _ = await _in_thread(
        monkeypatch, settings, capsys, "clients", "disable", created["client_id"]
    )
    assert json.loads(out)["disabled"] is True
    refused = await client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(created["client_id"], rotated),
    )
    assert refused.status_code == 401


@pytest.mark.parametrize(
    "argv, message",
    [
        (("--scopes", "cases:read nope"), "unknown scope"),
        (("--scopes", "cases:read", "--clearance", "secret"), "unknown clearance"),
        # --public alone kept the default grant type, and the refusal did not say so.
        (
            ("--scopes", "cases:read", "--public"),
            "failcat: a public client cannot use client_credentials (the default grant type) "
            "(grant_types: client_credentials needs a secret; one of: authorization_code "
            "refresh_token urn:ietf:params:oauth:grant-type:device_code)",
        ),
    ],
)
async def test_clients_create_bad_input(monkeypatch, settings, capsys, argv, message):
    code, out, err = await _in_thread(
        monkeypatch, settings, capsys, "clients", "create", "--name", "x", *argv
    )
    assert code == 2
    assert message in err and len(err.splitlines()) == 1
    assert out == ""


async def test_users_and_keys(monkeypatch, settings, capsys, app):
    code, out, _ = await _in_thread(
        monkeypatch,
        settings,
        capsys,
        "users",
        "create",
        "--username",
        "ada-cli",
        "--roles",
        "reviewer auditor",
        "--password-stdin",
        stdin="correct horse battery\n",
    )
    assert code == 0
    user = json.loads(out)
    assert user["roles"] == ["auditor", "reviewer"]
    assert "password" not in out
    code, out, _ = await _in_thread(monkeypatch, settings, capsys, "users", "list")
    assert "ada-cli" in {u["username"] for u in json.loads(out)}

    code, out, _ = await _in_thread(monkeypatch, settings, capsys, "keys", "rotate")
    kid = json.loads(out)["kid"]
    await app.state.auth.refresh_keys()
    assert app.state.auth.ring().signing_kid == kid
    # The keys it retired verify the session's tokens for as long as those live: a rotation
    # that used the default lifetime retired them 17 minutes later, and every test after that
    # answered 401 "unknown signing key".
    async with app.state.db.transaction() as s:
        retiring = [r for r in await s.scalars(select(SigningKey)) if r.kid != kid]
    lifetime = timedelta(seconds=settings.access_token_ttl_s)
    assert retiring and all(r.retire_at >= utcnow() + lifetime for r in retiring)


async def test_users_disable_ends_sign_in_and_every_token(
    monkeypatch, settings, capsys, app, client, resource
):
    # There was no way to disable an account: someone who left kept signing in, and their
    # tokens kept working.
    web = await register(
        app,
        scopes=["cases:read"],
        grant_types=["authorization_code", "refresh_token"],
        redirect_uris=["https://app.example/cb"],
    )
    username, password = await make_user(app, ["viewer"])
    verifier, challenge = pkce_pair()
    params = {
        "response_type": "code",
        "client_id": web.client_id,
        "redirect_uri": "https://app.example/cb",
        "scope": "cases:read",
        "state": "s",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    resp = await sign_in(client, params, username, password)
    code = query_of(resp.headers["location"])["code"]
    tokens = (
        await client.post(
            "/oauth/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": "https://app.example/cb",
                "code_verifier": verifier,
            },
            auth=(web.client_id, web.secret),
        )
    ).json()
    assert (await resource.get("/cases", headers=bearer(tokens["access_token"]))).status_code == 200

    code, out, err = await _in_thread(monkeypatch, settings, capsys, "users", "disable", username)
    assert code == 0, err
    assert json.loads(out)["disabled"] is True

    await app.state.auth.refresh_revocations()  # the poll that tells this process
    denied = await resource.get("/cases", headers=bearer(tokens["access_token"]))
    assert denied.status_code == 401
    assert "token revoked" in denied.headers["www-authenticate"]
    refreshed = await client.post(
        "/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        auth=(web.client_id, web.secret),
    )
    assert refreshed.json()["error"] == "invalid_grant"
    again = await sign_in(client, params, username, password)
    assert again.status_code == 401

    code, _, err = await _in_thread(monkeypatch, settings, capsys, "users", "disable", "nobody")
    assert code == 2
    assert err.strip() == "failcat: no user nobody"
