"""GraphQL types of the sharing service. A comment is read with its target (cases:read); a
lesson lists only the evidence groups the reader may see."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry
from strawberry.types import Info

from services.gateway.catalog.types import PageInfo
from services.gateway.permissions import read_with
from services.gateway.sharing.loaders import loaders
from services.sharing import schemas, service
from shared.security import Scope

CommentKind = strawberry.enum(schemas.CommentKind, name="CommentKind")
CommentTargetKind = strawberry.enum(schemas.TargetKind, name="CommentTargetKind")
LessonStatus = strawberry.enum(schemas.LessonStatus, name="LessonStatus")


@read_with(Scope.CASES_READ)
@strawberry.type(description="People (`@alice`) and teams (`@team:payments-ml`) a comment names.")
class Mentions:
    people: list[str]
    teams: list[str]


@read_with(Scope.CASES_READ)
@strawberry.type(description="Who the comment notifies and why (delivered by governance webhooks).")
class CommentNotification:
    recipient_kind: str = strawberry.field(description="user | team")
    recipient: str
    reason: str


@read_with(Scope.CASES_READ)
@strawberry.type(
    description="A comment on a case or a group, seen exactly when its target is; a "
    "PROPOSED_MEASURE can be accepted into a retraining plan."
)
class Comment:
    id: strawberry.ID
    target_kind: CommentTargetKind
    target_id: strawberry.ID
    kind: CommentKind
    body: str
    created_at: datetime
    accepted_plan_id: strawberry.ID | None
    accepted_by: str | None
    accepted_at: datetime | None

    @strawberry.field(description="The author: the user's name, else the client's.")
    def author(self) -> str:
        row: Any = self
        return row.author_name or row.author

    @strawberry.field
    def mentions(self) -> Mentions:
        row: Any = self
        return Mentions(people=row.mentions.get("people", []), teams=row.mentions.get("teams", []))

    @strawberry.field(description="Whom the comment notifies: the people and teams it mentions.")
    def notifications(self) -> list[CommentNotification]:
        return [
            CommentNotification(
                recipient_kind=n.recipient_kind, recipient=n.recipient, reason=n.reason
            )
            for n in service.comment_notifications(self)  # type: ignore[arg-type]
        ]


@read_with()
@strawberry.type
class CommentConnection:
    nodes: list[Comment]
    page_info: PageInfo


@read_with(Scope.CASES_READ)
@strawberry.type(description="A suite (at a version) that guards against a lesson's failure.")
class GuardingSuite:
    name: str
    version: int


@read_with(Scope.CASES_READ)
@strawberry.type(
    description="A named pattern drawn from several failure groups, written for readers who "
    "are not specialists: draft -> reviewed (by a reviewer who is not its author)."
)
class Lesson:
    id: strawberry.ID
    title: str
    what_happened: str
    why_it_matters: str = strawberry.field(description="For users and for operators.")
    mitigation: str = strawberry.field(description="The mitigation that worked.")
    cost: str = strawberry.field(description="What the mitigation cost against the alternatives.")
    status: LessonStatus
    revision: int
    created_at: datetime
    reviewed_by: str | None
    reviewed_at: datetime | None

    @strawberry.field
    def author(self) -> str:
        row: Any = self
        return row.author_name or row.author

    @strawberry.field(description="The evidence groups you may see.")
    async def evidence_group_ids(self, info: Info) -> list[strawberry.ID]:
        row: Any = self
        seen = await loaders(info.context).visible_groups.load_many(row.evidence_group_ids)
        return [strawberry.ID(g) for g, ok in zip(row.evidence_group_ids, seen, strict=True) if ok]

    @strawberry.field
    def guarding_suites(self) -> list[GuardingSuite]:
        row: Any = self
        return [GuardingSuite(name=s["name"], version=s["version"]) for s in row.suites]


@read_with()
@strawberry.type
class LessonConnection:
    nodes: list[Lesson]
    page_info: PageInfo


@strawberry.input(description="A lesson: at least two evidence groups; suites by name.")
class SuiteRefInput:
    name: str
    version: int | None = None


@strawberry.input
class LessonInput:
    title: str
    what_happened: str
    why_it_matters: str
    mitigation: str
    cost: str = strawberry.field(description="The mitigation's cost against the alternatives.")
    evidence_group_ids: list[strawberry.ID]
    suites: list[SuiteRefInput] | None = None
