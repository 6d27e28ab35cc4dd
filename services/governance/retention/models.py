"""Retention tables: policies and legal holds. The purge marks live on the catalog's cases."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Column
from sqlmodel import Field, SQLModel

from shared.db import UTCDateTime


def _ts(nullable: bool = False) -> Any:
    return Field(default=None, sa_column=Column(UTCDateTime(), nullable=nullable))


class RetentionPolicy(SQLModel, table=True):
    """How long the cases of one data source at one sensitivity keep their raw payload and
    themselves, counted from when failcat received them. A null TTL keeps forever."""

    __tablename__ = "retention_policy"
    # By name, like sampling rules: a policy may be set before the source's first case.
    data_source: str = Field(primary_key=True, max_length=200)
    sensitivity: str = Field(primary_key=True, max_length=20)
    payload_ttl_days: int | None = None
    case_ttl_days: int | None = None
    updated_at: datetime = _ts()
    updated_by: str = Field(max_length=200)


class LegalHold(SQLModel, table=True):
    """A hold on a case or a failure group (every case of it, later ones too): no purge
    touches what it covers while `active`. Lifting keeps the row (who, when, why); the audit
    trail keeps every change."""

    __tablename__ = "legal_hold"
    kind: str = Field(primary_key=True, max_length=10)  # "case" | "group"
    target_id: str = Field(primary_key=True, max_length=36)
    active: bool
    reason: str = Field(max_length=2000)
    held_by: str = Field(max_length=200)
    held_at: datetime = _ts()
    lifted_by: str | None = Field(default=None, max_length=200)
    lifted_at: datetime | None = _ts(nullable=True)
    lift_reason: str | None = Field(default=None, max_length=2000)
