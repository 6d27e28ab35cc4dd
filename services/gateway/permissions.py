"""Scope checks for GraphQL fields: each root field declares its scopes where it is defined."""

from __future__ import annotations

from typing import Any

from strawberry.permission import BasePermission
from strawberry.types import Info

from shared.security import Scope


def scoped(*scopes: Scope) -> list[type[BasePermission]]:
    """Permission classes requiring every scope in `scopes` (classes, not shared instances)."""
    names = " ".join(s.value for s in scopes)

    class HasScopes(BasePermission):
        required = tuple(scopes)
        message = f"insufficient_scope: requires {names}"
        error_extensions = {"code": "FORBIDDEN", "required_scopes": [s.value for s in scopes]}

        def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
            return not info.context.principal.missing(*scopes)

    HasScopes.__name__ = f"HasScopes[{names}]"
    return [HasScopes]
