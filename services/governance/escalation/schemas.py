"""Inputs of the escalation service (pydantic): a rule, a lift of a release block."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from services.governance.inputs import no_nul

MAX_QUERY = 2_000
MAX_REASON = 2_000
MAX_THRESHOLD = 1_000  # cases counted by one firing (each may get a ticket link)
MAX_WINDOW_MINUTES = 30 * 24 * 60
MAX_DAYS = 365


def _reachable(url: str) -> str:
    """A URL a POST can be sent to: the pattern lets through `https://:99999/x` (no host, a
    port past 65535) and `http://[::1/x`, which would only fail at every attempt until the
    delivery is dead-lettered."""
    try:
        parts = urlsplit(url)
        port = parts.port  # raises on a port that is not a number in 0..65535
    except ValueError as exc:
        raise ValueError(f"not a valid URL: {exc}") from None
    if not parts.hostname:
        raise ValueError("the URL names no host")
    if port == 0:
        raise ValueError("port 0 cannot be connected to")
    return url


Url = Annotated[
    str,
    StringConstraints(strip_whitespace=True, max_length=2000, pattern=r"^https?://\S+$"),
    AfterValidator(no_nul),
    AfterValidator(_reachable),
]
Reason = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_REASON),
    AfterValidator(no_nul),
]


class RuleKind(StrEnum):
    THRESHOLD = "threshold"  # N matching cases within M minutes
    GROUP_REGRESSED = "group_regressed"  # a matching case's group regressed
    LEFT_CONFIRMED = "left_confirmed"  # a matching case left in `confirmed` for D days


# The condition's fields of each kind: it needs these and has no use for the others.
KIND_FIELDS = {
    RuleKind.THRESHOLD: ("threshold", "window_minutes"),
    RuleKind.GROUP_REGRESSED: (),
    RuleKind.LEFT_CONFIRMED: ("days",),
}


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
    secret: (
        Annotated[str, StringConstraints(min_length=16, max_length=200), AfterValidator(no_nul)]
        | None
    ) = None

    def incomplete(self) -> list[tuple[str, str]]:
        """(field, message) for each field the rule's kind needs and lacks, then each it has
        no use for (a days on a threshold rule was stored and shown, and meant nothing):
        checked after the fields themselves, so that each refusal names its field."""
        needs = KIND_FIELDS[self.kind]
        problems = [
            (name, f"required for a {self.kind.value} rule")
            for name in needs
            if getattr(self, name) is None
        ]
        problems += [
            (name, f"not used by a {self.kind.value} rule: leave it out")
            for name in ("threshold", "window_minutes", "days")
            if name not in needs and getattr(self, name) is not None
        ]
        if not (self.webhook_url or self.ticket_url or self.block_release):
            problems.append(
                (
                    "webhook_url",
                    "a rule needs an action: a webhook URL, a ticket URL or a release block",
                )
            )
        return problems


class LiftIn(_In):
    model: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    version: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
    reason: Reason
