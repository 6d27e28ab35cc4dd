"""Catalog mutations. Live subscribers hear of what they change from the outbox, once the
request's transaction has committed and the indexer has taken it (shared.changes)."""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from services.catalog import service
from services.catalog.api import check_item_count
from services.catalog.schemas import CasePatch
from services.gateway.catalog.inputs import (
    CaseInput,
    CasePatchInput,
    ContextEventInput,
    FailureModeInput,
    SamplingRuleInput,
    to_plain,
)
from services.gateway.catalog.types import (
    ContextEvent,
    FailureCase,
    FailureGroup,
    FieldErrorType,
    IngestResult,
    IngestStatus,
    ModelVersion,
    SamplingRule,
    Status,
    TaxonomyVersion,
)
from services.gateway.errors import camel_path
from services.gateway.permissions import scoped, scoped_any
from shared.audit import audit
from shared.security import Scope

# Free-form JSON fields: keys below them are the producer's own and keep their spelling.
_FREE_FORM = {"environment", "input", "prediction", "expected", "signals"}


def item_path(path: str) -> str:
    """An ingested item's error path as GraphQL's input spells it (camelCase), up to a
    free-form field: `model.version`, `latencyMs`, `environment.app_version`."""
    out, free = [], False
    for segment in path.split("."):
        out.append(segment if free else camel_path(segment))
        free = free or segment in _FREE_FORM
    return ".".join(out)


# Mutations answer with the case they changed, so they need read access as well as write.
WRITE_CASES = scoped(Scope.CASES_WRITE, Scope.CASES_READ)


async def _updated(
    info: Info, case_id: str, patch: CasePatch, expected_revision: int, reason: str | None
) -> FailureCase:
    session = await info.context.session()
    case = await service.update_case(
        session, case_id, patch, expected_revision, info.context.principal, reason
    )
    return case


@strawberry.type
class CatalogMutation:
    @strawberry.mutation(permission_classes=scoped(Scope.CASES_INGEST))
    async def ingest_cases(self, info: Info, cases: list[CaseInput]) -> list[IngestResult]:
        check_item_count(len(cases))
        session = await info.context.session()
        results = await service.ingest_cases(
            session, [to_plain(c) for c in cases], info.context.principal
        )
        return [
            IngestResult(
                index=r.index,
                status=IngestStatus(r.status),
                id=r.id,
                errors=[
                    FieldErrorType(path=item_path(e["path"]), message=e["message"])
                    for e in r.errors or []
                ],
            )
            for r in results
        ]

    @strawberry.mutation(permission_classes=WRITE_CASES)
    async def update_case(
        self,
        info: Info,
        id: strawberry.ID,
        patch: CasePatchInput,
        expected_revision: int,
        reason: str | None = None,
    ) -> FailureCase:
        session = await info.context.session()
        validated = await service.validate_patch(session, to_plain(patch, keep_null=True))
        return await _updated(info, str(id), validated, expected_revision, reason)

    @strawberry.mutation(
        permission_classes=WRITE_CASES,
        description="Move a case along its workflow (new -> triaged -> ... -> resolved).",
    )
    async def set_case_status(
        self,
        info: Info,
        id: strawberry.ID,
        status: Status,
        expected_revision: int,
        reason: str | None = None,
    ) -> FailureCase:
        patch = CasePatch.model_validate({"status": status.value})
        return await _updated(info, str(id), patch, expected_revision, reason)

    @strawberry.mutation(permission_classes=WRITE_CASES)
    async def merge_case(
        self,
        info: Info,
        id: strawberry.ID,
        into: strawberry.ID,
        expected_revision: int,
        reason: str | None = None,
    ) -> FailureCase:
        session = await info.context.session()
        case = await service.merge_case(
            session, str(id), str(into), expected_revision, info.context.principal, reason
        )
        return case

    @strawberry.mutation(permission_classes=WRITE_CASES)
    async def resolve_group(
        self, info: Info, id: strawberry.ID, fixed_in_version: str
    ) -> FailureGroup:
        session = await info.context.session()
        return await service.resolve_group(
            session, str(id), fixed_in_version, info.context.principal
        )

    @strawberry.mutation(
        permission_classes=WRITE_CASES,
        description="Register a model version before its first case arrives (groups can then "
        "be resolved in it), or describe one ingestion created. Idempotent.",
    )
    async def register_model_version(
        self,
        info: Info,
        model: str,
        version: str,
        artifact_uri: str | None = None,
        training_data_ref: str | None = None,
        feature_config_hash: str | None = None,
    ) -> ModelVersion:
        session = await info.context.session()
        row = await service.register_model_version(
            session,
            {
                "model": model,
                "version": version,
                "artifact_uri": artifact_uri,
                "training_data_ref": training_data_ref,
                "feature_config_hash": feature_config_hash,
            },
        )
        audit(session, info.context.principal, "model_version.register", f"model:{model}/{version}")
        return row

    @strawberry.mutation(
        permission_classes=scoped(Scope.ADMIN),
        description="A new taxonomy version: the current codes plus `codes`.",
    )
    async def publish_taxonomy(
        self, info: Info, codes: list[FailureModeInput], note: str | None = None
    ) -> TaxonomyVersion:

        session = await info.context.session()
        version = await service.publish_taxonomy(
            session, [to_plain(c) for c in codes], info.context.principal, note
        )
        published = {v.version: v for v in await service.taxonomy_versions(session)}
        return published[version]

    @strawberry.mutation(permission_classes=scoped(Scope.ADMIN))
    async def set_sampling_rule(self, info: Info, rule: SamplingRuleInput) -> SamplingRule:
        return await service.set_sampling_rule(  # type: ignore[return-value]
            await info.context.session(),
            model_name=rule.model_name,
            data_source=rule.data_source,
            daily_cap=rule.daily_cap,
            keep_at_or_above=rule.keep_at_or_above.value,
            enabled=rule.enabled,
            actor=info.context.principal,
        )

    @strawberry.mutation(
        permission_classes=scoped_any(Scope.CASES_INGEST, Scope.CASES_WRITE),
        description="Record a context event (a deploy, feature change, drift alert or "
        "environment shift). Cases that occurred within 7 days after it in its scope are "
        "re-indexed, so `after_event:<kind>` finds them. Needs cases:ingest or cases:write.",
    )
    async def record_context_event(self, info: Info, event: ContextEventInput) -> ContextEvent:
        values = to_plain(event)
        if isinstance(values.get("details"), dict):
            values["details"] = {_snake(k): v for k, v in values["details"].items()}
        session = await info.context.session()
        return await service.record_event(session, values, info.context.principal)


def _snake(name: str) -> str:
    """`newHash` -> `new_hash`: the wire format's spelling of a GraphQL details key."""
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)
