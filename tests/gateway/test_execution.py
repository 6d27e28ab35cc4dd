"""The executor's fast paths answer exactly as strawberry's own execution does: same data, same
errors at the same paths; and hooks on every resolver still see every field."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import Enum
from types import SimpleNamespace
from typing import Any

import strawberry
from strawberry.extensions import SchemaExtension
from strawberry.permission import BasePermission
from strawberry.types import Info

from services.gateway.execution import FailcatExecutionContext, direct_resolvers


@strawberry.enum
class Color(Enum):
    RED = "red"
    BLUE = "blue"


class Deny(BasePermission):
    message = "denied"

    def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
        return False


@strawberry.type
class Part:
    label: str
    size: int | None = None


@strawberry.type
class Item:
    id: strawberry.ID
    name: str
    title: str | None = None
    note: str | None
    color: Color
    at: datetime
    tags: list[str]

    @strawberry.field
    def loud(self) -> str:
        return self.name.upper()

    @strawberry.field
    def who(self, info: Info) -> str:
        return info.context["who"]

    @strawberry.field
    def part(self) -> Part | None:
        return self.part_source

    @strawberry.field(permission_classes=[Deny])
    def secret(self) -> str:
        return "never"

    @strawberry.field
    def shout(self, times: int = 2) -> str:
        return self.name * times


def item(**over: Any) -> SimpleNamespace:
    values = {
        "id": "1",
        "name": "a",
        "title": "t",
        "note": None,
        "color": "red",
        "at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        "tags": ["x"],
        "part_source": SimpleNamespace(label="p", size=3),
    }
    values.update(over)
    return SimpleNamespace(**values)


class Exploding(SimpleNamespace):
    """A row whose attribute read raises: the fast path must leave the error to graphql-core."""

    @property
    def title(self) -> str:
        raise RuntimeError("title could not be read")


ITEMS = [
    item(),
    item(id="2", name="b", note="n", color="blue", part_source=None),
    item(id="3", name=None),  # null in a non-null field
    item(id="4", color="green"),  # not a value of the enum
    SimpleNamespace(id="5", name="e"),  # attributes missing
    item(id="6", part_source=SimpleNamespace(label=None)),  # null in a nested non-null field
    Exploding(**{k: v for k, v in vars(item(id="7")).items() if k != "title"}),  # read raises
]


@strawberry.type
class Query:
    @strawberry.field
    def items(self) -> list[Item | None]:
        return ITEMS

    @strawberry.field
    def one(self) -> Item:
        return ITEMS[0]


QUERY = """{
  items { id name title note color at tags loud who part { label size } shout(times: 3) }
  one { id name __typename part { __typename label } }
}"""


def schemas(**kw: Any) -> tuple[strawberry.Schema, strawberry.Schema]:
    plain = strawberry.Schema(Query, **kw)
    fast = strawberry.Schema(Query, execution_context_class=FailcatExecutionContext, **kw)
    assert direct_resolvers(fast) > 0
    return plain, fast


def outcome(result: Any) -> tuple[Any, list[tuple[str, Any]]]:
    return result.data, sorted((e.message, e.path) for e in result.errors or [])


async def test_same_data_and_errors_as_strawberry() -> None:
    plain, fast = schemas()
    expected = outcome(await plain.execute(QUERY, context_value={"who": "me"}))
    assert expected[1], "the query exercises errors"
    assert ("title could not be read", ["items", 6, "title"]) in expected[1]
    assert outcome(await fast.execute(QUERY, context_value={"who": "me"})) == expected
    assert outcome(fast.execute_sync(QUERY, context_value={"who": "me"})) == expected


async def test_permission_classes_still_apply() -> None:
    _, fast = schemas()
    result = await fast.execute("{ one { id secret } }", context_value={"who": "me"})
    assert result.data is None
    assert [e.message for e in result.errors] == ["denied"]


async def test_hooks_on_every_resolver_see_every_field() -> None:
    seen: list[str] = []

    class Every(SchemaExtension):
        def resolve(self, _next: Any, root: Any, info: Any, *args: Any, **kwargs: Any) -> Any:
            seen.append(f"{info.parent_type.name}.{info.field_name}")
            return _next(root, info, *args, **kwargs)

    _, fast = schemas(extensions=[Every])
    result = await fast.execute("{ one { id name loud part { label } } }", context_value={})
    assert result.errors is None
    assert sorted(seen) == [
        "Item.id",
        "Item.loud",
        "Item.name",
        "Item.part",
        "Part.label",
        "Query.one",
    ]
