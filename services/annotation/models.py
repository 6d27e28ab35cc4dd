"""Annotation tables: taxonomies as data, one annotation per (case, annotator, taxonomy) with
its history, assignments, and the reviewers' decisions (the review trail)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Column, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from shared.db import JSONType, UTCDateTime


def _ts(nullable: bool = False) -> Any:
    return Field(sa_column=Column(UTCDateTime(), nullable=nullable))


def _json(nullable: bool = True) -> Any:
    return Field(default=None, sa_column=Column(JSONType, nullable=nullable))


def _case_fk(primary_key: bool = False) -> Any:
    # The case is the catalog's; the key keeps annotations from outliving a deleted case.
    return Field(
        sa_column=Column(
            String(36),
            ForeignKey("failure_case.id"),
            nullable=False,
            primary_key=primary_key,
            index=not primary_key,
        )
    )


class AnnotationTaxonomy(SQLModel, table=True):
    """A named, versioned list of fields (`fields`: see schemas.TaxonomyField)."""

    __tablename__ = "annotation_taxonomy"
    name: str = Field(primary_key=True, max_length=120)
    version: int = Field(primary_key=True)
    description: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    source: str = Field(default="failcat", max_length=200)
    fields: list[dict[str, Any]] = _json(nullable=False)
    created_at: datetime = _ts()
    created_by: str = Field(max_length=200)


class Annotation(SQLModel, table=True):
    __tablename__ = "annotation"
    __table_args__ = (
        UniqueConstraint("case_id", "annotator", "taxonomy"),
        Index("ix_annotation_taxonomy_status", "taxonomy", "status"),
    )
    id: str = Field(primary_key=True, max_length=36)
    case_id: str = _case_fk()
    annotator: str = Field(max_length=200, index=True)
    taxonomy: str = Field(max_length=120)
    taxonomy_version: int
    values: dict[str, Any] = _json(nullable=False)
    notes: str | None = Field(default=None, sa_column=Column(Text))
    confidence: float | None = Field(default=None, sa_column=Column(Float))
    status: str = Field(default="draft", max_length=20)  # draft | submitted
    revision: int = Field(default=1)
    created_at: datetime = _ts()
    updated_at: datetime = _ts()
    submitted_at: datetime | None = _ts(nullable=True)


class AnnotationChange(SQLModel, table=True):
    """Every state an annotation went through (immutable): its history."""

    __tablename__ = "annotation_change"
    annotation_id: str = Field(
        sa_column=Column(String(36), ForeignKey("annotation.id"), primary_key=True)
    )
    revision: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    actor: str = Field(max_length=200)
    action: str = Field(max_length=20)  # saved | submitted | sent_back | imported
    status: str = Field(max_length=20)
    values: dict[str, Any] = _json(nullable=False)
    notes: str | None = Field(default=None, sa_column=Column(Text))
    confidence: float | None = Field(default=None, sa_column=Column(Float))
    created_at: datetime = _ts()


class AnnotationAssignment(SQLModel, table=True):
    """A case given to an annotator; `overlap` is the k the case was assigned with."""

    __tablename__ = "annotation_assignment"
    case_id: str = _case_fk(primary_key=True)
    annotator: str = Field(primary_key=True, max_length=200, index=True)
    overlap: int
    assigned_by: str = Field(max_length=200)
    assigned_at: datetime = _ts()


class AnnotationReview(SQLModel, table=True):
    """A reviewer's decision on a case: adjudicated values (with the annotations and the case
    revision they became), or a send-back with its comment."""

    __tablename__ = "annotation_review"
    id: str = Field(primary_key=True, max_length=36)
    case_id: str = _case_fk()
    taxonomy: str | None = Field(default=None, max_length=120)
    taxonomy_version: int | None = None
    reviewer: str = Field(max_length=200)
    action: str = Field(max_length=20)  # adjudicated | sent_back
    values: dict[str, Any] | None = _json()
    comment: str | None = Field(default=None, sa_column=Column(Text))
    annotation_ids: list[str] = _json(nullable=False)
    case_revision: int | None = None
    created_at: datetime = _ts()


# --- review rituals: a team's board, its sessions and their agendas -------------------------
class ReviewBoard(SQLModel, table=True):
    """A team's review board: who takes turns owning its sessions, and how often it meets."""

    __tablename__ = "review_board"
    __table_args__ = (UniqueConstraint("team", "name"),)
    id: str = Field(primary_key=True, max_length=36)
    team: str = Field(max_length=200, index=True)
    name: str = Field(max_length=200)
    cadence: str = Field(max_length=20)  # weekly | monthly
    roster: list[str] = _json(nullable=False)
    created_by: str = Field(max_length=200)
    created_at: datetime = _ts()


class ReviewSession(SQLModel, table=True):
    """One meeting of a board: its owner (the roster's next in turn), minutes once closed."""

    __tablename__ = "review_session"
    __table_args__ = (UniqueConstraint("board_id", "number"),)
    id: str = Field(primary_key=True, max_length=36)
    board_id: str = Field(
        sa_column=Column(String(36), ForeignKey("review_board.id"), nullable=False, index=True)
    )
    number: int
    owner: str = Field(max_length=200)
    scheduled_for: datetime = _ts()
    status: str = Field(default="open", max_length=20)  # open | closed
    minutes: str | None = Field(default=None, sa_column=Column(Text))
    opened_by: str = Field(max_length=200)
    created_at: datetime = _ts()
    closed_by: str | None = Field(default=None, max_length=200)
    closed_at: datetime | None = _ts(nullable=True)


class ReviewAgendaItem(SQLModel, table=True):
    """A case or group on a session's agenda, why it is there, and what was decided. An item
    still open when the next session opens is carried to it (`carried_from`)."""

    __tablename__ = "review_agenda_item"
    id: str = Field(primary_key=True, max_length=36)
    session_id: str = Field(
        sa_column=Column(String(36), ForeignKey("review_session.id"), nullable=False, index=True)
    )
    position: int
    # new_severe | regressed_group | low_agreement | stale_remediation
    kind: str = Field(max_length=30)
    case_id: str | None = Field(default=None, max_length=36)
    group_id: str | None = Field(default=None, max_length=36)
    reason: str = Field(sa_column=Column(Text, nullable=False))
    status: str = Field(default="open", max_length=20)  # open | decided | carried
    decision: str | None = Field(default=None, sa_column=Column(Text))
    decided_by: str | None = Field(default=None, max_length=200)
    decided_at: datetime | None = _ts(nullable=True)
    carried_from: str | None = Field(default=None, max_length=36)
    created_at: datetime = _ts()
