"""Inputs of the escalation service (pydantic): a rule, a lift of a release block."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

MAX_QUERY = 2_000
MAX_REASON = 2_000
MAX_THRESHOLD = 1_000  # cases counted by one firing (each may get a ticket link)
MAX_WINDOW_MINUTES = 30 * 24 * 60
MAX_DAYS = 365

Url = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=2000, pattern=r"^https?://\S+$")
]
Reason = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_REASON)
]


class RuleKind(StrEnum):
    THRESHOLD = "threshold"  # N matching cases within M minutes
    GROUP_REGRESSED = "group_regressed"  # a matching case's group regressed
    LEFT_CONFIRMED = "left_confirmed"  # a matching case left in `confirmed` for D days


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD_LETTER = "dead_letter"


class Action(StrEnum):
    WEBHOOK = "webhook"
    TICKET = "ticket"


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RuleIn(_In):
    name: Annotated[
        str,
        StringConstraints(
            strip_whitespace=True, min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._\-]+$"
        ),
    ]
    kind: RuleKind
    query: Annotated[str, StringConstraints(strip_whitespace=True, max_length=MAX_QUERY)] = ""
    threshold: Annotated[int, Field(ge=1, le=MAX_THRESHOLD)] | None = None
    window_minutes: Annotated[int, Field(ge=1, le=MAX_WINDOW_MINUTES)] | None = None
    days: Annotated[int, Field(ge=1, le=MAX_DAYS)] | None = None
    webhook_url: Url | None = None
    ticket_url: Url | None = None
    block_release: bool = False
    # Default: 32 random bytes, shown once in the answer.
    secret: Annotated[str, StringConstraints(min_length=16, max_length=200)] | None = None

    @model_validator(mode="after")
    def _complete(self) -> RuleIn:
        if self.kind is RuleKind.THRESHOLD and (self.threshold is None or not self.window_minutes):
            raise ValueError("a threshold rule needs threshold and window_minutes")
        if self.kind is RuleKind.LEFT_CONFIRMED and self.days is None:
            raise ValueError("a left_confirmed rule needs days")
        if not (self.webhook_url or self.ticket_url or self.block_release):
            raise ValueError("a rule needs an action: webhook_url, ticket_url or block_release")
        return self


class LiftIn(_In):
    model: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    version: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
    reason: Reason
