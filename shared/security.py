"""Who is calling and what they may do: scopes, roles, clearance. Used by every service."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Scope(StrEnum):
    CASES_READ = "cases:read"
    CASES_WRITE = "cases:write"
    CASES_INGEST = "cases:ingest"
    ANNOTATIONS_WRITE = "annotations:write"
    REVIEWS_WRITE = "reviews:write"
    PLANS_READ = "plans:read"
    PLANS_WRITE = "plans:write"
    EVALS_WRITE = "evals:write"
    EXPORTS_CREATE = "exports:create"
    AUDIT_READ = "audit:read"
    ADMIN = "admin"


ALL_SCOPES = frozenset(Scope)

ROLES: dict[str, frozenset[Scope]] = {
    "viewer": frozenset({Scope.CASES_READ, Scope.PLANS_READ}),
    "annotator": frozenset({Scope.CASES_READ, Scope.PLANS_READ, Scope.ANNOTATIONS_WRITE}),
    "curator": frozenset(
        {
            Scope.CASES_READ,
            Scope.CASES_WRITE,
            Scope.CASES_INGEST,
            Scope.PLANS_READ,
            Scope.PLANS_WRITE,
            Scope.ANNOTATIONS_WRITE,
            Scope.EXPORTS_CREATE,
        }
    ),
    "reviewer": frozenset(
        {Scope.CASES_READ, Scope.PLANS_READ, Scope.ANNOTATIONS_WRITE, Scope.REVIEWS_WRITE}
    ),
    "auditor": frozenset({Scope.CASES_READ, Scope.PLANS_READ, Scope.AUDIT_READ}),
    "admin": ALL_SCOPES,
}


class Sensitivity(StrEnum):
    PUBLIC = "public"
    INTERNAL = "internal"
    CONFIDENTIAL = "confidential"
    RESTRICTED = "restricted"

    @property
    def rank(self) -> int:
        return _SENSITIVITY_ORDER.index(self)

    def at_or_below(self) -> list[str]:
        return [s.value for s in _SENSITIVITY_ORDER[: self.rank + 1]]


_SENSITIVITY_ORDER = list(Sensitivity)


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller as a validated token describes it.

    `team` None means the caller is not bound to a team (admins, cross-team service clients)
    and sees every team's cases up to its clearance.
    """

    subject: str
    client_id: str
    scopes: frozenset[str] = field(default_factory=frozenset)
    team: str | None = None
    clearance: Sensitivity = Sensitivity.INTERNAL
    jti: str | None = None
    # The token's `exp` (epoch seconds): long-lived connections re-check it.
    expires_at: float | None = None
    # Who to show as the actor: the user's username, else the client's name (None: unknown).
    name: str | None = None

    def has(self, scope: Scope | str) -> bool:
        return str(scope) in self.scopes or Scope.ADMIN.value in self.scopes

    def missing(self, *scopes: Scope | str) -> list[str]:
        return [str(s) for s in scopes if not self.has(s)]

    @property
    def is_admin(self) -> bool:
        return Scope.ADMIN.value in self.scopes

    def can_see(self, team: str | None, sensitivity: str | None) -> bool:
        """The visibility rule (shared/visibility.py) for one already-loaded object."""
        from shared.visibility import Visibility  # the rule imports Principal

        return Visibility.of(self).allows(team, sensitivity)


# The principal of internal jobs (indexer, migrations, CLI run by an operator on the host).
SYSTEM = Principal(
    subject="system", client_id="system", scopes=ALL_SCOPES, clearance=Sensitivity.RESTRICTED
)
