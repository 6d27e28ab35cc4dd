"""Errors every service raises; the API layers map them to problem+json or GraphQL codes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import ValidationError


@dataclass(frozen=True, slots=True)
class FieldError:
    path: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"path": self.path, "message": self.message}


def said(error: Mapping[str, Any]) -> str:
    """A pydantic error's message as its validator wrote it: pydantic wraps a validator's
    ValueError as "Value error, <message>", which reads as noise to whoever sent the value."""
    return str(error["msg"]).removeprefix("Value error, ")


def validation_errors(exc: ValidationError, prefix: str = "") -> list[FieldError]:
    """pydantic's errors, each named by its input path under `prefix` (`rule.threshold`;
    the whole input is `$`), in the validators' own words."""
    head = [prefix] if prefix else []
    return [
        FieldError(".".join([*head, *map(str, e["loc"])]) or "$", said(e))
        for e in exc.errors(include_url=False)
    ]


class FailcatError(Exception):
    code = "INTERNAL"
    status = 500
    title = "Internal error"

    def __init__(self, message: str, errors: list[FieldError] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.errors = errors or []


class BadUserInput(FailcatError):
    code, status, title = "BAD_USER_INPUT", 400, "Bad input"


class Unauthenticated(FailcatError):
    code, status, title = "UNAUTHENTICATED", 401, "Unauthenticated"


class Forbidden(FailcatError):
    code, status, title = "FORBIDDEN", 403, "Forbidden"


class NotFound(FailcatError):
    code, status, title = "NOT_FOUND", 404, "Not found"


class Conflict(FailcatError):
    code, status, title = "CONFLICT", 409, "Conflict"


class PayloadTooLarge(FailcatError):
    code, status, title = "PAYLOAD_TOO_LARGE", 413, "Payload too large"


# What a client is told to wait before retrying an outage (a database failover or an index
# node restart takes seconds; retrying sooner only adds load to whatever is recovering).
RETRY_AFTER_S = 2


class Unavailable(FailcatError):
    """A backend (the database, the search engine) cannot be reached now; the same request
    may succeed later. REST answers 503 with Retry-After, GraphQL the code UNAVAILABLE."""

    code, status, title = "UNAVAILABLE", 503, "Unavailable"

    def __init__(
        self,
        message: str,
        errors: list[FieldError] | None = None,
        retry_after: int = RETRY_AFTER_S,
    ) -> None:
        super().__init__(message, errors)
        self.retry_after = retry_after
