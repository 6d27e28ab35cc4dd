"""The GraphQL schema and its router, with the hardening extensions."""

from __future__ import annotations

from typing import Any

import strawberry
from fastapi import Request
from graphql import GraphQLError
from strawberry.extensions import (
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    ValidationCache,
)
from strawberry.fastapi import GraphQLRouter
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext

from services.gateway.catalog.mutations import CatalogMutation
from services.gateway.catalog.queries import CatalogQuery
from services.gateway.context import Context
from services.gateway.errors import ErrorCodes
from services.gateway.search.queries import SearchQuery
from services.gateway.transaction import TransactionExtension
from shared.settings import Settings

MAX_DEPTH = 10
MAX_ALIASES = 30
MAX_TOKENS = 5000


@strawberry.type
class Query(CatalogQuery, SearchQuery):
    pass


@strawberry.type
class Mutation(CatalogMutation):
    pass


class FailcatSchema(strawberry.Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        """ErrorCodes logs unexpected errors (masked, no inputs); nothing else to log."""


def build_schema(production: bool = False) -> strawberry.Schema:
    extensions: list[Any] = [
        ErrorCodes,
        TransactionExtension,
        # Passed as configured classes or factories, never shared instances across requests.
        lambda: QueryDepthLimiter(max_depth=MAX_DEPTH),
        lambda: MaxAliasesLimiter(max_alias_count=MAX_ALIASES),
        lambda: MaxTokensLimiter(max_token_count=MAX_TOKENS),
        lambda: ParserCache(maxsize=1000),
        lambda: ValidationCache(maxsize=1000),
    ]
    if production:
        from strawberry.extensions import DisableIntrospection

        extensions.append(DisableIntrospection)
    return FailcatSchema(
        query=Query,
        mutation=Mutation,
        extensions=extensions,
        config=StrawberryConfig(disable_field_suggestions=True),
    )


async def get_context(request: Request) -> Context:
    ctx = Context(request)
    ctx.principal  # noqa: B018  authenticate up front: no token is a 401, not a GraphQL error
    return ctx


def graphql_router(settings: Settings) -> GraphQLRouter:
    return GraphQLRouter(
        build_schema(settings.production),
        context_getter=get_context,
        graphql_ide=None if settings.production else "graphiql",
        allow_queries_via_get=False,
    )
