"""GraphQL errors: every error carries extensions.code; unexpected ones are masked.

A masked error is logged with the request's correlation id, its type and its stack frames, but
never its message: messages of database or library errors quote the inputs (SQL parameters,
values that failed to convert), and logs must not carry them.
"""

from __future__ import annotations

import logging
import traceback
import uuid

from graphql import GraphQLError
from pydantic import ValidationError
from strawberry.exceptions import MissingQueryError
from strawberry.schema.exceptions import CannotGetOperationTypeError

from services.catalog.ingest import pydantic_errors
from shared.db import database_error
from shared.errors import FailcatError, FieldError
from shared.logging import correlation_id

log = logging.getLogger("failcat.graphql")


# Arguments and fields of the JSON scalar: what follows them in a path is the caller's own
# keys (an annotation's `failure_mode`, an input's `user_id`), spelt as sent.
JSON_VALUED = frozenset(
    {"values", "input", "prediction", "expected", "signals", "environment", "details"}
)


def camel_path(path: str) -> str:
    """`writeup.hypothesis_text` -> `writeup.hypothesisText`: GraphQL clients see camelCase
    for the schema's names, and the keys inside a JSON value as they sent them."""

    def camel(part: str) -> str:
        head, *rest = part.split("_")
        return head + "".join(p[:1].upper() + p[1:] for p in rest)

    parts = path.split(".")
    for i, part in enumerate(parts):
        if part in JSON_VALUED:
            return ".".join([*(camel(p) for p in parts[:i]), part, *parts[i + 1 :]])
    return ".".join(camel(p) for p in parts)


def _field_errors(errors: list[FieldError]) -> list[dict[str, str]]:
    return [{"path": camel_path(e.path), "message": e.message} for e in errors]


def _rebuilt(error: GraphQLError, message: str, extensions: dict) -> GraphQLError:
    return GraphQLError(
        message, error.nodes, error.source, error.positions, error.path, None, extensions
    )


def masked(error: GraphQLError, original: BaseException) -> GraphQLError:
    cid = correlation_id.get() or uuid.uuid4().hex
    frames = "".join(traceback.format_tb(original.__traceback__))
    log.error(
        "unexpected error in GraphQL resolver %s: %s\n%s",
        ".".join(map(str, error.path or [])) or "-",
        type(original).__name__,
        frames,
        extra={"correlation_id": cid},
    )
    return _rebuilt(error, "Internal error", {"code": "INTERNAL", "correlation_id": cid})


def coded(error: GraphQLError) -> GraphQLError:
    original = error.original_error
    if original is not None and not isinstance(original, GraphQLError):
        # A database outage or a value the database refuses is UNAVAILABLE / BAD_USER_INPUT.
        original = database_error(original) or original
    ext = dict(error.extensions or {})
    if isinstance(original, FailcatError):
        ext["code"] = original.code
        if original.errors:
            ext["errors"] = _field_errors(original.errors)
        return _rebuilt(error, original.message, ext)
    if isinstance(original, ValidationError):
        ext["code"] = "BAD_USER_INPUT"
        ext["errors"] = _field_errors(pydantic_errors(original))
        return _rebuilt(error, "invalid input", ext)
    # strawberry's refusals of the request (no query, an operationName naming no operation):
    # HTTP answers them 400; the websocket passes them here. The error keeps its original, by
    # which strawberry's websocket handler closes with 4400 for an unknown operation.
    if original is None or isinstance(
        original, GraphQLError | MissingQueryError | CannotGetOperationTypeError
    ):
        ext.setdefault("code", "BAD_USER_INPUT")  # parse, validation, permission, limits
        error.extensions = ext
        return error
    return masked(error, original)
