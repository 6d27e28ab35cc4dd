"""Annotation mutations: annotate, assign, adjudicate, send back."""

from __future__ import annotations

from datetime import datetime

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from services.annotation import boards, service
from services.gateway.annotation.types import (
    Annotation,
    AnnotationAssignment,
    AnnotationReview,
    ReviewAgendaItem,
    ReviewBoard,
    ReviewCadence,
    ReviewSession,
)
from services.gateway.permissions import scoped
from shared.security import Scope

REVIEW = scoped(Scope.REVIEWS_WRITE, Scope.CASES_READ)


@strawberry.type
class AnnotationMutation:
    @strawberry.mutation(
        permission_classes=scoped(Scope.ANNOTATIONS_WRITE, Scope.CASES_READ),
        description="Save the caller's annotation of a case: submitted (final until sent "
        "back; every required field) or, with submit: false, a draft.",
    )
    async def submit_annotation(
        self,
        info: Info,
        case_id: strawberry.ID,
        taxonomy: str,
        values: JSON,
        notes: str | None = None,
        confidence: float | None = None,
        submit: bool | None = True,
    ) -> Annotation:
        return await service.submit_annotation(  # type: ignore[return-value]
            await info.context.session(),
            str(case_id),
            taxonomy,
            values,
            info.context.principal,
            notes=notes,
            confidence=confidence,
            submit=submit is not False,
        )

    @strawberry.mutation(
        permission_classes=REVIEW,
        description="Give each case to `overlap` distinct annotators, balancing their load "
        "and never the case's reporter.",
    )
    async def assign_annotators(
        self, info: Info, case_ids: list[strawberry.ID], annotators: list[str], overlap: int
    ) -> list[AnnotationAssignment]:
        return await service.assign_annotators(  # type: ignore[return-value]
            await info.context.session(),
            [str(c) for c in case_ids],
            annotators,
            overlap,
            info.context.principal,
        )

    @strawberry.mutation(
        permission_classes=REVIEW,
        description="Decide a case's values; failcat's become its curated fields through a "
        "revision with reason `adjudicated`.",
    )
    async def adjudicate(
        self,
        info: Info,
        case_id: strawberry.ID,
        taxonomy: str,
        values: JSON,
        expected_revision: int,
        reason: str | None = None,
    ) -> AnnotationReview:
        return await service.adjudicate(  # type: ignore[return-value]
            await info.context.session(),
            str(case_id),
            taxonomy,
            values,
            expected_revision,
            info.context.principal,
            reason,
        )

    @strawberry.mutation(
        permission_classes=REVIEW,
        description="Return a case's submitted annotations to their annotators as drafts.",
    )
    async def send_back(self, info: Info, case_id: strawberry.ID, comment: str) -> AnnotationReview:
        return await service.send_back(  # type: ignore[return-value]
            await info.context.session(), str(case_id), comment, info.context.principal
        )

    @strawberry.mutation(
        permission_classes=REVIEW,
        description="A team's review board: a roster taking turns owning its sessions, and "
        "how often it meets.",
    )
    async def create_review_board(
        self, info: Info, team: str, name: str, cadence: ReviewCadence, roster: list[str]
    ) -> ReviewBoard:
        return await boards.create_board(  # type: ignore[return-value]
            await info.context.session(),
            team,
            name,
            cadence.value,
            roster,
            info.context.principal,
        )

    @strawberry.mutation(
        permission_classes=REVIEW,
        description="Open the board's next session (the previous one closed): owned by the "
        "roster's next member, one cadence later unless `scheduledFor`; its agenda the items "
        "still open from earlier sessions, then new S0/S1 cases, regressed groups, the cases "
        "with the lowest agreement and cases stale in remediation.",
    )
    async def open_review_session(
        self, info: Info, board_id: strawberry.ID, scheduled_for: datetime | None = None
    ) -> ReviewSession:
        return await boards.open_session(  # type: ignore[return-value]
            await info.context.session(), str(board_id), info.context.principal, scheduled_for
        )

    @strawberry.mutation(
        permission_classes=REVIEW, description="Record what an open session decided on an item."
    )
    async def record_review_decision(
        self, info: Info, item_id: strawberry.ID, decision: str
    ) -> ReviewAgendaItem:
        return await boards.decide_item(  # type: ignore[return-value]
            await info.context.session(), str(item_id), decision, info.context.principal
        )

    @strawberry.mutation(
        permission_classes=REVIEW,
        description="Close a session with its minutes; items left open carry to the next.",
    )
    async def close_review_session(
        self, info: Info, session_id: strawberry.ID, minutes: str
    ) -> ReviewSession:
        return await boards.close_session(  # type: ignore[return-value]
            await info.context.session(), str(session_id), minutes, info.context.principal
        )
