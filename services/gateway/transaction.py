"""One transaction per GraphQL request, committed before the response is sent.

A mutation document is atomic: if any of its fields fails, every change it made is rolled
back and the answer carries the errors with no data, so a client never reads a result that
was not stored.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from strawberry.extensions import SchemaExtension
from strawberry.types.graphql import OperationType


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
