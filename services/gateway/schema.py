"""The GraphQL schema and its router, with the hardening extensions."""

from __future__ import annotations

import json
from contextlib import aclosing
from typing import Any

import orjson
import strawberry
from cross_web import HTTPException
from graphql import GraphQLError
from starlette.requests import HTTPConnection
from starlette.responses import Response
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.extensions import (
    AddValidationRules,
    DisableIntrospection,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    ValidationCache,
)
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData
from strawberry.schema.config import StrawberryConfig
from strawberry.schema.exceptions import InvalidOperationTypeError
from strawberry.schema.schema import StreamResult
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.types import ExecutionContext, ExecutionResult
from strawberry.types.execution import PreExecutionError
from strawberry.types.graphql import OperationType

from services.gateway import graphiql
from services.gateway import limits as L
from services.gateway.annotation.mutations import AnnotationMutation
from services.gateway.annotation.queries import AnnotationQuery
from services.gateway.audit.queries import AuditQuery
from services.gateway.auth.mutations import AuthMutation
from services.gateway.auth.queries import AuthQuery
from services.gateway.catalog.capture_policies import CapturePolicyMutation, CapturePolicyQuery
from services.gateway.catalog.mutations import CatalogMutation
from services.gateway.catalog.queries import CatalogQuery
from services.gateway.context import Context
from services.gateway.errors import coded
from services.gateway.execution import FailcatExecutionContext, direct_resolvers
from services.gateway.governance.escalation import EscalationMutation, EscalationQuery
from services.gateway.governance.redaction import RedactionMutation, RedactionQuery
from services.gateway.governance.retention import RetentionMutation, RetentionQuery
from services.gateway.guard import DocumentGuard
from services.gateway.observability import OperationMetrics
from services.gateway.permissions import declare
from services.gateway.plans.mutations import PlansMutation
from services.gateway.plans.queries import PlansQuery
from services.gateway.safeguards.mutations import SafeguardsMutation
from services.gateway.safeguards.queries import SafeguardsQuery
from services.gateway.search import types as search_types
from services.gateway.search.queries import SearchQuery
from services.gateway.sharing.mutations import SharingMutation
from services.gateway.sharing.queries import SharingQuery
from services.gateway.subscriptions import Subscription, TransportWSHandler
from services.gateway.transaction import TransactionExtension
from shared.errors import FailcatError
from shared.security import Scope

# The search types are the search owner's module; their declaration lives here until that
# module carries @read_with itself (every search result is read under cases:read).
for _search_type in (
    search_types.Highlight,
    search_types.SearchHit,
    search_types.Bucket,
    search_types.Facet,
    search_types.HeatmapCell,
    search_types.SearchResults,
):
    if "__failcat_scopes__" not in _search_type.__dict__:
        declare(_search_type, Scope.CASES_READ)


@strawberry.type
class Query(
    CatalogQuery,
    SearchQuery,
    AuthQuery,
    SafeguardsQuery,
    PlansQuery,
    AnnotationQuery,
    EscalationQuery,
    RetentionQuery,
    RedactionQuery,
    SharingQuery,
    CapturePolicyQuery,
    AuditQuery,
):
    pass


@strawberry.type
class Mutation(
    CatalogMutation,
    AuthMutation,
    SafeguardsMutation,
    PlansMutation,
    AnnotationMutation,
    EscalationMutation,
    RetentionMutation,
    RedactionMutation,
    SharingMutation,
    CapturePolicyMutation,
):
    pass


class FailcatSchema(strawberry.Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        """Every error gets its extensions.code, and unexpected ones are masked (logged with a
        correlation id, never their inputs). strawberry calls this for every result, streamed
        subscription results included, before extensions or the transport see the errors."""
        errors[:] = [coded(e) for e in errors]

    async def execute(
        self,
        query: str | None,
        variable_values: dict[str, Any] | None = None,
        context_value: Any | None = None,
        root_value: Any | None = None,
        operation_name: str | None = None,
        allowed_operation_types: Any = None,
        operation_extensions: dict[str, Any] | None = None,
    ) -> ExecutionResult:
        """One result, as HTTP answers: never a subscription. strawberry allows subscriptions
        over POST and GET for its multipart transport (not served here), and graphql-core would
        then run the subscription field as a plain field (an INTERNAL error). The websocket
        calls `subscribe`, not this."""
        allowed = set(OperationType if allowed_operation_types is None else allowed_operation_types)
        try:
            return await super().execute(
                query,
                variable_values,
                context_value,
                root_value,
                operation_name,
                allowed - {OperationType.SUBSCRIPTION},
                operation_extensions,
            )
        except InvalidOperationTypeError as e:
            if e.operation_type is not OperationType.SUBSCRIPTION:
                raise
            return ExecutionResult(
                data=None,
                errors=[GraphQLError(SUBSCRIPTIONS_NEED_WS, extensions={"code": "BAD_USER_INPUT"})],
            )

    async def stream(
        self,
        query: str | None,
        variable_values: dict[str, Any] | None = None,
        context_value: Any | None = None,
        root_value: Any | None = None,
        operation_name: str | None = None,
        operation_extensions: dict[str, Any] | None = None,
        allowed_operation_types: Any = None,
    ) -> StreamResult:
        """The websocket's entry. strawberry's stream lets what an extension raises before the
        first result escape (the parser cache's syntax error, the token limit, the document
        guard's refusals): the websocket then answered a bare `complete`. execute answers
        those as errors; here they are the stream's one result, as strawberry's own
        pre-execution errors are (a syntax error closes the socket with 4400, others are an
        `error` message)."""
        source = await super().stream(
            query,
            variable_values,
            context_value,
            root_value,
            operation_name,
            operation_extensions,
            allowed_operation_types,
        )
        return self._refusals_as_results(source)

    async def _refusals_as_results(self, source: StreamResult) -> StreamResult:
        started = False
        async with aclosing(source):
            try:
                async for result in source:
                    started = True
                    yield result
            except Exception as e:
                if started:
                    raise
                error = e if isinstance(e, GraphQLError) else GraphQLError(str(e), original_error=e)
                errors = [error]
                self.process_errors(errors)
                yield PreExecutionError(data=None, errors=errors)


SUBSCRIPTIONS_NEED_WS = (
    "subscriptions are served over a WebSocket only: connect to /graphql with the "
    "graphql-transport-ws protocol"
)


# strawberry's QueryDepthLimiter and MaxAliasesLimiter build a new rule class per instance,
# and ValidationCache keys on the rule classes: built per request, they would never hit the
# cache. So their rules are built once (the classes are stateless) and reused by a fresh
# extension instance per request.
_DEPTH_AND_ALIAS_RULES = [
    *QueryDepthLimiter(max_depth=L.MAX_DEPTH).validation_rules,
    *MaxAliasesLimiter(max_alias_count=L.MAX_ALIASES).validation_rules,
]


class DepthAndAliasLimits(AddValidationRules):
    def __init__(self) -> None:
        super().__init__(_DEPTH_AND_ALIAS_RULES)


def extensions(production: bool) -> list[Any]:
    """Classes or factories, never instances: an instance would be shared by every request.
    Order matters: the guard's on_validate runs before the validation cache validates."""
    chain: list[Any] = [
        OperationMetrics,
        TransactionExtension,
        lambda: MaxTokensLimiter(max_token_count=L.MAX_TOKENS),
        lambda: ParserCache(maxsize=L.MAX_CACHED_DOCUMENTS),
        DocumentGuard,
        DepthAndAliasLimits,
    ]
    if production:
        chain.append(DisableIntrospection)
    chain.append(lambda: ValidationCache(maxsize=L.MAX_CACHED_DOCUMENTS))
    return chain


def build_schema(production: bool = False) -> strawberry.Schema:
    schema = FailcatSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        extensions=extensions(production),
        execution_context_class=FailcatExecutionContext,
        # "Did you mean ...?" would list field names even with introspection off.
        config=StrawberryConfig(disable_field_suggestions=True),
    )
    direct_resolvers(schema)
    return schema


class FailcatGraphQL(GraphQL):
    """POST /graphql (and its websocket) as a plain ASGI app on a route of its own: strawberry's
    FastAPI router would resolve its context through FastAPI's dependency injection on every
    request (a few hundred microseconds) and keeps each request's sub-response on the shared
    router instance."""

    graphql_transport_ws_handler_class = TransportWSHandler

    async def get_context(self, request: HTTPConnection, response: Any) -> Context:
        ctx = Context(request)
        if request.scope["type"] == "http" and not self._opens_graphiql(request):
            ctx.principal  # noqa: B018  authenticate up front: no token is a 401, not a GraphQL error
        return ctx

    def _opens_graphiql(self, request: HTTPConnection) -> bool:
        """A browser opening the page needs no token (the page holds no data; it asks the
        person for one). Without the IDE (production) strawberry answers such a request 404."""
        return graphiql.wants_page(request)

    async def render_graphql_ide(self, request: Any) -> Response:
        state = request.app.state
        return graphiql.page(state.settings, sign_in=getattr(state, "graphiql_sign_in", False))

    def parse_json(self, data: str | bytes) -> Any:
        parsed = super().parse_json(data)
        # strawberry reads any other JSON value with .get() (a 500); a list is its batch (and
        # refused: batching is off).
        if not isinstance(parsed, dict | list):
            raise HTTPException(400, "The GraphQL request must be a JSON object")
        return parsed

    async def parse_http_body(self, request: Any) -> GraphQLRequestData | list[GraphQLRequestData]:
        data = await super().parse_http_body(request)
        # strawberry checks the types of query, variables and extensions, not this one.
        if isinstance(data, GraphQLRequestData) and not isinstance(data.operation_name, str | None):
            raise HTTPException(
                400,
                "The GraphQL operation's `operationName` must be a string or null, if provided.",
            )
        return data

    def decode_json(self, data: str | bytes) -> object:
        # orjson.JSONDecodeError subclasses json.JSONDecodeError: bad bodies still get a 400.
        return orjson.loads(data)

    def encode_json(self, data: object) -> str:
        """orjson: a page of 100 cases encodes in a tenth of the stdlib's time. A str, not
        bytes: the websocket transport sends bytes as binary frames, which
        graphql-transport-ws clients refuse."""
        return _dumps(data).decode()

    def create_response(
        self, response_data: GraphQLHTTPResponse | list[GraphQLHTTPResponse], sub_response: Any
    ) -> Response:
        response = Response(
            _dumps(response_data),
            media_type="application/json",
            status_code=sub_response.status_code or 200,
        )
        response.headers.raw.extend(sub_response.headers.raw)
        return response

    async def on_ws_connect(self, context: Context) -> Any:
        """A websocket authenticates in connection_init (or its upgrade request's header)."""
        try:
            context.principal  # noqa: B018
        except FailcatError:
            raise ConnectionRejectionError({"code": "UNAUTHENTICATED"}) from None
        return None


def _dumps(data: object) -> bytes:
    try:
        return orjson.dumps(data)
    except TypeError:
        # A JSON scalar holding what orjson refuses (an integer past 64 bits): the stdlib can.
        return json.dumps(data, separators=(",", ":")).encode()


def graphql_app(settings: Any) -> FailcatGraphQL:
    return FailcatGraphQL(
        build_schema(settings.production),
        graphql_ide=None if settings.production else "graphiql",
        allow_queries_via_get=False,
        subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
        max_subscriptions_per_connection=L.MAX_SUBSCRIPTIONS_PER_CONNECTION,
    )
