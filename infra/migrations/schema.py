"""Every table of every service, in one metadata: what migrations are compared against."""

from services.auth import models as _auth  # noqa: F401

# Imported for their side effect: each module registers its tables on `metadata`.
from services.catalog import models as _catalog  # noqa: F401
from shared.db import metadata

target_metadata = metadata
