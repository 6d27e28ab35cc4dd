"""One transaction per GraphQL request, committed before the response is sent.

A mutation document is atomic: if any of its fields fails, every change it made is rolled
back and the answer carries the errors with no data, so a client never reads a result that
was not stored.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from graphql import GraphQLError
from strawberry.extensions import SchemaExtension
from strawberry.types.graphql import OperationType

from shared.audit import audit_now

REFUSALS = frozenset({"FORBIDDEN", "UNAUTHENTICATED"})


class TransactionExtension(SchemaExtension):
    async def on_operation(self) -> AsyncIterator[None]:
        try:
            yield
        finally:
            ctx = self.execution_context.context
            if ctx.opened_session is not None:
                result = self.execution_context.result
                failed_mutation = (
                    self.execution_context.operation_type == OperationType.MUTATION
                    and result is not None
                    and bool(result.errors)
                )
                await ctx.end_transaction(commit=not failed_mutation)
                if failed_mutation:
                    result.data = None
            result = self.execution_context.result
            if result is not None and result.errors:
                await audit_refusals(ctx, result.errors)


async def audit_refusals(ctx: Any, errors: list[GraphQLError]) -> None:
    """Fields refused for a missing scope or clearance: one entry for the operation, in a
    transaction of its own (a refused mutation's transaction rolled back)."""
    refused = [e for e in errors if (e.extensions or {}).get("code") in REFUSALS]
    if not refused:
        return
    paths = [".".join(str(p) for p in e.path or []) for e in refused]
    await audit_now(
        ctx.app_state.db,
        ctx.principal,
        "authz.denied",
        f"graphql:{paths[0]}",
        outcome="denied",
        details={
            "fields": paths,
            "codes": sorted({e.extensions["code"] for e in refused}),
        },
    )
