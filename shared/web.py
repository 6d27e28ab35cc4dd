"""FastAPI glue every service's REST routes use: the session, the caller, problem+json."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any, TypeVar

import orjson
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict
from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db import database_error
from shared.errors import FailcatError, FieldError, Forbidden, Unauthenticated, Unavailable, said
from shared.security import Principal, Scope

log = logging.getLogger("failcat.web")


async def db_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One transaction per request: committed when the route returns, rolled back on error."""
    async with request.app.state.db.transaction() as session:
        yield session


# scope="function": the transaction commits before the response is sent, so a failed commit
# is reported to the client instead of after a 200 already went out.
Session = Annotated[AsyncSession, Depends(db_session, scope="function")]


T = TypeVar("T")


async def alongside(side: Awaitable[Any], work: Awaitable[T]) -> T:
    """`work`'s result, with `side` (a session connecting) run at the same time: a request
    that asks the index first and the database next then waits for one round trip, not two.
    `side` is waited for whatever `work` does, so a session is never left mid-checkout when
    the request's rollback comes; an error of `work` wins over one of `side`."""
    started = asyncio.ensure_future(side)
    try:
        result = await work
    except BaseException:
        await asyncio.gather(started, return_exceptions=True)
        raise
    await started
    return result


async def begin_early(session: AsyncSession | Awaitable[AsyncSession]) -> None:
    """Connect the session and start its transaction now (`alongside` a request to the
    index): on Postgres the transaction's BEGIN is a round trip, and the pool's ping of a
    connection idle past shared.db.IDLE_PING_S three more, all of which would otherwise come
    after the index answered, before the first query for the hits. One trivial statement
    starts it: the driver begins lazily, on the first statement."""
    if not isinstance(session, AsyncSession):
        session = await session
    await session.execute(_NOTHING)


_NOTHING = text("SELECT 1")


def json_response(body: Any, status: int = 200) -> Response:
    """A JSON answer encoded by orjson as it is. A route returning a plain dict instead has
    FastAPI walk it through jsonable_encoder first: 18 ms for one page of search hits."""
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


# The dependencies below are `async def` though they do no I/O: FastAPI runs a plain `def`
# dependency in its threadpool, a thread hand-off per dependency per request (~15% of a case
# read's time, measured with py-spy). Token validation is local and cached: nothing blocks.
async def current_principal(request: Request) -> Principal:
    cached = getattr(request.state, "principal", None)
    if cached is None:
        cached = request.app.state.auth.authenticate(request.headers.get("authorization"))
        request.state.principal = cached
    return cached


def require(*scopes: Scope) -> Callable[..., Principal]:
    """A dependency that authenticates the caller and checks the route's declared scopes."""

    async def dependency(principal: Principal = Depends(current_principal)) -> Principal:
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


# ---- OpenAPI documentation ----------------------------------------------------------------


class ProblemFieldError(BaseModel):
    path: str
    message: str


class Problem(BaseModel):
    """RFC 9457 problem details, as every REST error is answered (see problem() above)."""

    model_config = ConfigDict(extra="allow")

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    code: str
    errors: list[ProblemFieldError] | None = None
    correlation_id: str | None = None


_PROBLEM_WHEN = {
    400: "Bad input: every error as {path, message}",
    401: "No valid bearer token",
    403: "The token lacks a required scope (named in WWW-Authenticate)",
    404: "Not found, or not visible to the caller",
    413: "Past a documented limit (named in errors)",
    503: "A backend is down: retry after the Retry-After header's seconds",
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` of a route: the problem+json answers it may give (503 always: any route
    can meet a database outage)."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in sorted({*statuses, 401, 503}):
        entry: dict[str, Any] = {
            "description": _PROBLEM_WHEN[status],
            "content": {"application/problem+json": {"schema": inline_schema(Problem)}},
        }
        if status == 503:
            entry["headers"] = {
                "Retry-After": {"description": "seconds", "schema": {"type": "integer"}}
            }
        out[status] = entry
    return out


def inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON Schema with its $defs inlined, for OpenAPI places FastAPI does not
    register components for (openapi_extra, non-JSON media types): a `#/$defs/...` reference
    there would resolve against the OpenAPI document's root and dangle."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                rest = {k: v for k, v in node.items() if k != "$ref"}
                return resolve(defs[ref.removeprefix("#/$defs/")]) | resolve(rest)
            return {k: resolve(v) for k, v in node.items()}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    return resolve(schema)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(FailcatError)
    async def _failcat(request: Request, exc: FailcatError) -> JSONResponse:
        if isinstance(exc, Unauthenticated | Forbidden):
            await _audit_refusal(request, exc)
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
        own connection, a pool checkout): an outage is 503 + Retry-After, a value the
        database refuses a 400, the rest a 500."""
        translated = database_error(exc)
        if translated is not None:
            return await _failcat(request, translated)
        return _internal(request, exc)

    # Registered by type, not under Exception: Starlette's catch-all handler re-raises after
    # answering, which makes the server log a crash and drop the keep-alive connection.
    for kind in (sa_exc.StatementError, sa_exc.TimeoutError, OSError):
        app.add_exception_handler(kind, _backend)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        # A location starts with where the value came from (body, query ...): the path is
        # the field's own, as the caller named it (`kind.1`, not `query.kind.1`).
        errors = [
            FieldError(".".join(str(p) for p in e["loc"][1:]) or str(e["loc"][0]), said(e))
            for e in exc.errors()
        ]
        return problem(400, "Bad input", "request validation failed", errors, code="BAD_USER_INPUT")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        return _internal(request, exc)


async def _audit_refusal(request: Request, exc: FailcatError) -> None:
    """A 401 or 403, in a transaction of its own: the request's rolled back. A database that
    cannot take the entry does not turn the refusal into a 500 (it is logged instead)."""
    from shared.audit import audit_now

    principal = getattr(request.state, "principal", None)
    db = getattr(request.app.state, "db", None)
    if db is None:  # an app without a database (the bare test apps)
        return
    try:
        await audit_now(
            db,
            principal,
            "authz.denied",
            f"http:{request.method} {request.url.path}",
            outcome="denied",
            details={"status": exc.status, "code": exc.code},
        )
    except (sa_exc.SQLAlchemyError, OSError, FailcatError):
        log.warning("could not audit a refusal", exc_info=True)


def _internal(request: Request, exc: BaseException) -> JSONResponse:
    cid = getattr(request.state, "correlation_id", None)
    log.error("unhandled error", exc_info=exc, extra={"correlation_id": cid})
    return problem(500, "Internal error", "unexpected error", code="INTERNAL", correlation_id=cid)
