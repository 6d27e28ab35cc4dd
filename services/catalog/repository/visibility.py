"""The visibility rule (shared/visibility.py) over the catalog's tables."""

from __future__ import annotations

from typing import Any

from sqlalchemy import exists, select

from services.catalog.models import FailureCase, FailureGroup
from shared.security import Principal
from shared.visibility import Visibility


def visible_to(viewer: Principal) -> list[Any]:
    """The visibility rule (shared/visibility.py), applied inside every catalog read."""
    return visible_in(Visibility.of(viewer))


def visible_in(view: Visibility) -> list[Any]:
    """The same, from a caller's view (hashable: statements built once per view use it)."""
    return [view.sqlalchemy(FailureCase.team, FailureCase.sensitivity)]


def visible_case_ids(viewer: Principal) -> Any:
    """The ids of the cases `viewer` may see, as a subquery other tables filter on."""
    return select(FailureCase.id).where(*visible_to(viewer))


def has_visible_case(viewer: Principal) -> Any:
    """A group shows only to callers who may see at least one of its cases."""
    return exists().where(FailureCase.group_id == FailureGroup.id, *visible_to(viewer))
