"""The redaction policy table: one row per data source (by name, so a policy can be set
before the source's first case); a source without a row gets the default (`mask`)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column
from sqlmodel import Field, SQLModel

from shared.db import UTCDateTime


class RedactionPolicy(SQLModel, table=True):
    __tablename__ = "redaction_policy"
    data_source: str = Field(primary_key=True, max_length=200)
    mode: str = Field(max_length=20)
    # The raw payload fields' sensitivity for this source's cases (None: the case's own).
    payload_sensitivity: str | None = Field(default=None, max_length=20)
    # Bumped on every change: a case's findings name the policy version that redacted it.
    version: int = Field(default=1)
    updated_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    updated_by: str = Field(max_length=200)
