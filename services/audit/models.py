"""The audit tables: `audit_log` (the chain) and `audit_head` (its one-row head and lock)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Column, String
from sqlmodel import Field, SQLModel

from shared.db import JSONType, UTCDateTime


class AuditEntry(SQLModel, table=True):
    """One audited event. `seq` is gap-free; `hash` = sha256(previous hash + canonical entry)."""

    __tablename__ = "audit_log"
    seq: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False, index=True))
    actor_subject: str | None = Field(default=None, max_length=200, index=True)
    actor_client: str | None = Field(default=None, max_length=200)
    actor_team: str | None = Field(default=None, max_length=200)
    action: str = Field(max_length=80, index=True)
    target: str | None = Field(default=None, max_length=500, index=True)
    outcome: str = Field(max_length=40)
    correlation_id: str | None = Field(default=None, max_length=100)
    details: Any = Field(default=None, sa_column=Column(JSONType, nullable=True))
    hash: str = Field(sa_column=Column(String(64), nullable=False))


class AuditHead(SQLModel, table=True):
    """The chain's head, one row (id 1): appending locks it, so `seq` stays gap-free and the
    chain linear under concurrent writers on both databases."""

    __tablename__ = "audit_head"
    id: int = Field(primary_key=True)
    seq: int = Field(sa_column=Column(BigInteger, nullable=False))
    hash: str = Field(sa_column=Column(String(64), nullable=False))
