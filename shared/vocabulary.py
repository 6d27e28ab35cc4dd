"""The value sets every service grades with: severity (S0 worst .. S4 least) and sensitivity.

Defined once here; the catalog's schemas, the search fields and the GraphQL enums use these.
"""

from __future__ import annotations

from enum import StrEnum

from shared.security import Sensitivity


class Severity(StrEnum):
    S0 = "S0"
    S1 = "S1"
    S2 = "S2"
    S3 = "S3"
    S4 = "S4"

    @property
    def rank(self) -> int:
        """0 for S0 (worst); a lower rank is more severe."""
        return SEVERITIES.index(self.value)


SEVERITIES: tuple[str, ...] = tuple(s.value for s in Severity)
SENSITIVITIES: tuple[str, ...] = tuple(s.value for s in Sensitivity)

# Kinds of context event (the catalog's records of what changed around a model): one set for
# the catalog's schemas, the search field `after_event` and the GraphQL enum.
CONTEXT_EVENT_KINDS: tuple[str, ...] = (
    "deploy",
    "feature_change",
    "drift_alert",
    "environment_shift",
)
