"""GraphQL errors: every error carries extensions.code; unexpected ones are masked."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator

from graphql import GraphQLError
from pydantic import ValidationError
from strawberry.extensions import SchemaExtension

from services.catalog.ingest import pydantic_errors
from shared.errors import FailcatError

log = logging.getLogger("failcat.graphql")


def _coded(error: GraphQLError) -> GraphQLError:
    original = error.original_error
    ext = dict(error.extensions or {})
    if isinstance(original, FailcatError):
        ext["code"] = original.code
        if original.errors:
            ext["errors"] = [e.as_dict() for e in original.errors]
        return GraphQLError(
            original.message, error.nodes, error.source, error.positions, error.path, None, ext
        )
    if isinstance(original, ValidationError):
        ext["code"] = "BAD_USER_INPUT"
        ext["errors"] = [e.as_dict() for e in pydantic_errors(original)]
        return GraphQLError(
            "invalid input", error.nodes, error.source, error.positions, error.path, None, ext
        )
    if original is None or isinstance(original, GraphQLError):
        ext.setdefault("code", "BAD_USER_INPUT")
        error.extensions = ext
        return error
    # Unexpected: log with a correlation id (not the inputs), answer with the id only.
    cid = uuid.uuid4().hex
    log.error(
        "unexpected error in GraphQL resolver %s: %s",
        ".".join(map(str, error.path or [])),
        type(original).__name__,
        extra={"correlation_id": cid},
        exc_info=(type(original), original, original.__traceback__),
    )
    return GraphQLError(
        "Internal error",
        error.nodes,
        error.source,
        error.positions,
        error.path,
        None,
        {"code": "INTERNAL", "correlation_id": cid},
    )


class ErrorCodes(SchemaExtension):
    def on_operation(self) -> Iterator[None]:
        yield
        result = self.execution_context.result
        if result is not None and result.errors:
            result.errors = [_coded(e) for e in result.errors]
