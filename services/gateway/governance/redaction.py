"""GraphQL for redaction: `setRedactionPolicy` and `redactionPolicies` (admin), and the
FailureCase fields the rule of shared/redaction.py decides (payload fields, `redactedFields`,
`piiFindings`, `piiRestrictedValues`), which the catalog's FailureCase type takes from here."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from services.gateway.permissions import read_with, scoped
from services.governance.redaction import service
from services.governance.redaction.schemas import Mode, PolicyIn
from shared.redaction import redacted_fields
from shared.security import Scope, Sensitivity

RedactionMode = strawberry.enum(
    Mode,
    name="RedactionMode",
    description="mask: [EMAIL], [CARD ****1234] ...; hash: [EMAIL:hmac:<16 hex>], a keyed "
    "HMAC, so equal values stay joinable; remove: the value (or its key/value pair) dropped; "
    "keep_restricted: masked, the raw value kept for readers cleared restricted.",
)


@read_with(Scope.ADMIN)
@strawberry.type
class RedactionPolicy:
    data_source: str
    mode: RedactionMode
    # The enum setRedactionPolicy takes (and FailureCase.payloadSensitivity answers), so a
    # policy read can be written back as it is.
    payload_sensitivity: Sensitivity | None
    version: int
    updated_at: datetime | None
    updated_by: str | None


@read_with(Scope.CASES_READ)
@strawberry.type(description="A value ingest redacted: its kind and JSON path, never the value.")
class PiiFinding:
    kind: str
    path: str


@read_with(Scope.CASES_READ)
@strawberry.type
class RestrictedValue:
    kind: str
    path: str
    value: str


def _policy(p: Any) -> RedactionPolicy:
    return RedactionPolicy(
        data_source=p.data_source,
        mode=p.mode,
        payload_sensitivity=Sensitivity(p.payload_sensitivity) if p.payload_sensitivity else None,
        version=p.version,
        updated_at=p.updated_at,
        updated_by=p.updated_by,
    )


@strawberry.type
class RedactionQuery:
    @strawberry.field(
        permission_classes=scoped(Scope.ADMIN),
        description="Every data source's redaction policy (a source not listed: mask).",
    )
    async def redaction_policies(self, info: Info) -> list[RedactionPolicy]:
        return [_policy(p) for p in await service.policies(await info.context.session())]


@strawberry.type
class RedactionMutation:
    @strawberry.mutation(
        permission_classes=scoped(Scope.ADMIN),
        description="Set a data source's redaction policy for the cases ingested from now on; "
        "`payloadSensitivity` raises its cases' raw payload fields above their own level.",
    )
    async def set_redaction_policy(
        self,
        info: Info,
        data_source: str,
        mode: RedactionMode,
        payload_sensitivity: Sensitivity | None = None,
    ) -> RedactionPolicy:
        data = PolicyIn(
            data_source=data_source, mode=Mode(mode), payload_sensitivity=payload_sensitivity
        )
        session = await info.context.session()
        return _policy(await service.set_policy(session, data, info.context.principal))


# ---- FailureCase fields -------------------------------------------------------------------


def _payload(name: str) -> Callable[..., Any]:
    def resolve(self: Any, info: Info) -> JSON | None:
        if redacted_fields(info.context.principal, self):
            return None
        return getattr(self, name)

    resolve.__name__ = name
    return resolve


def _payload_field(name: str) -> Any:
    return strawberry.field(
        resolver=_payload(name),
        description="Null when the payload's sensitivity is above the reader's clearance "
        "(then listed in redactedFields).",
    )


case_environment = _payload_field("environment")
case_input = _payload_field("input")
case_prediction = _payload_field("prediction")
case_expected = _payload_field("expected")
case_signals = _payload_field("signals")


def _redacted_fields(self: Any, info: Info) -> list[str]:
    return list(redacted_fields(info.context.principal, self))


def _pii_findings(self: Any) -> list[PiiFinding]:
    return [PiiFinding(kind=f["kind"], path=f["path"]) for f in self.pii_findings or ()]


async def _pii_restricted_values(self: Any, info: Info) -> list[RestrictedValue] | None:
    principal = info.context.principal
    if principal.clearance is not Sensitivity.RESTRICTED or not self.pii_restricted:
        return None  # no session, no audit entry, for everyone else
    kept = service.restricted_values(await info.context.session(), self, principal)
    return [RestrictedValue(kind=v.kind, path=v.path, value=v.value) for v in kept or ()]


case_redacted_fields = strawberry.field(
    resolver=_redacted_fields,
    description="Payload fields returned null because the reader's clearance is below the "
    "payload's sensitivity.",
)
case_pii_findings = strawberry.field(
    resolver=_pii_findings,
    description="What ingest found and redacted: kinds and JSON paths, never the values.",
)
case_pii_restricted_values = strawberry.field(
    resolver=_pii_restricted_values,
    description="The raw values a keep_restricted policy kept: readers cleared restricted "
    "only (null for others); each read is audited.",
)
