"""The wire format of a captured case (DESIGN.md) and the other inputs and outputs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from services.catalog import limits as L
from shared.security import Sensitivity
from shared.vocabulary import CONTEXT_EVENT_KINDS, SEVERITIES

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=L.MAX_NAME)]
Text = Annotated[str, StringConstraints(max_length=L.MAX_TEXT)]
Tag = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=L.MAX_TAG)]

# A Literal over the one value set, so the wire format and errors show plain strings.
Severity = Literal[SEVERITIES]  # type: ignore[valid-type]


class Status(StrEnum):
    NEW = "new"
    TRIAGED = "triaged"
    CONFIRMED = "confirmed"
    IN_REMEDIATION = "in_remediation"
    RESOLVED = "resolved"
    WONT_FIX = "wont_fix"
    DUPLICATE = "duplicate"


class GroupStatus(StrEnum):
    """A failure group's state: `regressed` when a case arrives from a version newer than the
    one it was resolved in."""

    OPEN = "open"
    RESOLVED = "resolved"
    REGRESSED = "regressed"


class LinkKind(StrEnum):
    EXPERIMENT = "experiment"
    AB_TEST = "ab_test"
    TICKET = "ticket"
    COUNTERFACTUAL = "counterfactual"
    DATASET = "dataset"
    DASHBOARD = "dashboard"
    OTHER = "other"


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelRef(_In):
    name: Name
    version: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=L.MAX_VERSION)
    ]


class Link(_In):
    kind: LinkKind
    url: Annotated[
        str, StringConstraints(min_length=1, max_length=L.MAX_URL, pattern=r"^https?://\S+$")
    ]
    title: Annotated[str, StringConstraints(max_length=L.MAX_TITLE)] | None = None


class Writeup(_In):
    hypothesis: Text | None = None
    experiments: Text | None = None
    results: Text | None = None
    rationale: Text | None = None


class Provenance(_In):
    source: Name | None = None
    pipeline_version: Name | None = None
    captured_by: Name | None = None
    batch_id: Name | None = None


# The first and last instants a datetime holds stand for -infinity and infinity to the
# Postgres driver (it stores and returns them as such, without a zone): a time must lie
# strictly between them to be stored as given on both backends.
_FIRST = datetime.min.replace(tzinfo=UTC)
_LAST = datetime.max.replace(tzinfo=UTC)


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        value = value.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00:00+05:00 is in year 0 in UTC
        value = _FIRST if value.year == 1 else _LAST
    if not _FIRST < value < _LAST:
        raise ValueError("must be after 0001-01-01T00:00:00Z and before 9999-12-31T23:59:59Z")
    return value


class CaseIn(_In):
    """One captured case. `model` and `data_source` are required; the rest is optional."""

    external_id: Name | None = None
    title: Annotated[str, StringConstraints(max_length=L.MAX_TITLE)] | None = None
    summary: Text | None = None
    model: ModelRef
    data_source: Name
    occurred_at: datetime | None = None
    captured_at: datetime | None = None
    environment: (
        dict[
            Annotated[str, StringConstraints(min_length=1, max_length=L.MAX_TAG)],
            Annotated[str, StringConstraints(max_length=L.MAX_ENV_VALUE)],
        ]
        | None
    ) = Field(default=None, max_length=L.MAX_ENV_KEYS)
    input: Any = None
    prediction: Any = None
    expected: Any = None
    confidence: float | None = Field(default=None, ge=0.0, le=1.0, allow_inf_nan=False)
    latency_ms: float | None = Field(default=None, ge=0.0, allow_inf_nan=False)
    failure_mode: Annotated[str, StringConstraints(max_length=120)] | None = None
    severity: Severity | None = None
    impact: Text | None = None
    signals: dict[str, Any] | None = None
    tags: list[Tag] = Field(default_factory=list, max_length=L.MAX_TAGS)
    sensitivity: Sensitivity = Sensitivity.INTERNAL
    # The raw payload fields' own level (shared/redaction.py): readers cleared for the case
    # but not for this get them null.
    payload_sensitivity: Sensitivity | None = None
    team: Name | None = None
    links: list[Link] = Field(default_factory=list, max_length=L.MAX_LINKS)
    writeup: Writeup | None = None
    provenance: Provenance | None = None
    fingerprint: Annotated[str, StringConstraints(min_length=1, max_length=128)] | None = None

    _aware_times = field_validator("occurred_at", "captured_at")(_aware)

    @model_validator(mode="before")
    @classmethod
    def _ignore_meta(cls, data: Any) -> Any:
        # Exports carry read-only facts (id, revision, status ...) under "_meta": an export
        # re-imports as it is, and those facts are the target's own to assign.
        if isinstance(data, dict) and "_meta" in data:
            return {k: v for k, v in data.items() if k != "_meta"}
        return data

    @field_validator("tags")
    @classmethod
    def _unique_tags(cls, tags: list[str]) -> list[str]:
        return list(dict.fromkeys(tags))


class CasePatch(_In):
    """Curated fields only: captured facts are not in this type, so they cannot be patched."""

    title: Annotated[str, StringConstraints(max_length=L.MAX_TITLE)] | None = None
    summary: Text | None = None
    failure_mode: Annotated[str, StringConstraints(max_length=120)] | None = None
    severity: Severity | None = None
    impact: Text | None = None
    status: Status | None = None
    tags: list[Tag] | None = Field(default=None, max_length=L.MAX_TAGS)
    sensitivity: Sensitivity | None = None
    team: Name | None = None
    links: list[Link] | None = Field(default=None, max_length=L.MAX_LINKS)
    writeup: Writeup | None = None

    @field_validator("status", "sensitivity", "tags")
    @classmethod
    def _not_cleared(cls, value: Any, info: ValidationInfo) -> Any:
        # Omitted means unchanged; null would clear a field every case has.
        if value is None:
            hint = "; [] removes every tag" if info.field_name == "tags" else ""
            raise ValueError(f"cannot be null (omit it to leave it unchanged{hint})")
        return value


class ModelVersionIn(_In):
    """A model version registered ahead of its first case (or described after it)."""

    model: Name
    version: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=L.MAX_VERSION)
    ]
    artifact_uri: Annotated[str, StringConstraints(min_length=1, max_length=L.MAX_URL)] | None = (
        None
    )
    training_data_ref: (
        Annotated[str, StringConstraints(min_length=1, max_length=L.MAX_URL)] | None
    ) = None
    feature_config_hash: Annotated[str, StringConstraints(min_length=1, max_length=128)] | None = (
        None
    )


class CaseFilter(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str | None = None
    model_version: str | None = None
    data_source: str | None = None
    failure_mode: str | None = None  # a top-level code matches its sub-modes too
    severity_min: Severity | None = None  # worst grade included (S0 is worst)
    severity_max: Severity | None = None
    status: list[Status] | None = None
    team: str | None = None
    tags: list[str] | None = None  # every tag must be present
    sensitivity: list[Sensitivity] | None = None
    occurred_after: datetime | None = None
    occurred_before: datetime | None = None
    environment: dict[str, str] | None = None
    group_id: str | None = None

    _aware_times = field_validator("occurred_after", "occurred_before")(_aware)


IngestStatus = Literal["created", "duplicate", "conflict", "invalid", "sampled_out"]
# Every status an ingested item can get, in the order answers count them.
INGEST_STATUSES: tuple[str, ...] = IngestStatus.__args__


class ItemResult(BaseModel):
    index: int
    # An NDJSON body's items only: the item's line in the body (1-based, blank lines counted).
    line: int | None = None
    status: IngestStatus
    id: str | None = None
    errors: list[dict[str, str]] | None = None


# --- context events ----------------------------------------------------------------------
ContextEventKind = Literal[CONTEXT_EVENT_KINDS]  # type: ignore[valid-type]
# How far into the future an event's time may be: producers' clocks drift a little.
EVENT_CLOCK_SKEW = timedelta(minutes=5)
Hash = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)]
Definition = Annotated[str, StringConstraints(max_length=L.MAX_TEXT)]


class EventScope(_In):
    """Where an event applies; an absent part applies to every value of it."""

    model: Name | None = None
    version: (
        Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
        | None
    ) = None
    data_source: Name | None = None
    environment: (
        dict[
            Annotated[str, StringConstraints(min_length=1, max_length=L.MAX_TAG)],
            Annotated[str, StringConstraints(max_length=L.MAX_ENV_VALUE)],
        ]
        | None
    ) = Field(default=None, max_length=L.MAX_ENV_KEYS)


class DeployDetails(_In):
    """A model version rolled out (the version is the scope's; where is the rest of it)."""

    rollout: Annotated[str, StringConstraints(max_length=200)] | None = None  # "canary 10%"
    previous_version: Annotated[str, StringConstraints(max_length=100)] | None = None


class FeatureChangeDetails(_In):
    feature: Name
    old_definition: Definition | None = None
    new_definition: Definition | None = None
    old_hash: Hash | None = None
    new_hash: Hash | None = None


class DriftAlertDetails(_In):
    metric: Name  # "psi", "kl_divergence", "ks_statistic" ...
    value: float = Field(allow_inf_nan=False)
    threshold: float = Field(allow_inf_nan=False)
    feature: Name | None = None
    window: Annotated[str, StringConstraints(max_length=100)] | None = None  # "1h", "7d"


class EnvironmentShiftDetails(_In):
    key: Annotated[str, StringConstraints(min_length=1, max_length=L.MAX_TAG)]
    old: Annotated[str, StringConstraints(max_length=L.MAX_ENV_VALUE)] | None = None
    new: Annotated[str, StringConstraints(max_length=L.MAX_ENV_VALUE)]

    @field_validator("key")
    @classmethod
    def _named(cls, key: str) -> str:
        # Not stripped: it is matched as given against the cases' environment keys.
        if not key.strip():
            raise ValueError("must name an environment key, not only spaces")
        return key


EVENT_DETAILS: dict[str, type[_In]] = {
    "deploy": DeployDetails,
    "feature_change": FeatureChangeDetails,
    "drift_alert": DriftAlertDetails,
    "environment_shift": EnvironmentShiftDetails,
}


class ContextEventIn(_In):
    """One context event as posted (REST, GraphQL, failcat-client's record_event)."""

    kind: ContextEventKind
    occurred_at: datetime | None = None  # defaults to the time received
    scope: EventScope = Field(default_factory=EventScope)
    link: (
        Annotated[
            str, StringConstraints(min_length=1, max_length=L.MAX_URL, pattern=r"^https?://\S+$")
        ]
        | None
    ) = None
    title: Annotated[str, StringConstraints(max_length=L.MAX_TITLE)] | None = None
    details: dict[str, Any] = Field(default_factory=dict)
    external_id: Name | None = None

    _aware_times = field_validator("occurred_at")(_aware)
