"""Every table of every service, in one metadata: what migrations are compared against."""

from collections.abc import Callable
from typing import Any

from services.annotation import models as _annotation  # noqa: F401
from services.audit import models as _audit  # noqa: F401
from services.auth import models as _auth  # noqa: F401

# Imported for their side effect: each module registers its tables on `metadata`.
from services.catalog import models as _catalog  # noqa: F401
from services.governance.escalation import models as _escalation  # noqa: F401
from services.governance.redaction import models as _redaction  # noqa: F401
from services.governance.retention import models as _retention  # noqa: F401
from services.plans import models as _plans  # noqa: F401
from services.safeguards import models as _safeguards  # noqa: F401
from services.sharing import models as _sharing  # noqa: F401
from shared.db import metadata

target_metadata = metadata


def include_object_for(dialect: str) -> Callable[..., bool]:
    """Postgres-only objects (GIN indexes) live in their own hand-written migrations: leave
    them out of autogenerate and schema comparisons on other databases."""

    def include(obj: Any, name: str | None, type_: str, reflected: bool, other: Any) -> bool:
        info = getattr(obj, "info", None) or {}
        return not (info.get("postgresql_only") and dialect != "postgresql")

    return include
