"""Sharing tables: comments on cases and groups, and lessons learned.

A comment refers to its case or group by id (the catalog owns them) and is seen exactly when
its target is; a lesson refers to its evidence groups by id and to the suites guarding it by
name and version (the safeguards own them). Every read of those goes through their services.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Column, Index, Text, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from services.catalog.models import FailureCase
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


class Bundle(SQLModel, table=True):
    """A signed bundle this instance wrote (`export`: downloadable by its id) or stored
    (`import`: the origin kept as provenance)."""

    __tablename__ = "sharing_bundle"
    __table_args__ = (UniqueConstraint("bundle_id", "direction"),)
    id: str = Field(primary_key=True, max_length=36)
    bundle_id: str = Field(max_length=36)  # the manifest's id, the same on both sides
    direction: str = Field(max_length=10)  # export | import
    issuer: str = Field(max_length=500)
    kid: str = Field(max_length=200)
    profile: str = Field(max_length=20)
    query: str = _text()
    manifest: dict[str, Any] = _json(nullable=False)
    manifest_sha256: str = Field(max_length=64)
    path: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    # Who may download an export: a reader who would see every case in it.
    teams: list[str] = _json(nullable=False)
    max_sensitivity: str = Field(max_length=20)
    created_by: str = Field(max_length=200)
    created_at: datetime = _ts()


# The public profile's export reads only public cases, oldest first, by keyset (pages.py
# `live_pages`): without this index it walks every case's (occurred_at, id) entry and reads
# each row to find the few public ones (5% of the benchmark's cases). Partial, so no other
# read of the case table is offered it (migration 0023); declared here, on the catalog's
# table, because the export is its one reader.
Index(
    "ix_failure_case_public_occurred",
    FailureCase.__table__.c.occurred_at,
    FailureCase.__table__.c.id,
    postgresql_where=text("sensitivity = 'public'"),
    sqlite_where=text("sensitivity = 'public'"),
)
