"""Escalation tables: rules, what they matched and fired, deliveries and their attempts,
release blocks.

Cases and groups are referred to by id only, without foreign keys, as in safeguards: the
catalog owns their tables (and may purge a case under retention).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Column, ForeignKey, Index, String, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from shared.db import JSONType, UTCDateTime


def _ts(nullable: bool = False, index: bool = False) -> Any:
    return Field(default=None, sa_column=Column(UTCDateTime(), nullable=nullable, index=index))


def _json(nullable: bool = True) -> Any:
    return Field(default=None, sa_column=Column(JSONType, nullable=nullable))


class EscalationRule(SQLModel, table=True):
    """A condition over indexed cases and what to do when it holds.

    `team` and `clearance` are its creator's: the rule sees (matches, and sends) only the
    cases its creator may see, and only callers who may see them see the rule."""

    __tablename__ = "escalation_rule"
    id: str = Field(primary_key=True, max_length=36)
    name: str = Field(max_length=200, unique=True)
    kind: str = Field(max_length=40)  # threshold | group_regressed | left_confirmed
    query: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    threshold: int = 1
    window_minutes: int | None = None
    days: int | None = None
    webhook_url: str | None = Field(default=None, max_length=2000)
    ticket_url: str | None = Field(default=None, max_length=2000)
    block_release: bool = False
    # The HMAC key of its deliveries. Kept readable, as every webhook sender must: the
    # signature is computed per attempt. Shown once, when the rule is created.
    secret: str = Field(max_length=200)
    team: str | None = Field(default=None, max_length=120)
    clearance: str = Field(max_length=20)
    enabled: bool = True
    created_at: datetime = _ts()
    created_by: str = Field(max_length=200)


class EscalationMatch(SQLModel, table=True):
    """A case a threshold rule matched, counted once per rule whatever its revisions; a
    firing consumes the matches it counted (`firing_id`)."""

    __tablename__ = "escalation_match"
    __table_args__ = (Index("ix_escalation_match_window", "rule_id", "firing_id", "occurred_at"),)
    rule_id: str = Field(
        sa_column=Column(String(36), ForeignKey("escalation_rule.id"), primary_key=True)
    )
    case_id: str = Field(primary_key=True, max_length=36)
    occurred_at: datetime = _ts()
    firing_id: str | None = Field(default=None, max_length=36)


class EscalationFiring(SQLModel, table=True):
    """One time a rule's condition held; `key` makes a condition fire once (a group's
    regression in a version, a case left in confirmed since a revision)."""

    __tablename__ = "escalation_firing"
    __table_args__ = (UniqueConstraint("rule_id", "key"),)
    id: str = Field(primary_key=True, max_length=36)
    rule_id: str = Field(
        sa_column=Column(String(36), ForeignKey("escalation_rule.id"), nullable=False)
    )
    key: str = Field(max_length=300)
    fired_at: datetime = _ts()
    case_ids: list[str] = _json(nullable=False)
    group_id: str | None = Field(default=None, max_length=36)
    # The webhook body, frozen at firing: every attempt sends the same bytes.
    payload: dict[str, Any] = _json(nullable=False)


class EscalationDelivery(SQLModel, table=True):
    """One webhook or ticket request of a firing: pending until delivered, or dead-lettered
    after the policy's attempts. The sender claims due rows by pushing `next_attempt_at`
    past its request timeout (a lease), so two senders never post the same attempt."""

    __tablename__ = "escalation_delivery"
    __table_args__ = (
        Index("ix_escalation_delivery_due", "status", "next_attempt_at"),
        Index("ix_escalation_delivery_rule", "rule_id", "created_at", "id"),
    )
    id: str = Field(primary_key=True, max_length=36)
    rule_id: str = Field(
        sa_column=Column(String(36), ForeignKey("escalation_rule.id"), nullable=False)
    )
    firing_id: str = Field(
        sa_column=Column(String(36), ForeignKey("escalation_firing.id"), nullable=False)
    )
    action: str = Field(max_length=20)  # webhook | ticket
    url: str = Field(max_length=2000)
    status: str = Field(default="pending", max_length=20)  # pending | delivered | dead_letter
    attempts: int = 0
    next_attempt_at: datetime | None = _ts(nullable=True)
    created_at: datetime = _ts()
    delivered_at: datetime | None = _ts(nullable=True)
    last_status_code: int | None = None
    last_error: str | None = Field(default=None, max_length=500)
    ticket_url: str | None = Field(default=None, max_length=2000)


class EscalationAttempt(SQLModel, table=True):
    """The delivery log: every request made, with its answer (status code or error)."""

    __tablename__ = "escalation_attempt"
    delivery_id: str = Field(
        sa_column=Column(String(36), ForeignKey("escalation_delivery.id"), primary_key=True)
    )
    attempt: int = Field(primary_key=True)
    at: datetime = _ts()
    status_code: int | None = None
    error: str | None = Field(default=None, max_length=500)
    duration_ms: float


class ReleaseBlock(SQLModel, table=True):
    """A model version the release gate refuses until a reviewer lifts the block."""

    __tablename__ = "release_block"
    __table_args__ = (Index("ix_release_block_version", "model", "version", "lifted_at"),)
    id: str = Field(primary_key=True, max_length=36)
    model: str = Field(max_length=200)
    version: str = Field(max_length=100)
    rule_id: str = Field(
        sa_column=Column(String(36), ForeignKey("escalation_rule.id"), nullable=False)
    )
    firing_id: str = Field(
        sa_column=Column(String(36), ForeignKey("escalation_firing.id"), nullable=False)
    )
    reason: str = Field(max_length=2000)
    case_ids: list[str] = _json(nullable=False)
    created_at: datetime = _ts()
    lifted_at: datetime | None = _ts(nullable=True)
    lifted_by: str | None = Field(default=None, max_length=200)
    lift_reason: str | None = Field(default=None, max_length=2000)
