"""Request correlation ids, Prometheus metrics per GraphQL operation, and operation spans.

Everything here runs once per request or operation, never per resolved field: strawberry's own
OpenTelemetry extension hooks every resolver, which is why it is not used.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from strawberry.extensions import SchemaExtension

from shared.logging import correlation_id
from shared.telemetry import span

GRAPHQL_REQUESTS = Counter(
    "failcat_graphql_requests",
    "GraphQL operations by name, type and outcome (ok, error, refused)",
    ["operation", "type", "outcome"],
)
GRAPHQL_LATENCY = Histogram(
    "failcat_graphql_request_duration_seconds",
    "GraphQL operation latency by name",
    ["operation", "type"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

# Operation names come from clients: only well-formed ones, and a bounded number of them, become
# label values, so a client cannot grow the metrics without limit.
MAX_OPERATION_NAMES = 500
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_seen_names: set[str] = set()
_CID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


def operation_label(name: object) -> str:
    # Not always a str: the websocket transport passes a client's operationName unchecked.
    if not isinstance(name, str) or not _NAME.match(name):
        return "anonymous"
    if name not in _seen_names:
        if len(_seen_names) >= MAX_OPERATION_NAMES:
            return "other"
        _seen_names.add(name)
    return name


class OperationMetrics(SchemaExtension):
    async def on_operation(self) -> AsyncIterator[None]:
        ctx = self.execution_context
        started = time.perf_counter()
        outcome = "refused"  # stays so when parsing, the guard or validation stops it
        with span("graphql.operation") as current:
            try:
                yield
                result = ctx.result
                outcome = "error" if result is not None and result.errors else "ok"
            finally:
                name = operation_label(self._name())
                kind = self._kind()
                GRAPHQL_REQUESTS.labels(name, kind, outcome).inc()
                GRAPHQL_LATENCY.labels(name, kind).observe(time.perf_counter() - started)
                if current is not None:
                    current.update_name(f"graphql {kind} {name}")
                    current.set_attribute("graphql.operation.name", name)
                    current.set_attribute("graphql.operation.type", kind)

    def _name(self) -> str | None:
        # The provided name, else the document's first operation's (None before parsing).
        try:
            return self.execution_context.operation_name
        except (RuntimeError, AttributeError):
            return None

    def _kind(self) -> str:
        try:
            return self.execution_context.operation_type.value
        except (RuntimeError, AttributeError):
            return "unknown"


class CorrelationIdMiddleware:
    """Gives each request a correlation id (a sane X-Request-ID, else a new one), puts it in
    the logging context and request.state, and returns it as X-Correlation-ID."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        cid = _incoming_id(scope) or _new_id()
        scope.setdefault("state", {})["correlation_id"] = cid
        token = correlation_id.set(cid)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-correlation-id", cid.encode())]
            await send(message)

        try:
            with span("http.request", **{"http.target": scope.get("path", "")}):
                await self.app(scope, receive, send_with_id)
        finally:
            correlation_id.reset(token)


def _new_id() -> str:
    """128 random bits, as uuid4().hex has. Not uuid4: its os.urandom releases the GIL, and
    under load getting it back behind the database threads costs more than the request's
    own work. A correlation id needs to be unique, not unpredictable."""
    return f"{_random.getrandbits(128):032x}"


_random = random.Random()  # seeded from os.urandom once


def _incoming_id(scope: Scope) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == b"x-request-id":
            text = value.decode("latin-1")
            return text if _CID.match(text) else None
    return None


metrics_router = APIRouter(tags=["observability"])


@metrics_router.get("/metrics", include_in_schema=False)
async def metrics() -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


def metric_value(name: str, labels: dict[str, Any]) -> float:
    """A sample's current value (0 when absent); for tests and the benchmark."""
    return REGISTRY.get_sample_value(name, labels) or 0.0
