"""Every query of the sharing service, and nothing else."""

from __future__ import annotations

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.sharing.models import Bundle, Comment, Lesson

LESSON_TEXT = (
    Lesson.title,
    Lesson.what_happened,
    Lesson.why_it_matters,
    Lesson.mitigation,
    Lesson.cost,
)


class SharingRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def clear_case_comments(self, case_ids: list[str]) -> int:
        """Empty the comments on these cases (body and mentions); who wrote when stays."""
        result = await self.session.execute(
            update(Comment)
            .where(Comment.target_kind == "case", Comment.target_id.in_(case_ids))
            .values(body="", mentions={"people": [], "teams": []}),
            execution_options={"synchronize_session": False},
        )
        return result.rowcount or 0

    async def add(self, row: object) -> None:
        self.session.add(row)
        await self.session.flush()

    async def comment(self, comment_id: str, for_update: bool = False) -> Comment | None:
        return await self.session.get(Comment, comment_id, with_for_update=for_update)

    async def comments(
        self, target_kind: str, target_id: str, first: int, after: str | None
    ) -> list[Comment]:
        """Oldest first (ids are time-ordered); one more than `first`, to tell a next page."""
        stmt = select(Comment).where(
            Comment.target_kind == target_kind, Comment.target_id == target_id
        )
        if after is not None:
            stmt = stmt.where(Comment.id > after)
        rows = await self.session.execute(stmt.order_by(Comment.id).limit(first + 1))
        return list(rows.scalars())

    async def accept_if_open(self, comment_id: str, values: dict) -> bool:
        """Only a measure not accepted yet: of two concurrent acceptances one wins."""
        result = await self.session.execute(
            update(Comment)
            .where(Comment.id == comment_id, Comment.accepted_plan_id.is_(None))
            .values(**values)
        )
        return result.rowcount == 1

    async def lesson(self, lesson_id: str) -> Lesson | None:
        return await self.session.get(Lesson, lesson_id)

    async def update_lesson_if_revision(self, lesson_id: str, revision: int, values: dict) -> bool:
        result = await self.session.execute(
            update(Lesson)
            .where(Lesson.id == lesson_id, Lesson.revision == revision)
            .values(**values, revision=revision + 1)
        )
        return result.rowcount == 1

    async def lessons(
        self, words: list[str], status: str | None, first: int, after: str | None
    ) -> list[Lesson]:
        """Newest first. Each word must appear (case-insensitively) in one of the texts: a
        plain LIKE scan, enough for the hundreds of lessons an organisation writes."""
        stmt = select(Lesson)
        for word in words:
            pattern = f"%{escape_like(word.lower())}%"
            stmt = stmt.where(
                or_(*(func.lower(col).like(pattern, escape="\\") for col in LESSON_TEXT))
            )
        if status is not None:
            stmt = stmt.where(Lesson.status == status)
        if after is not None:
            stmt = stmt.where(and_(Lesson.id < after))
        rows = await self.session.execute(stmt.order_by(Lesson.id.desc()).limit(first + 1))
        return list(rows.scalars())

    async def bundle(self, bundle_id: str, direction: str) -> Bundle | None:
        rows = await self.session.execute(
            select(Bundle).where(Bundle.bundle_id == bundle_id, Bundle.direction == direction)
        )
        return rows.scalars().first()


def escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
