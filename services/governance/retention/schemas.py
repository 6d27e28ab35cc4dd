"""Retention inputs (validated, every error at once) and the purge run's report."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from services.governance.inputs import no_nul
from shared.security import Sensitivity

MAX_TTL_DAYS = 100 * 366


MAX_REASON = 2000


class HoldKind(StrEnum):
    CASE = "case"
    GROUP = "group"


class RetentionPolicyIn(BaseModel):
    """Both TTLs null removes the policy (keep forever)."""

    model_config = ConfigDict(extra="forbid")
    # Stripped as a case's data source is (catalog's Name): " payments " would otherwise be
    # stored as a policy no case ever matches, and "   " as a policy of no source at all.
    data_source: Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
        AfterValidator(no_nul),
    ]
    sensitivity: Sensitivity
    payload_ttl_days: int | None = Field(default=None, ge=1, le=MAX_TTL_DAYS)
    case_ttl_days: int | None = Field(default=None, ge=1, le=MAX_TTL_DAYS)


class LegalHoldIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: HoldKind
    target_id: str = Field(min_length=1)
    hold: bool
    reason: Annotated[str, Field(min_length=1, max_length=MAX_REASON), AfterValidator(no_nul)]


@dataclass
class PolicyRun:
    """What one policy purged (or, in a dry run, would purge)."""

    data_source: str
    sensitivity: str
    payload_ttl_days: int | None
    case_ttl_days: int | None
    payload_purged: list[str] = field(default_factory=list)
    cases_purged: list[str] = field(default_factory=list)
    held: set[str] = field(default_factory=set)

    def as_json(self, with_ids: bool) -> dict[str, Any]:
        out: dict[str, Any] = {
            "data_source": self.data_source,
            "sensitivity": self.sensitivity,
            "payload_ttl_days": self.payload_ttl_days,
            "case_ttl_days": self.case_ttl_days,
            "payload_purged": len(self.payload_purged),
            "cases_purged": len(self.cases_purged),
            "held": len(self.held),
        }
        if with_ids:
            out["payload_purged_ids"] = sorted(self.payload_purged)
            out["cases_purged_ids"] = sorted(self.cases_purged)
            out["held_ids"] = sorted(self.held)
        return out


@dataclass
class RunReport:
    now: datetime
    dry_run: bool
    policies: list[PolicyRun] = field(default_factory=list)

    @property
    def payload_purged(self) -> int:
        return sum(len(p.payload_purged) for p in self.policies)

    @property
    def cases_purged(self) -> int:
        return sum(len(p.cases_purged) for p in self.policies)

    @property
    def held(self) -> int:
        return sum(len(p.held) for p in self.policies)

    def as_json(self, with_ids: bool = True) -> dict[str, Any]:
        return {
            "now": self.now.isoformat(),
            "dry_run": self.dry_run,
            "payload_purged": self.payload_purged,
            "cases_purged": self.cases_purged,
            "held": self.held,
            "policies": [p.as_json(with_ids) for p in self.policies],
        }
