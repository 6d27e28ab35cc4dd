"""FastAPI glue every service's REST routes use: the session, the caller, problem+json."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db import database_unreachable
from shared.errors import FailcatError, FieldError, Forbidden, Unauthenticated, Unavailable
from shared.security import Principal, Scope

log = logging.getLogger("failcat.web")


async def db_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One transaction per request: committed when the route returns, rolled back on error."""
    async with request.app.state.db.transaction() as session:
        yield session


# scope="function": the transaction commits before the response is sent, so a failed commit
# is reported to the client instead of after a 200 already went out.
Session = Annotated[AsyncSession, Depends(db_session, scope="function")]


def current_principal(request: Request) -> Principal:
    cached = getattr(request.state, "principal", None)
    if cached is None:
        cached = request.app.state.auth.authenticate(request.headers.get("authorization"))
        request.state.principal = cached
    return cached


def require(*scopes: Scope) -> Callable[..., Principal]:
    """A dependency that authenticates the caller and checks the route's declared scopes."""

    def dependency(principal: Principal = Depends(current_principal)) -> Principal:
        missing = principal.missing(*scopes)
        if missing:
            raise InsufficientScope(missing)
        return principal

    dependency.required_scopes = tuple(scopes)  # type: ignore[attr-defined]
    return dependency


class InsufficientScope(Forbidden):
    def __init__(self, missing: list[str]) -> None:
        super().__init__(f"insufficient_scope: requires {' '.join(missing)}")
        self.missing = missing


def problem(
    status: int,
    title: str,
    detail: str,
    errors: list[FieldError] | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
    }
    if errors:
        body["errors"] = [e.as_dict() for e in errors]
    body.update(extra)
    return JSONResponse(
        body, status_code=status, media_type="application/problem+json", headers=headers
    )


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(FailcatError)
    async def _failcat(_: Request, exc: FailcatError) -> JSONResponse:
        headers = None
        if isinstance(exc, Unauthenticated):
            headers = {"WWW-Authenticate": getattr(exc, "www_authenticate", "Bearer")}
        elif isinstance(exc, InsufficientScope):
            headers = {
                "WWW-Authenticate": 'Bearer error="insufficient_scope", '
                f'scope="{" ".join(exc.missing)}"'
            }
        elif isinstance(exc, Unavailable):
            headers = {"Retry-After": str(exc.retry_after)}
        return problem(exc.status, exc.title, exc.message, exc.errors, headers, code=exc.code)

    async def _backend(request: Request, exc: Exception) -> JSONResponse:
        """Database and connection errors raised outside Database.transaction() (a route's
        own connection, a pool checkout): an outage is 503 + Retry-After, the rest a 500."""
        if database_unreachable(exc):
            return await _failcat(request, Unavailable("a backend is unavailable"))
        return _internal(request, exc)

    # Registered by type, not under Exception: Starlette's catch-all handler re-raises after
    # answering, which makes the server log a crash and drop the keep-alive connection.
    for kind in (sa_exc.DBAPIError, sa_exc.TimeoutError, OSError):
        app.add_exception_handler(kind, _backend)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            FieldError(".".join(str(p) for p in e["loc"] if p != "body"), e["msg"])
            for e in exc.errors()
        ]
        return problem(400, "Bad input", "request validation failed", errors, code="BAD_USER_INPUT")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        return _internal(request, exc)


def _internal(request: Request, exc: BaseException) -> JSONResponse:
    cid = getattr(request.state, "correlation_id", None)
    log.error("unhandled error", exc_info=exc, extra={"correlation_id": cid})
    return problem(500, "Internal error", "unexpected error", code="INTERNAL", correlation_id=cid)
