"""Scope declarations for GraphQL: every root field checks its scopes with a permission class;
every output type declares the scopes it is read under, as class metadata.

Only root fields (Query, Mutation, Subscription) run a check: a type's fields are reachable
only through a root field, so the type-level declaration costs nothing per resolved leaf. The
schema-walk test (tests/gateway/test_scopes.py) fails when a root field has no permission class,
a type has no declaration, or a root field reaches a type whose scopes it does not require.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from strawberry.permission import BasePermission
from strawberry.types import Info

from shared.security import Scope

T = TypeVar("T")
SCOPES_ATTR = "__failcat_scopes__"


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


def scoped_any(*scopes: Scope) -> list[type[BasePermission]]:
    """Permission classes requiring at least one scope of `scopes`. `required` lists them all
    with `any_of` set, so the scope walk (tests/gateway/test_scopes.py) reads it as "any"."""
    names = " or ".join(s.value for s in scopes)

    class HasAnyScope(BasePermission):
        required = tuple(scopes)
        any_of = True
        message = f"insufficient_scope: requires {names}"
        error_extensions = {"code": "FORBIDDEN", "required_scopes": [s.value for s in scopes]}

        def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
            return any(info.context.principal.has(s) for s in scopes)

    HasAnyScope.__name__ = f"HasAnyScope[{names}]"
    return [HasAnyScope]


def read_with(*scopes: Scope) -> Callable[[T], T]:
    """Class decorator: the scopes a caller holds whenever it can read this type's fields."""

    def mark(cls: T) -> T:
        declare(cls, *scopes)
        return cls

    return mark


def declare(cls: Any, *scopes: Scope) -> None:
    setattr(cls, SCOPES_ATTR, frozenset(scopes))


def declared_scopes(cls: Any) -> frozenset[Scope] | None:
    """The declaration on the class itself (a subclass does not inherit its parent's)."""
    return cls.__dict__.get(SCOPES_ATTR)


def required_scopes(field: Any) -> frozenset[Scope] | None:
    """The scopes a root field's permission classes require, None when it has none."""
    found: set[Scope] = set()
    checked = False
    for permission in getattr(field, "permission_classes", ()) or ():
        if hasattr(permission, "required"):
            found.update(permission.required)
            checked = True
    return frozenset(found) if checked else None
