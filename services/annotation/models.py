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
