"""Sharing mutations: comments (annotations:write), accepting a proposed measure into a plan
(plans:write), lessons (cases:write; reviewing needs reviews:write)."""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from services.gateway.permissions import scoped
from services.gateway.sharing.types import Comment, CommentKind, Lesson, LessonInput
from services.sharing import schemas, service
from shared.security import Scope


@strawberry.type
class SharingMutation:
    @strawberry.mutation(
        permission_classes=scoped(Scope.ANNOTATIONS_WRITE, Scope.CASES_READ),
        description="Comment on a case or group (its id). `@alice` mentions a person, "
        "`@team:payments-ml` a team.",
    )
    async def add_comment(
        self,
        info: Info,
        target: strawberry.ID,
        body: str,
        kind: CommentKind = CommentKind.COMMENT,  # type: ignore[assignment]
    ) -> Comment:
        data = schemas.CommentIn(body=body, kind=schemas.CommentKind(kind.value))
        return await service.add_comment(  # type: ignore[return-value]
            await info.context.session(), str(target), data, info.context.principal
        )

    @strawberry.mutation(
        permission_classes=scoped(Scope.PLANS_WRITE, Scope.PLANS_READ, Scope.CASES_READ),
        description="Accept a proposed measure into a retraining plan (not closed or evaluated).",
    )
    async def accept_proposed_measure(
        self, info: Info, id: strawberry.ID, plan_id: strawberry.ID
    ) -> Comment:
        return await service.accept_measure(  # type: ignore[return-value]
            await info.context.session(), str(id), str(plan_id), info.context.principal
        )

    @strawberry.mutation(
        permission_classes=scoped(Scope.CASES_WRITE, Scope.CASES_READ),
        description="A draft lesson drawn from at least two groups you may see.",
    )
    async def create_lesson(self, info: Info, lesson: LessonInput) -> Lesson:
        data = schemas.LessonIn(
            title=lesson.title,
            what_happened=lesson.what_happened,
            why_it_matters=lesson.why_it_matters,
            mitigation=lesson.mitigation,
            cost=lesson.cost,
            evidence_group_ids=[str(g) for g in lesson.evidence_group_ids],
            suites=[schemas.SuiteRef(name=s.name, version=s.version) for s in lesson.suites or []],
        )
        return await service.create_lesson(  # type: ignore[return-value]
            await info.context.session(), data, info.context.principal
        )

    @strawberry.mutation(
        permission_classes=scoped(Scope.REVIEWS_WRITE, Scope.CASES_READ),
        description="draft -> reviewed, by a reviewer who is not the lesson's author.",
    )
    async def review_lesson(self, info: Info, id: strawberry.ID, expected_revision: int) -> Lesson:
        return await service.review_lesson(  # type: ignore[return-value]
            await info.context.session(), str(id), expected_revision, info.context.principal
        )
