"""Catalog tables. Captured facts are written once; curated fields change through revisions."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlmodel import Field, SQLModel

from services.catalog.schemas import GroupStatus
from shared.db import JSONType, UTCDateTime


def _ts(nullable: bool = False, index: bool = False) -> Any:
    return Field(sa_column=Column(UTCDateTime(), nullable=nullable, index=index))


def _json(nullable: bool = True) -> Any:
    return Field(default=None, sa_column=Column(JSONType, nullable=nullable))


class Model(SQLModel, table=True):
    __tablename__ = "model"
    id: str = Field(primary_key=True, max_length=36)
    name: str = Field(max_length=200, unique=True)
    created_at: datetime = _ts()


class ModelVersion(SQLModel, table=True):
    __tablename__ = "model_version"
    __table_args__ = (UniqueConstraint("model_id", "version"),)
    id: str = Field(primary_key=True, max_length=36)
    model_id: str = Field(sa_column=Column(String(36), ForeignKey("model.id"), nullable=False))
    version: str = Field(max_length=100)
    created_at: datetime = _ts()
    artifact_uri: str | None = Field(default=None, max_length=2000)
    training_data_ref: str | None = Field(default=None, max_length=2000)
    feature_config_hash: str | None = Field(default=None, max_length=128)


class DataSource(SQLModel, table=True):
    __tablename__ = "data_source"
    id: str = Field(primary_key=True, max_length=36)
    name: str = Field(max_length=200, unique=True)
    created_at: datetime = _ts()


class TaxonomyVersion(SQLModel, table=True):
    __tablename__ = "taxonomy_version"
    version: int = Field(primary_key=True)
    published_at: datetime = _ts()
    published_by: str = Field(max_length=200)
    note: str | None = Field(default=None, max_length=2000)


class FailureMode(SQLModel, table=True):
    """A taxonomy code; `parent` is the top-level code for a sub-mode (`label_noise`)."""

    __tablename__ = "failure_mode"
    taxonomy_version: int = Field(
        sa_column=Column(Integer, ForeignKey("taxonomy_version.version"), primary_key=True)
    )
    code: str = Field(primary_key=True, max_length=120)
    parent: str | None = Field(default=None, max_length=120)
    title: str = Field(max_length=200)
    description: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))


class SeverityGrade(SQLModel, table=True):
    __tablename__ = "severity_grade"
    rubric_version: int = Field(primary_key=True)
    grade: str = Field(primary_key=True, max_length=2)
    rank: int
    title: str = Field(max_length=200)
    criteria: str = Field(sa_column=Column(Text, nullable=False))


class FailureGroup(SQLModel, table=True):
    __tablename__ = "failure_group"
    __table_args__ = (
        # groups(status: ..., first: n), the dashboard's regressed groups: newest first
        # within a status (migration 0022).
        Index("ix_failure_group_status_last_seen", "status", "last_seen", "id"),
    )
    id: str = Field(primary_key=True, max_length=36)
    fingerprint: str = Field(max_length=128, unique=True)
    model_id: str = Field(sa_column=Column(String(36), ForeignKey("model.id"), nullable=False))
    failure_mode: str | None = Field(default=None, max_length=120)
    first_seen: datetime = _ts()
    last_seen: datetime = _ts()
    case_count: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    sampled_out_count: int = Field(
        default=0, sa_column=Column(BigInteger, nullable=False, default=0)
    )
    status: str = Field(default=GroupStatus.OPEN.value, max_length=20)
    resolved_in_version: str | None = Field(default=None, max_length=100)
    resolved_at: datetime | None = _ts(nullable=True)
    regressed_at: datetime | None = _ts(nullable=True)
    regressed_in_version: str | None = Field(default=None, max_length=100)


class FailureCase(SQLModel, table=True):
    __tablename__ = "failure_case"
    __table_args__ = (
        UniqueConstraint("external_id", "source_key"),
        Index("ix_failure_case_occurred_id", "occurred_at", "id"),
        Index("ix_failure_case_model_version", "model_id", "model_version_id"),
        # The release gate's question, "which groups of this model hold S0/S1 cases?", reads
        # a model's severe cases only, not every case of the model (migration 0005).
        Index("ix_failure_case_model_severity", "model_id", "severity", "group_id"),
        # Only reservoir-admitted cases are ever looked up by it: keep the index that small.
        Index(
            "ix_failure_case_reservoir_key",
            "reservoir_key",
            postgresql_where=text("reservoir_key IS NOT NULL"),
            sqlite_where=text("reservoir_key IS NOT NULL"),
        ),
    )
    # Postgres only: containment (environment @> {"region": "eu-west-1"}) for the env filter.
    # SQLite filters env with json_extract and gets no index (a btree on JSON text is useless).
    __table_args__ = (
        *__table_args__,
        Index(
            "ix_failure_case_environment",
            "environment",
            postgresql_using="gin",
            postgresql_ops={"environment": "jsonb_path_ops"},
            info={"postgresql_only": True},  # migration 0003; see infra/migrations/env.py
        ).ddl_if(dialect="postgresql"),
        Index(
            "ix_failure_case_tags",
            "tags",
            postgresql_using="gin",
            postgresql_ops={"tags": "jsonb_path_ops"},
            info={"postgresql_only": True},
        ).ddl_if(dialect="postgresql"),
    )
    # Every index costs each ingested row; low-cardinality and numeric filters (severity,
    # status, sensitivity, confidence, latency) are served by the search index instead.
    id: str = Field(primary_key=True, max_length=36)
    # Captured facts: immutable after ingestion.
    model_id: str = Field(sa_column=Column(String(36), ForeignKey("model.id"), nullable=False))
    model_version_id: str = Field(
        sa_column=Column(String(36), ForeignKey("model_version.id"), nullable=False)
    )
    data_source_id: str = Field(
        sa_column=Column(String(36), ForeignKey("data_source.id"), nullable=False, index=True)
    )
    occurred_at: datetime = _ts()
    captured_at: datetime | None = _ts(nullable=True)
    received_at: datetime = _ts()
    environment: dict[str, str] | None = _json()
    input: Any = _json()
    prediction: Any = _json()
    expected: Any = _json()
    confidence: float | None = Field(default=None)
    latency_ms: float | None = Field(default=None)
    signals: dict[str, Any] | None = _json()
    provenance: dict[str, Any] | None = _json()
    # Idempotency: external_id is unique within its source (provenance.source or data_source).
    source_key: str = Field(max_length=200)
    external_id: str | None = Field(default=None, max_length=200)
    fingerprint: str = Field(max_length=128)
    content_hash: str = Field(max_length=64, unique=True)
    # Deferred: a batch stores its cases first and creates or counts their groups in one
    # statement at the end, so concurrent batches hold group locks only briefly.
    group_id: str = Field(
        sa_column=Column(
            String(36),
            ForeignKey("failure_group.id", deferrable=True, initially="DEFERRED"),
            nullable=False,
            index=True,
        )
    )
    # Curated fields: changed only by updates, each writing a revision.
    title: str | None = Field(default=None, max_length=500)
    summary: str | None = Field(default=None, sa_column=Column(Text))
    failure_mode: str | None = Field(default=None, max_length=120, index=True)
    failure_mode_parent: str | None = Field(default=None, max_length=120, index=True)
    taxonomy_version: int | None = None
    severity: str | None = Field(default=None, max_length=2)
    impact: str | None = Field(default=None, sa_column=Column(Text))
    status: str = Field(default="new", max_length=20)
    # Filtered with JSON containment: a GIN index on Postgres (migration 0003), json_each on
    # SQLite; no tag rows to write per ingested case.
    tags: list[str] | None = _json()
    sensitivity: str = Field(default="internal", max_length=20)
    team: str | None = Field(default=None, max_length=120, index=True)
    writeup: dict[str, Any] | None = _json()
    merged_into_id: str | None = Field(default=None, max_length=36)
    # Set when the case was admitted by a sampling reservoir: it may later be evicted while
    # nobody has curated it (revision 1).
    reservoir_key: str | None = Field(default=None, max_length=400)
    # The version of the capture policy of (model, data source) the case met at ingest; null
    # when none applied (services/catalog/CAPTURE.md).
    capture_policy_version: int | None = None
    revision: int = Field(default=1)
    updated_at: datetime = _ts()
    # Retention (services/governance/RETENTION.md): when the raw payload was purged (the
    # curated summary stays), and when the whole case was purged (a tombstone row stays, so
    # history, groups and annotations keep their references; it leaves the search index).
    payload_purged_at: datetime | None = _ts(nullable=True)
    purged_at: datetime | None = _ts(nullable=True)
    # Redaction at ingest (services/governance/redaction, migration 0010): what was found
    # (kinds and JSON paths, never values), the raw values a keep_restricted policy kept
    # (FailureCase.piiRestrictedValues, for restricted readers only), and the payload fields'
    # own sensitivity (shared/redaction.py; null: the case's own).
    pii_findings: list[dict[str, str]] | None = _json()
    pii_restricted: list[dict[str, str]] | None = _json()
    payload_sensitivity: str | None = Field(default=None, max_length=20)


class CaseLink(SQLModel, table=True):
    __tablename__ = "case_link"
    id: str = Field(primary_key=True, max_length=36)
    case_id: str = Field(
        sa_column=Column(String(36), ForeignKey("failure_case.id"), nullable=False, index=True)
    )
    kind: str = Field(max_length=40)
    url: str = Field(max_length=2000)
    title: str | None = Field(default=None, max_length=500)


class CaseRevision(SQLModel, table=True):
    """Immutable history: who changed what (old and new values), when and why.

    Revision 1 records the ingestion; reading a case as of a past time undoes the later
    revisions' changes, so no full snapshot is stored per revision."""

    __tablename__ = "case_revision"
    # (case, revision) is the key: one index to maintain per ingested case, not two.
    case_id: str = Field(
        sa_column=Column(String(36), ForeignKey("failure_case.id"), primary_key=True)
    )
    revision: int = Field(primary_key=True)
    actor: str = Field(max_length=200)
    # The actor as people know it (username, or the client's name), stored when written: a
    # client or user renamed or deleted later does not rewrite history.
    actor_name: str | None = Field(default=None, max_length=200)
    created_at: datetime = _ts()
    reason: str | None = Field(default=None, max_length=2000)
    changes: dict[str, Any] = _json(nullable=False)


class SamplingRule(SQLModel, table=True):
    """Keep every case at or above `keep_at_or_above`; cap the rest per (model, mode, day)."""

    __tablename__ = "sampling_rule"
    __table_args__ = (UniqueConstraint("model_name", "data_source"),)
    id: str = Field(primary_key=True, max_length=36)
    model_name: str = Field(max_length=200)
    data_source: str = Field(max_length=200)
    keep_at_or_above: str = Field(default="S1", max_length=2)
    daily_cap: int
    enabled: bool = True
    updated_at: datetime = _ts()
    updated_by: str = Field(max_length=200)


class SamplingCounter(SQLModel, table=True):
    """Events seen and kept per reservoir, keyed "model|failure mode|day"."""

    __tablename__ = "sampling_counter"
    reservoir_key: str = Field(primary_key=True, max_length=400)
    seen: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    kept: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))


class Outbox(SQLModel, table=True):
    """Written with every case change in the same transaction; drained by the indexer."""

    __tablename__ = "search_outbox"
    id: int | None = Field(
        default=None, sa_column=Column(Integer, primary_key=True, autoincrement=True)
    )
    case_id: str = Field(max_length=36)
    revision: int
    created_at: datetime = _ts()


class ContextEvent(SQLModel, table=True):
    """What changed around a model (a deploy, a feature change, a drift alert, an environment
    shift), at a time, in a scope. A null scope part matches every value: an event scoped to a
    model only precedes the cases of every version, source and environment of that model."""

    __tablename__ = "context_event"
    # Preceding-event lookups are by (model, time) range: one index serves the per-case and
    # the per-batch reads; unscoped events (model null) are few and read by time alone.
    __table_args__ = (Index("ix_context_event_model_at", "model", "occurred_at"),)
    id: str = Field(primary_key=True, max_length=36)
    kind: str = Field(max_length=40)
    occurred_at: datetime = _ts(index=True)
    recorded_at: datetime = _ts()
    recorded_by: str = Field(max_length=200)
    # Scope, by name (an event may precede the first case of a model version).
    model: str | None = Field(default=None, max_length=200)
    model_version: str | None = Field(default=None, max_length=100)
    data_source: str | None = Field(default=None, max_length=200)
    environment: dict[str, str] | None = _json()
    link: str | None = Field(default=None, max_length=2000)
    title: str | None = Field(default=None, max_length=500)
    details: dict[str, Any] = _json(nullable=False)
    # The producer's idempotency key: a retried post answers the event already stored.
    external_id: str | None = Field(default=None, max_length=200, unique=True)


class CapturePolicy(SQLModel, table=True):
    """One version of the capture policy of a (model name, data source): what qualifies as a
    candidate failure and what metadata it must carry. Versions are immutable rows; setting a
    policy adds the next version (services/catalog/capture_policies.py)."""

    __tablename__ = "capture_policy"
    __table_args__ = (UniqueConstraint("model", "data_source", "version"),)
    id: str = Field(primary_key=True, max_length=36)
    model: str = Field(max_length=200)
    data_source: str = Field(max_length=200)
    version: int
    name: str = Field(max_length=200)
    definition: dict[str, Any] = _json(nullable=False)
    created_at: datetime = _ts()
    created_by: str = Field(max_length=200)
