"""Subscription.caseEvents: ingested and changed cases, as the caller may see them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from datetime import datetime
from typing import Any

import strawberry
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
)
from strawberry.types import Info

from services.catalog import service
from services.gateway.catalog.types import FailureCase, Severity, Status
from services.gateway.events import CaseEvent, CaseEventKind
from services.gateway.permissions import read_with, scoped
from shared.audit import audit
from shared.errors import Unauthenticated
from shared.security import Scope


@strawberry.input
class CaseEventFilterInput:
    kinds: list[CaseEventKind] | None = None
    model: str | None = strawberry.field(default=None, description="model name")
    team: str | None = None
    failure_mode: str | None = strawberry.field(
        default=None, description="a code; a top-level code matches its sub-modes"
    )
    severity: list[Severity] | None = None
    status: list[Status] | None = None


@read_with(Scope.CASES_READ)
@strawberry.type
class CaseEventPayload:
    kind: CaseEventKind
    at: datetime
    case: FailureCase
    lagged: int = strawberry.field(
        description="events this subscriber lost since the last one, because it read too slowly"
    )


async def _matches(info: Info, f: CaseEventFilterInput | None, case: object) -> bool:
    if f is None:
        return True
    c = case
    if f.team is not None and c.team != f.team:  # type: ignore[attr-defined]
        return False
    if f.failure_mode is not None and f.failure_mode not in (
        c.failure_mode,  # type: ignore[attr-defined]
        c.failure_mode_parent,  # type: ignore[attr-defined]
    ):
        return False
    if f.severity is not None and c.severity not in {s.value for s in f.severity}:  # type: ignore[attr-defined]
        return False
    if f.status is not None and c.status not in {s.value for s in f.status}:  # type: ignore[attr-defined]
        return False
    if f.model is not None:
        model = await info.context.loaders.model.load(c.model_id)  # type: ignore[attr-defined]
        return model is not None and model.name == f.model
    return True


async def _visible(info: Info, events: list[CaseEvent]) -> dict[str, object]:
    session = await info.context.session()
    rows = await service.get_cases(session, [e.case_id for e in events], info.context.principal)
    return {c.id: c for c in rows}


def _invalid_message(message: object) -> str | None:
    """Why a graphql-transport-ws client message is malformed, or None. strawberry reads a
    message's fields unchecked: anything but an object crashed the connection (closed without
    a code), a `subscribe` with a non-string id, a payload that is not an object or a
    non-string query, variables or operationName ended in a bare `complete` or an INTERNAL
    error. The rules are the protocol's (graphql-ws's validateMessage)."""
    if not isinstance(message, dict):
        return "Invalid message: not a JSON object"
    kind = message.get("type")
    if not isinstance(kind, str):
        return "Invalid message: `type` must be a string"
    if kind == "connection_init":
        if not isinstance(message.get("payload"), dict | None):
            return "Invalid connection init payload"
    elif kind in ("subscribe", "complete"):
        if not isinstance(message.get("id"), str) or not message["id"]:
            return f"Invalid message: `{kind}` needs an `id`, a non-empty string"
        if kind == "subscribe":
            payload = message.get("payload")
            if not isinstance(payload, dict):
                return "Invalid message: `subscribe` needs a `payload` object"
            if not isinstance(payload.get("query"), str):
                return "Invalid message: the payload's `query` must be a string"
            for key in ("variables", "extensions"):
                if not isinstance(payload.get(key), dict | None):
                    return f"Invalid message: the payload's `{key}` must be an object or null"
            if not isinstance(payload.get("operationName"), str | None):
                return "Invalid message: the payload's `operationName` must be a string or null"
    return None


class TransportWSHandler(BaseGraphQLTransportWSHandler):
    """strawberry's graphql-transport-ws handler, refusing malformed messages with 4400."""

    async def handle_message(self, message: Any) -> None:
        reason = _invalid_message(message)
        if reason is not None:
            await self.handle_invalid_message(reason)
            return
        if message["type"] == "connection_init" and message.get("payload") is None:
            # The protocol's payload is optional and nullable; strawberry refuses a null one.
            message = {**message, "payload": {}}
        await super().handle_message(message)


# How often an idle subscription re-checks its token (expiry, revocation).
TOKEN_RECHECK_S = 1.0


@strawberry.type
class Subscription:
    @strawberry.subscription(permission_classes=scoped(Scope.CASES_READ))
    async def case_events(
        self, info: Info, filter: CaseEventFilterInput | None = None
    ) -> AsyncGenerator[CaseEventPayload, None]:
        ctx = info.context
        kinds = set(filter.kinds) if filter and filter.kinds else None
        async with ctx.case_events.subscribe() as sub:
            while True:
                try:
                    events = [await asyncio.wait_for(sub.queue.get(), TOKEN_RECHECK_S)]
                except TimeoutError:
                    events = []
                # The connection outlives the token check of its start: re-check it.
                if not ctx.app_state.auth.still_valid(ctx.principal):
                    raise Unauthenticated("token expired or revoked: subscribe again")
                while not sub.queue.empty():  # one catalog read for everything already queued
                    events.append(sub.queue.get_nowait())
                if kinds is not None:
                    events = [e for e in events if e.kind in kinds]
                if not events:
                    continue
                # Visibility is applied by the catalog, as for every other read.
                cases = await _visible(info, events)
                delivered = []
                for event in events:
                    case = cases.get(event.case_id)
                    if case is not None and await _matches(info, filter, case):
                        delivered.append((event, case))
                if delivered:
                    # A delivered event is a read of the case's details: its entry is stored
                    # (this unit of work commits) before the event is sent.
                    session = await ctx.session()
                    for event, case in delivered:
                        audit(
                            session,
                            ctx.principal,
                            "case.event",
                            f"case:{case.id}",
                            details={"kind": event.kind.value},
                            read=True,
                        )
                    await ctx.end_unit_of_work()
                for event, case in delivered:
                    lagged, sub.lagged = sub.lagged, 0
                    yield CaseEventPayload(kind=event.kind, at=event.at, case=case, lagged=lagged)
                await ctx.end_unit_of_work()
