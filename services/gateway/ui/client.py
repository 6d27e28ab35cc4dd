"""The pages' way into the API: POST /graphql in process, with the person's own token, so the
API's rules (scopes, visibility, limits, error codes) apply to a page exactly as to any client.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import httpx
from starlette.requests import Request

INTERNAL_BASE = "http://failcat.internal"
_COLUMN = re.compile(r"column (\d+)")


class SignInRequired(Exception):
    """No token, or the API refused it (expired, revoked): the person signs in again."""


@dataclass
class ApiError(Exception):
    code: str
    message: str
    errors: list[dict[str, Any]] = field(default_factory=list)

    @property
    def column(self) -> int | None:
        """The 1-based column a search query error names (the query language's parser names
        it in its message), for the inline marker under the query box."""
        for text in [e.get("message", "") for e in self.errors] + [self.message]:
            found = _COLUMN.search(text)
            if found:
                return int(found.group(1))
        return None


def _http(request: Request) -> httpx.AsyncClient:
    """One client per app: the ASGI transport calls the app itself (no socket, no pool)."""
    state = request.app.state
    http = getattr(state, "ui_http", None)
    if http is None:
        http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=request.app), base_url=INTERNAL_BASE
        )
        state.ui_http = http
    return http


async def post(request: Request, path: str, **kwargs: Any) -> httpx.Response:
    return await _http(request).post(path, **kwargs)


async def graphql(
    request: Request, token: str | None, query: str, variables: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The `data` of one operation; the first error raised as ApiError (SignInRequired when
    the token is missing or refused)."""
    if not token:
        raise SignInRequired
    resp = await post(
        request,
        "/graphql",
        json={"query": query, "variables": variables or {}},
        headers={"Authorization": f"Bearer {token}"},
    )
    if resp.status_code == 401:
        raise SignInRequired
    body = resp.json()
    errors = body.get("errors") or []
    if errors:
        first = errors[0]
        extensions = first.get("extensions") or {}
        code = extensions.get("code", "INTERNAL")
        if code == "UNAUTHENTICATED":
            raise SignInRequired
        raise ApiError(code, first.get("message", ""), extensions.get("errors") or [])
    return body["data"]
