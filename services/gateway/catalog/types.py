"""GraphQL types of the catalog. Leaf fields are plain attributes of the row (no resolver);
relations go through the request's DataLoaders."""

from __future__ import annotations

import inspect
from datetime import datetime, timedelta
from enum import Enum
from types import SimpleNamespace
from typing import TYPE_CHECKING, Annotated, Any

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from services.catalog import schemas
from services.catalog.models import CaseRevision as RevisionRow
from services.catalog.models import ContextEvent as EventRow
from services.catalog.models import FailureCase as CaseRow
from services.catalog.models import FailureGroup as GroupRow
from services.catalog.models import Model as ModelRow
from services.catalog.templates import WRITEUP_FIELDS, Template
from services.catalog.views import PastCase
from services.gateway.annotation import types as annotation_types
from services.gateway.annotation.loaders import loaders as annotation_loaders
from services.gateway.errors import camel_path
from services.gateway.governance import redaction as redaction_types
from services.gateway.governance import retention as retention_types
from services.gateway.permissions import read_with
from services.search.service import MAX_SIMILAR
from shared import redaction, security, vocabulary
from shared.audit import audit
from shared.security import Scope
from shared.visibility import Visibility

if TYPE_CHECKING:
    from services.gateway.safeguards.types import Suite


# The catalog's own enums, exposed as they are: one definition of each value set.
Status = strawberry.enum(schemas.Status, name="Status")
Sensitivity = strawberry.enum(security.Sensitivity, name="Sensitivity")
LinkKind = strawberry.enum(schemas.LinkKind, name="LinkKind")


Severity = strawberry.enum(vocabulary.Severity, name="Severity")


GroupStatus = strawberry.enum(schemas.GroupStatus, name="GroupStatus")


ContextEventKind = strawberry.enum(
    Enum("ContextEventKind", {k.upper(): k for k in vocabulary.CONTEXT_EVENT_KINDS}),
    name="ContextEventKind",
    description="deploy: a model version rolled out; feature_change: a feature's definition "
    "or config hash changed; drift_alert: a drift metric crossed its threshold; "
    "environment_shift: an environment key changed value.",
)

# How far back a case's or group's preceding events are looked for, unless asked otherwise.
DEFAULT_WINDOW_HOURS = 7 * 24


def window_of(hours: int) -> timedelta:
    from services.catalog.context_events import MAX_WINDOW
    from shared.errors import BadUserInput, FieldError

    window = timedelta(hours=hours)
    if not timedelta(hours=1) <= window <= MAX_WINDOW:
        raise BadUserInput(
            f"windowHours {hours} is out of range",
            [FieldError("windowHours", f"from 1 to {int(MAX_WINDOW.total_seconds()) // 3600}")],
        )
    return window


@read_with()  # an event carries no team-sensitive data; its readers hold what reaches it
@strawberry.type(description="Where an event applies: a null part applies to every value.")
class ContextScope:
    model: str | None
    version: str | None
    data_source: str | None
    environment: JSON | None


@read_with()
@strawberry.type(
    description="A deploy, feature change, drift alert or environment shift: when, where "
    "(scope), a link, and the kind's details (see ContextEventInput)."
)
class ContextEvent:
    id: strawberry.ID
    kind: ContextEventKind
    occurred_at: datetime
    recorded_at: datetime
    recorded_by: str
    link: str | None
    title: str | None
    external_id: str | None

    @strawberry.field
    def details(self: EventRow) -> JSON:  # type: ignore[misc]
        # Stored as the wire format (snake_case); GraphQL spells them as its inputs do.
        return {camel_path(k): v for k, v in self.details.items()}

    @strawberry.field
    def scope(self: EventRow) -> ContextScope:  # type: ignore[misc]
        return ContextScope(
            model=self.model,
            version=self.model_version,
            data_source=self.data_source,
            environment=self.environment,
        )


@read_with(Scope.CASES_READ)
@strawberry.type(
    description="The event closest before a group's first case whose scope matches that "
    "case, how many of the group's cases (that you may see) came at or after it, and how "
    "many of those within the window after it."
)
class StartedAfter:
    event: ContextEvent
    cases_after: int
    cases_within_window: int


@read_with(Scope.CASES_READ)
@strawberry.type
class ContextEventEdge:
    cursor: str
    node: ContextEvent


@read_with(Scope.CASES_READ)
@strawberry.type
class ContextEventConnection:
    edges: list[ContextEventEdge]
    nodes: list[ContextEvent]
    page_info: PageInfo


@read_with(Scope.CASES_READ)
@strawberry.type
class Model:
    id: strawberry.ID
    name: str
    created_at: datetime

    @strawberry.field
    async def versions(self: ModelRow, info: Info) -> list[ModelVersion]:  # type: ignore[misc]
        return await info.context.loaders.versions_of_model.load(self.id)


@read_with(Scope.CASES_READ)
@strawberry.type
class ModelVersion:
    id: strawberry.ID
    version: str
    created_at: datetime
    artifact_uri: str | None
    training_data_ref: str | None
    feature_config_hash: str | None


@read_with(Scope.CASES_READ)
@strawberry.type
class DataSource:
    id: strawberry.ID
    name: str


@read_with(Scope.CASES_READ)
@strawberry.type
class FailureGroup:
    id: strawberry.ID
    fingerprint: str
    failure_mode: str | None
    first_seen: datetime
    last_seen: datetime
    sampled_out_count: int
    status: GroupStatus
    resolved_in_version: str | None
    resolved_at: datetime | None
    regressed_at: datetime | None
    regressed_in_version: str | None
    legal_hold = retention_types.group_legal_hold

    @strawberry.field(description="How many of the group's cases the caller may see.")
    def case_count(self: GroupRow, info: Info) -> int:  # type: ignore[misc]
        # A caller who sees every case reads the stored count; anyone else, that count less
        # the cases hidden from them (one query for all the groups of a request).
        if Visibility.of(info.context.principal).sees_everything:
            return self.case_count
        return _less_hidden(self, info)  # type: ignore[return-value]  # graphql-core awaits it

    @strawberry.field
    async def model(self: GroupRow, info: Info) -> Model:  # type: ignore[misc]
        return await info.context.loaders.model.load(self.model_id)

    @strawberry.field(description="Cases of this group the caller may see, newest first.")
    async def cases(  # type: ignore[misc]
        self: GroupRow, info: Info, first: int = 50, after: str | None = None
    ) -> CaseConnection:
        from services.gateway.catalog.queries import case_page

        # Not prefetched: one group's page among many; the loaders batch across all of them.
        return await case_page(info, {"group_id": self.id}, first, after, prefetch=False)

    @strawberry.field(
        description="The context event the group started after: the one closest before its "
        "first case, in that case's scope, within `windowHours` (default 168, 7 days); null "
        "when none."
    )
    async def started_after(  # type: ignore[misc]
        self: GroupRow, info: Info, window_hours: int = DEFAULT_WINDOW_HOURS
    ) -> StartedAfter | None:
        window_of(window_hours)
        return await info.context.loaders.started_after.load((self.id, window_hours))


async def _less_hidden(group: GroupRow, info: Info) -> int:
    return group.case_count - await info.context.loaders.hidden_cases.load(group.id)


@read_with(Scope.CASES_READ)
@strawberry.type
class Link:
    kind: LinkKind
    url: str
    title: str | None


@read_with(Scope.CASES_READ)
@strawberry.type
class Writeup:
    hypothesis: str | None = None
    experiments: str | None = None
    results: str | None = None
    rationale: str | None = None


@read_with(Scope.CASES_READ)
@strawberry.type
class Provenance:
    source: str | None = None
    pipeline_version: str | None = None
    captured_by: str | None = None
    batch_id: str | None = None


def _json_object_reader(type_: Any) -> type[SimpleNamespace]:
    """For a GraphQL type read from a JSON object column (writeup, provenance; the catalog
    stores only the keys its schema declares): a namespace whose instances take the object's
    keys as attributes, a missing one reading as null from the class. Made in C from the dict,
    where instantiating the strawberry type would run Python code for every field."""
    names = [f.python_name for f in type_.__strawberry_definition__.fields]
    return type(f"{type_.__name__}Fields", (SimpleNamespace,), dict.fromkeys(names))


_WriteupFields = _json_object_reader(Writeup)
_ProvenanceFields = _json_object_reader(Provenance)


# Curated fields whose stored values (the wire format's spelling) are enums in GraphQL.
_ENUM_OF_FIELD: dict[str, type[Enum]] = {
    "status": schemas.Status,
    "sensitivity": security.Sensitivity,
}


def _graphql_spelling(name: str, value: Any) -> Any:
    if value is None:
        return None
    if name in _ENUM_OF_FIELD:
        return _ENUM_OF_FIELD[name](value).name
    if name == "links":
        return [{**lk, "kind": schemas.LinkKind(lk["kind"]).name} for lk in value]
    return value


@read_with(Scope.CASES_READ)
@strawberry.type
class CaseRevision:
    revision: int
    actor: str = strawberry.field(description="The subject that wrote it (user or client id).")
    actor_name: str | None = strawberry.field(
        description="The actor's username, or its client's name, when the revision was "
        "written (null if unknown then)."
    )
    created_at: datetime
    reason: str | None

    @strawberry.field(
        description="What changed, as {field: {old, new}}; enum values are spelled as this "
        "API's enums (TRIAGED, TICKET), like everywhere else in GraphQL."
    )
    def changes(self: RevisionRow) -> JSON:  # type: ignore[misc]
        return {
            name: {side: _graphql_spelling(name, value) for side, value in change.items()}
            for name, change in self.changes.items()
        }


class BlindedRevision:
    """A revision as a reader the blind-read rule keeps from the case's decided labels reads
    it: its changes without the curated fields adjudication decides (their old and new values
    would tell what `severity`, `failureMode` and `impact` answer null for). A view: the row
    itself is never changed."""

    __slots__ = ("row",)

    def __init__(self, row: RevisionRow) -> None:
        self.row = row

    def __getattr__(self, name: str) -> Any:
        return getattr(self.row, name)

    @property
    def changes(self) -> dict[str, Any]:
        return redaction.without_blinded(self.row.changes)


async def _loaded(found: Any) -> Any:
    return await found if inspect.isawaitable(found) else found


async def _for_reader(info: Info, case_id: str, revisions: list[Any]) -> list[Any]:
    if revisions and await annotation_loaders(info.context).curated_hidden.load(case_id):
        return [BlindedRevision(r) for r in revisions]
    return revisions


@read_with(Scope.CASES_READ)
@strawberry.type
class FailureMode:
    code: str
    parent: str | None
    title: str
    description: str
    taxonomy_version: int


@read_with(Scope.CASES_READ)
@strawberry.type
class SeverityGrade:
    grade: Severity
    rank: int
    title: str
    criteria: str


@read_with(Scope.CASES_READ)
@strawberry.type
class WriteupPrompt:
    field: str  # the writeup field (hypothesis, experiments, results, rationale)
    question: str


@read_with(Scope.CASES_READ)
@strawberry.type
class WriteupMarkdown:
    summary: str
    hypothesis: str
    experiments: str
    results: str
    rationale: str


@read_with(Scope.CASES_READ)
@strawberry.type
class WriteupTemplate:
    """The sections a write-up of a failure-mode family has (services/catalog/templates.py)."""

    family: str
    title: str
    summary_outline: list[str]
    prompts: list[WriteupPrompt]
    evidence: list[str]
    markdown: WriteupMarkdown

    @classmethod
    def of(cls, t: Template) -> WriteupTemplate:
        return cls(
            family=t.family,
            title=t.title,
            summary_outline=list(t.summary_outline),
            prompts=[WriteupPrompt(field=f, question=t.prompts[f]) for f in WRITEUP_FIELDS],
            evidence=list(t.evidence),
            markdown=WriteupMarkdown(**t.as_markdown()),
        )


class PastCaseRow:
    """What `case(id, asOf)` resolves FailureCase from: the detached row of then for every
    field, and the links of then (they are not columns of the row)."""

    __slots__ = ("past",)

    def __init__(self, past: PastCase) -> None:
        self.past = past

    def __getattr__(self, name: str) -> Any:
        return getattr(self.past.case, name)


@read_with(Scope.CASES_READ)
@strawberry.type
class FailureCase:
    id: strawberry.ID
    revision: int
    external_id: str | None
    title: str | None
    summary: str | None
    occurred_at: datetime
    captured_at: datetime | None
    received_at: datetime
    updated_at: datetime
    confidence: float | None
    latency_ms: float | None
    failure_mode: str | None = annotation_types.curated_field("failure_mode", "Failure mode.")
    taxonomy_version: int | None
    severity: Severity | None = annotation_types.curated_field("severity", "S0 worst .. S4.")
    impact: str | None = annotation_types.curated_field("impact", "Impact.")
    status: Status
    tags: list[str]
    sensitivity: Sensitivity
    payload_sensitivity: Sensitivity | None  # the raw payload's own level (shared/redaction.py)
    team: str | None
    fingerprint: str
    content_hash: str
    merged_into_id: strawberry.ID | None
    payload_purged_at: datetime | None = strawberry.field(
        description="When retention purged the raw payload (input, prediction, expected, "
        "signals, environment: now null); the summary stays."
    )
    purged_at: datetime | None = strawberry.field(
        description="When retention purged the whole case. case(id), the lists and search "
        "no longer return it; a record that points at it (a suite, plan evidence) shows it as "
        "a tombstone with its ids, model and grading, and its history keeps the purge."
    )
    legal_hold = retention_types.case_legal_hold
    # The raw payload and what ingest redacted (services/gateway/governance/redaction.py):
    # null above the reader's clearance, by the one rule of shared/redaction.py.
    environment = redaction_types.case_environment
    input = redaction_types.case_input
    prediction = redaction_types.case_prediction
    expected = redaction_types.case_expected
    signals = redaction_types.case_signals
    redacted_fields = redaction_types.case_redacted_fields
    pii_findings = redaction_types.case_pii_findings
    pii_restricted_values = redaction_types.case_pii_restricted_values
    capture_policy_version: int | None = strawberry.field(
        description="The version of its (model, data source)'s capture policy the case met "
        "at ingest; null when none applied."
    )

    # Relations read the request's loaders: synchronously when the page prefetched them (see
    # loaders.prefetch_case_relations), else through a batched load.
    @strawberry.field
    def provenance(self: CaseRow) -> Provenance | None:  # type: ignore[misc]
        return _ProvenanceFields(**self.provenance) if self.provenance else None

    @strawberry.field
    def writeup(self: CaseRow) -> Writeup | None:  # type: ignore[misc]
        return _WriteupFields(**self.writeup) if self.writeup else None

    @strawberry.field
    def model(self: CaseRow, info: Info) -> Model:  # type: ignore[misc]
        return info.context.loaders.model.get(self.model_id)

    @strawberry.field
    def model_version(self: CaseRow, info: Info) -> ModelVersion:  # type: ignore[misc]
        return info.context.loaders.model_version.get(self.model_version_id)

    @strawberry.field
    def data_source(self: CaseRow, info: Info) -> DataSource:  # type: ignore[misc]
        return info.context.loaders.data_source.get(self.data_source_id)

    @strawberry.field
    def group(self: CaseRow, info: Info) -> FailureGroup:  # type: ignore[misc]
        return info.context.loaders.group.get(self.group_id)

    @strawberry.field
    def links(self: CaseRow, info: Info) -> list[Link]:  # type: ignore[misc]
        if isinstance(self, PastCaseRow):
            return [
                Link(kind=LinkKind(lk["kind"]), url=lk["url"], title=lk.get("title"))
                for lk in self.past.links
            ]
        return info.context.loaders.links.get(self.id)

    @strawberry.field
    async def revisions(self: CaseRow, info: Info) -> list[CaseRevision]:  # type: ignore[misc]
        found = await _loaded(info.context.loaders.revisions.get(self.id))
        return await _for_reader(info, self.id, found)

    @strawberry.field(description="Cases the search engine finds most like this one.")
    async def similar(  # type: ignore[misc]
        self: CaseRow, info: Info, first: int = 10
    ) -> list[FailureCase]:
        from services.gateway.pagination import check_page_size

        check_page_size(first, MAX_SIMILAR)  # before the cost estimate counts it
        hits = await info.context.search.similar(info.context.principal, self.id, first)
        cases = await info.context.loaders.case.load_many([h.id for h in hits])
        # The catalog applies visibility again: a hit the caller may not see is dropped.
        found = [c for c in cases if c is not None]
        # A read of those cases' details: one entry per answer, stored when the request
        # commits, before the response is sent (ids only).
        audit(
            await info.context.session(),
            info.context.principal,
            "cases.similar",
            f"case:{self.id}",
            details={"ids": [c.id for c in found]},
            read=True,
        )
        return found

    @strawberry.field
    async def last_revision(  # type: ignore[misc]
        self: CaseRow, info: Info
    ) -> CaseRevision | None:
        found = await _loaded(info.context.loaders.last_revision.get(self.id))
        return None if found is None else (await _for_reader(info, self.id, [found]))[0]

    # The annotation service's fields, resolved (and blind-read checked) in its own module.
    annotations = annotation_types.case_annotations
    review_trail = annotation_types.case_review_trail

    @strawberry.field(description="The regression suite versions this case is frozen into.")
    async def suites(  # type: ignore[misc]
        self: CaseRow, info: Info
    ) -> list[Annotated[Suite, strawberry.lazy("services.gateway.safeguards.types")]]:
        from services.gateway.safeguards.loaders import loaders

        return await loaders(info).case_suites.load(self.id)

    @strawberry.field(
        description="Context events that preceded this case in its scope (model, version, "
        "data source, environment) within `windowHours` (default 168, 7 days), newest first."
    )
    async def context_events(  # type: ignore[misc]
        self: CaseRow, info: Info, window_hours: int = DEFAULT_WINDOW_HOURS
    ) -> list[ContextEvent]:
        window_of(window_hours)
        return await info.context.loaders.context_events.load((self.id, window_hours))


@read_with()  # no data of its own: any caller reaching a connection may read it
@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


@read_with(Scope.CASES_READ)
@strawberry.type
class CaseEdge:
    cursor: str
    node: FailureCase


@read_with(Scope.CASES_READ)
@strawberry.type
class CaseConnection:
    edges: list[CaseEdge]
    page_info: PageInfo

    nodes: list[FailureCase]


@read_with(Scope.CASES_READ)
@strawberry.type
class GroupEdge:
    cursor: str
    node: FailureGroup


@read_with(Scope.CASES_READ)
@strawberry.type
class GroupConnection:
    edges: list[GroupEdge]
    nodes: list[FailureGroup]
    page_info: PageInfo


@read_with()  # an input error, reported to whoever sent the input
@strawberry.type
class FieldErrorType:
    path: str
    message: str


@strawberry.enum
class IngestStatus(Enum):
    CREATED = "created"
    DUPLICATE = "duplicate"
    CONFLICT = "conflict"
    INVALID = "invalid"
    SAMPLED_OUT = "sampled_out"


@read_with(Scope.CASES_INGEST)
@strawberry.type
class IngestResult:
    index: int
    status: IngestStatus
    id: strawberry.ID | None
    errors: list[FieldErrorType]


FailureCaseRef = Annotated["FailureCase", strawberry.lazy("services.gateway.catalog.types")]


@read_with(Scope.CASES_READ)
@strawberry.type
class TaxonomyVersion:
    version: int
    published_at: datetime
    published_by: str
    note: str | None


@read_with(Scope.CASES_READ)
@strawberry.type
class SamplingRule:
    id: strawberry.ID
    model_name: str
    data_source: str
    keep_at_or_above: Severity
    daily_cap: int
    enabled: bool
    updated_at: datetime
    updated_by: str
