"""Sharing tables: comments on cases and groups, and lessons learned.

A comment refers to its case or group by id (the catalog owns them) and is seen exactly when
its target is; a lesson refers to its evidence groups by id and to the suites guarding it by
name and version (the safeguards own them). Every read of those goes through their services.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Column, Index, Text
from sqlmodel import Field, SQLModel

from shared.db import JSONType, UTCDateTime


def _ts(nullable: bool = False) -> Any:
    return Field(default=None, sa_column=Column(UTCDateTime(), nullable=nullable))


def _json(nullable: bool = True) -> Any:
    return Field(default=None, sa_column=Column(JSONType, nullable=nullable))


def _text(nullable: bool = False) -> Any:
    return Field(default=None, sa_column=Column(Text, nullable=nullable))


class Comment(SQLModel, table=True):
    """A comment, or a proposed corrective measure (kind `proposed_measure`) that a plans
    writer can accept into a retraining plan. Ids are time-ordered: pages follow them."""

    __tablename__ = "sharing_comment"
    __table_args__ = (Index("ix_sharing_comment_target", "target_kind", "target_id", "id"),)
    id: str = Field(primary_key=True, max_length=36)
    target_kind: str = Field(max_length=10)  # case | group
    target_id: str = Field(max_length=36)
    kind: str = Field(max_length=20)  # comment | proposed_measure
    body: str = _text()
    # {"people": [...], "teams": [...]}: parsed from the body when it is written
    mentions: dict[str, Any] = _json(nullable=False)
    author: str = Field(max_length=200)
    author_name: str | None = Field(default=None, max_length=200)
    created_at: datetime = _ts()
    # A proposed measure accepted into a plan: which one, by whom, when.
    accepted_plan_id: str | None = Field(default=None, max_length=36)
    accepted_by: str | None = Field(default=None, max_length=200)
    accepted_at: datetime | None = _ts(nullable=True)


class Lesson(SQLModel, table=True):
    """A named, reviewed pattern drawn from several failure groups, written for readers who
    are not specialists: draft -> reviewed (by a reviewer who is not its author)."""

    __tablename__ = "sharing_lesson"
    id: str = Field(primary_key=True, max_length=36)
    title: str = Field(max_length=300)
    what_happened: str = _text()
    why_it_matters: str = _text()
    mitigation: str = _text()
    cost: str = _text()  # the mitigation's cost against the alternatives
    evidence_group_ids: list[str] = _json(nullable=False)
    # [{"name": ..., "version": ...}]: the suites (at a version) that guard against it
    suites: list[dict[str, Any]] = _json(nullable=False)
    status: str = Field(default="draft", max_length=20)  # draft | reviewed
    revision: int = 1
    author: str = Field(max_length=200)
    author_name: str | None = Field(default=None, max_length=200)
    created_at: datetime = _ts()
    reviewed_by: str | None = Field(default=None, max_length=200)
    reviewed_at: datetime | None = _ts(nullable=True)
