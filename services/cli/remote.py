"""Client mode: the CLI talks to a running server over HTTP, as any other team's tool would.

The server is `--url URL` or $FAILCAT_URL. Its endpoints come from its RFC 8414 metadata
(/.well-known/oauth-authorization-server). A token comes from, in this order:
- $FAILCAT_CLIENT_ID and $FAILCAT_CLIENT_SECRET: the client credentials grant (CI, services);
- the token `failcat login` cached for this URL, refreshed when it is about to expire.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from services.cli import credentials
from services.cli.errors import CliError, one_line

# Refresh a cached token this long before it expires (clock skew, a long command).
EXPIRY_MARGIN_S = 60
TIMEOUT = httpx.Timeout(30.0, connect=10.0)


def server_url(explicit: str | None) -> str | None:
    url = explicit or os.environ.get("FAILCAT_URL") or None
    if url is None:
        return None
    if not url.startswith(("http://", "https://")):
        raise CliError(f"--url {url}: expected an http(s):// URL")
    return url.rstrip("/")


def problem_text(resp: httpx.Response) -> str:
    """A server's refusal as one line: problem+json detail and field errors, or OAuth error."""
    try:
        body = resp.json()
    except ValueError:
        return f"HTTP {resp.status_code}: {one_line(resp.text[:200])}"
    if not isinstance(body, dict):
        return f"HTTP {resp.status_code}"
    if "error" in body and "status" not in body:  # RFC 6749 error answer
        return f"{body['error']}: {body.get('error_description', '')}".rstrip(": ")
    errors = body.get("errors") or []
    details = "; ".join(f"{e.get('path')}: {e.get('message')}" for e in errors)
    detail = body.get("detail") or body.get("title") or f"HTTP {resp.status_code}"
    return f"{detail} ({details})" if details else detail


class Remote:
    """An authenticated connection to one server."""

    def __init__(self, url: str, http: httpx.AsyncClient) -> None:
        self.url = url
        self.http = http
        self.metadata: dict[str, Any] = {}
        self._token: str | None = None
        self._entry: dict[str, Any] | None = None

    async def discover(self) -> dict[str, Any]:
        if not self.metadata:
            resp = await self.call("GET", "/.well-known/oauth-authorization-server")
            if resp.status_code != 200:
                raise CliError(
                    f"{self.url} does not look like a failcat server "
                    f"(metadata: HTTP {resp.status_code})"
                )
            self.metadata = resp.json()
        return self.metadata

    async def call(self, method: str, path_or_url: str, **kwargs: Any) -> httpx.Response:
        """One request without authentication; unreachable servers are one line."""
        url = path_or_url if "://" in path_or_url else f"{self.url}{path_or_url}"
        try:
            return await self.http.request(method, url, **kwargs)
        except httpx.TransportError as exc:
            raise CliError(f"cannot reach {url}: {exc or type(exc).__name__}") from None

    # ---- tokens -----------------------------------------------------------------------------

    async def token(self, force: bool = False) -> str:
        if self._token and not force:
            return self._token
        client_id = os.environ.get("FAILCAT_CLIENT_ID")
        secret = os.environ.get("FAILCAT_CLIENT_SECRET")
        if client_id and secret:
            self._token = await self._client_credentials(client_id, secret)
            return self._token
        entry = credentials.load(self.url)
        if entry is None:
            raise CliError(
                f"not signed in to {self.url}: run `failcat login --url {self.url}`, or set "
                "FAILCAT_CLIENT_ID and FAILCAT_CLIENT_SECRET"
            )
        if force or _expiring(entry):
            with credentials.locked():
                # Another command may have refreshed while this one waited: use its token.
                latest = credentials.load(self.url) or entry
                if latest.get("refresh_token") == entry.get("refresh_token"):
                    latest = await self._refresh(latest)
                entry = latest
        self._entry, self._token = entry, entry["access_token"]
        return self._token

    async def _client_credentials(self, client_id: str, secret: str) -> str:
        meta = await self.discover()
        resp = await self.call(
            "POST",
            meta["token_endpoint"],
            data={"grant_type": "client_credentials"},
            auth=(client_id, secret),
        )
        if resp.status_code != 200:
            raise CliError(
                f"FAILCAT_CLIENT_ID/FAILCAT_CLIENT_SECRET refused by {self.url}: "
                + problem_text(resp)
            )
        return resp.json()["access_token"]

    async def _refresh(self, entry: dict[str, Any]) -> dict[str, Any]:
        meta = await self.discover()
        refresh_token = entry.get("refresh_token")
        resp = None
        if refresh_token:
            resp = await self.call(
                "POST",
                meta["token_endpoint"],
                data={
                    "grant_type": "refresh_token",
                    "refresh_token": refresh_token,
                    "client_id": entry["client_id"],
                },
            )
        if resp is None or resp.status_code != 200:
            why = problem_text(resp) if resp is not None else "no refresh token"
            raise CliError(
                f"your sign-in to {self.url} has expired ({why}): "
                f"run `failcat login --url {self.url}`"
            )
        fresh = token_entry(entry["client_id"], resp.json())
        # Refresh tokens rotate on every use: the old one is dead once this answer is in.
        credentials.save(self.url, fresh)
        return fresh

    # ---- authenticated requests --------------------------------------------------------------

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """An authenticated request; a 401 gets one fresh token and one retry."""
        headers = dict(kwargs.pop("headers", None) or {})
        for attempt in (0, 1):
            headers["Authorization"] = f"Bearer {await self.token(force=attempt == 1)}"
            resp = await self.call(method, path, headers=headers, **kwargs)
            if resp.status_code != 401:
                break
        return resp

    async def json(self, method: str, path: str, **kwargs: Any) -> Any:
        resp = await self.request(method, path, **kwargs)
        if resp.status_code >= 400:
            raise CliError(f"{self.url}{path}: {problem_text(resp)}")
        return resp.json()

    @asynccontextmanager
    async def stream(self, method: str, path: str, **kwargs: Any) -> AsyncIterator[httpx.Response]:
        headers = {"Authorization": f"Bearer {await self.token()}"}
        url = f"{self.url}{path}"
        try:
            async with self.http.stream(method, url, headers=headers, **kwargs) as resp:
                if resp.status_code >= 400:
                    await resp.aread()
                    raise CliError(f"{url}: {problem_text(resp)}")
                yield resp
        except httpx.TransportError as exc:
            raise CliError(f"cannot reach {url}: {exc or type(exc).__name__}") from None


def _expiring(entry: dict[str, Any]) -> bool:
    return entry.get("expires_at", 0) - EXPIRY_MARGIN_S <= time.time()


def token_entry(client_id: str, body: dict[str, Any]) -> dict[str, Any]:
    return {
        "client_id": client_id,
        "access_token": body["access_token"],
        "refresh_token": body.get("refresh_token"),
        "scope": body.get("scope"),
        "expires_at": time.time() + float(body.get("expires_in") or 0),
    }


@asynccontextmanager
async def connect(url: str) -> AsyncIterator[Remote]:
    async with httpx.AsyncClient(timeout=TIMEOUT) as http:
        yield Remote(url, http)
