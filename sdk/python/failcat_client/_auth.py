"""OAuth 2.0 client credentials: the token endpoint found through the server's RFC 8414
metadata, the token cached and replaced shortly before it expires (or at once after a 401)."""

from __future__ import annotations

import time
from typing import Any, Optional

import httpx

METADATA_PATH = "/.well-known/oauth-authorization-server"


class AuthError(Exception):
    """The credentials were refused (the sender keeps the cases and backs off)."""


class TokenState:
    """The cached token and when to replace it; fetched through `fetch_sync` or `fetch_async`
    by whichever sender owns it."""

    def __init__(
        self,
        base_url: str,
        client_id: str,
        client_secret: str,
        scope: Optional[str],
        refresh_margin_s: Optional[float],
        token_url: Optional[str] = None,
    ) -> None:
        self.base_url = base_url
        self.client_id = client_id
        self.client_secret = client_secret
        self.scope = scope
        self.refresh_margin_s = refresh_margin_s
        self.token_url = token_url
        self.token: Optional[str] = None
        self.refresh_at = 0.0
        self.fetches = 0

    def current(self) -> Optional[str]:
        """The token while it is fresh; None when it must be (re)fetched."""
        if self.token is not None and time.monotonic() < self.refresh_at:
            return self.token
        return None

    def invalidate(self, token: Optional[str]) -> None:
        """Drop the token a 401 answered (unless another fetch already replaced it)."""
        if token is None or token == self.token:
            self.token = None

    # ---- the exchange, as plain request/response steps shared by both senders -----------
    def _form(self) -> dict[str, str]:
        form = {"grant_type": "client_credentials"}
        if self.scope:
            form["scope"] = self.scope
        return form

    def _endpoint_from(self, response: httpx.Response) -> str:
        if response.status_code != 200:
            raise httpx.HTTPStatusError(
                f"authorization server metadata: HTTP {response.status_code}",
                request=response.request,
                response=response,
            )
        endpoint = response.json().get("token_endpoint")
        if not endpoint:
            raise AuthError("authorization server metadata has no token_endpoint")
        return str(endpoint)

    def _accept(self, response: httpx.Response) -> str:
        if response.status_code in (400, 401, 403):
            raise AuthError(f"token request refused: HTTP {response.status_code} {response.text}")
        if response.status_code != 200:
            raise httpx.HTTPStatusError(
                f"token endpoint: HTTP {response.status_code}",
                request=response.request,
                response=response,
            )
        body: dict[str, Any] = response.json()
        lifetime = float(body.get("expires_in") or 300)
        margin = self.refresh_margin_s
        if margin is None:
            # Renew with a fifth of the lifetime left (at most a minute early): requests in
            # flight never carry a token about to lapse.
            margin = min(60.0, lifetime * 0.2)
        self.token = str(body["access_token"])
        self.refresh_at = time.monotonic() + max(0.0, lifetime - margin)
        self.fetches += 1
        return self.token

    def fetch_sync(self, http: httpx.Client) -> str:
        if self.token_url is None:
            self.token_url = self._endpoint_from(http.get(self.base_url + METADATA_PATH))
        response = http.post(
            self.token_url, data=self._form(), auth=(self.client_id, self.client_secret)
        )
        return self._accept(response)

    async def fetch_async(self, http: httpx.AsyncClient) -> str:
        if self.token_url is None:
            self.token_url = self._endpoint_from(await http.get(self.base_url + METADATA_PATH))
        response = await http.post(
            self.token_url, data=self._form(), auth=(self.client_id, self.client_secret)
        )
        return self._accept(response)
