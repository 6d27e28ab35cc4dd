"""One transaction per GraphQL request, committed before the response is sent."""

from __future__ import annotations

from collections.abc import AsyncIterator

from graphql import OperationType
from strawberry.extensions import SchemaExtension


class TransactionExtension(SchemaExtension):
    async def on_operation(self) -> AsyncIterator[None]:
        try:
            yield
        finally:
            ctx = self.execution_context.context
            session = ctx.opened_session
            if session is not None:
                result = self.execution_context.result
                failed_mutation = (
                    self.execution_context.operation_type == OperationType.MUTATION
                    and result is not None
                    and bool(result.errors)
                )
                try:
                    if failed_mutation:
                        await session.rollback()
                    else:
                        await session.commit()
                finally:
                    await session.close()
                    ctx._session = None
