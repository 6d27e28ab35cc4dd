"""Small async builders for auth tests: clients, users, PKCE pairs."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit


@dataclass
class Registered:
    client_id: str
    secret: str | None
    record: Any


async def register(app: Any, **kwargs: Any) -> Registered:
    kwargs.setdefault("name", f"test-{secrets.token_hex(3)}")
    kwargs.setdefault("scopes", ["cases:read"])
    async with app.state.db.transaction() as s:
        record, secret = await app.state.auth.create_client(s, **kwargs)
    return Registered(record.client_id, secret, record)


async def make_user(app: Any, roles: list[str], **kwargs: Any) -> tuple[str, str]:
    username = f"user-{secrets.token_hex(4)}"
    password = secrets.token_urlsafe(16)
    async with app.state.db.transaction() as s:
        await app.state.auth.create_user(
            s, username=username, password=password, roles=roles, **kwargs
        )
    return username, password


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
    return verifier, challenge.decode()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


CSRF_RE = re.compile(r"name=csrf_token value='([^']+)'")


async def sign_in(
    http: Any,
    params: dict[str, str],
    username: str,
    password: str,
    decision: str = "allow",
) -> Any:
    """Open the authorization page, then submit its form as a person would."""
    page = await http.get("/oauth/authorize", params=params)
    if page.status_code != 200:
        return page
    csrf = CSRF_RE.search(page.text).group(1)
    form = {
        **params,
        "csrf_token": csrf,
        "username": username,
        "password": password,
        "decision": decision,
    }
    return await http.post("/oauth/authorize", data=form)


def query_of(location: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(location).query))
