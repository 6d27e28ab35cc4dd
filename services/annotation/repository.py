"""Every query of the annotation service, and nothing else."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from typing import Any

import orjson
from sqlalchemy import String, bindparam, func, insert, literal, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import Select

from services.annotation.models import (
    Annotation,
    AnnotationAssignment,
    AnnotationChange,
    AnnotationReview,
    AnnotationTaxonomy,
    ReviewAgendaItem,
    ReviewBoard,
    ReviewSession,
)
from shared.db import driver_connection

# SQLite binds at most 32766 variables per statement; stay well below for IN lists.
IN_CHUNK = 5000


def _chunks(items: Sequence[Any], size: int = IN_CHUNK) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


# What a reader of annotation values needs of each row, without building ORM objects.
_VALUE_COLUMNS = (
    Annotation.case_id,
    Annotation.taxonomy,
    Annotation.annotator,
    Annotation.status,
    Annotation.values,
)


class AnnotationRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # --- retention -----------------------------------------------------------------------
    async def clear_case_texts(self, case_ids: Sequence[str]) -> int:
        """What annotators and reviewers wrote about these cases: annotation values and notes
        (and their history), adjudicated values and review comments, agenda reasons and
        decisions. The rows stay (who, when, which taxonomy). Returns the annotations
        cleared."""
        done = 0
        plain = {"synchronize_session": False}
        for chunk in _chunks(case_ids):
            ids = list(chunk)
            of_cases = select(Annotation.id).where(Annotation.case_id.in_(ids))
            await self.session.execute(
                update(AnnotationChange)
                .where(AnnotationChange.annotation_id.in_(of_cases))
                .values(values={}, notes=None),
                execution_options=plain,
            )
            result = await self.session.execute(
                update(Annotation).where(Annotation.case_id.in_(ids)).values(values={}, notes=None),
                execution_options=plain,
            )
            done += result.rowcount or 0
            await self.session.execute(
                update(AnnotationReview)
                .where(AnnotationReview.case_id.in_(ids))
                .values(values=None, comment=None),
                execution_options=plain,
            )
            await self.session.execute(
                update(ReviewAgendaItem)
                .where(ReviewAgendaItem.case_id.in_(ids))
                .values(reason="", decision=None),
                execution_options=plain,
            )
        return done

    # --- taxonomies ----------------------------------------------------------------------
    async def latest_taxonomy(self, name: str) -> AnnotationTaxonomy | None:
        stmt = (
            select(AnnotationTaxonomy)
            .where(AnnotationTaxonomy.name == name)
            .order_by(AnnotationTaxonomy.version.desc())
            .limit(1)
        )
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def taxonomy_version(self, name: str, version: int) -> AnnotationTaxonomy | None:
        return await self.session.get(AnnotationTaxonomy, (name, version))

    async def taxonomy_names(self) -> list[str]:
        stmt = select(AnnotationTaxonomy.name).distinct().order_by(AnnotationTaxonomy.name)
        return list((await self.session.execute(stmt)).scalars())

    async def latest_taxonomies(self) -> list[AnnotationTaxonomy]:
        latest = (
            select(AnnotationTaxonomy.name, func.max(AnnotationTaxonomy.version).label("v"))
            .group_by(AnnotationTaxonomy.name)
            .subquery()
        )
        stmt = (
            select(AnnotationTaxonomy)
            .join(
                latest,
                (latest.c.name == AnnotationTaxonomy.name)
                & (latest.c.v == AnnotationTaxonomy.version),
            )
            .order_by(AnnotationTaxonomy.name)
        )
        return list((await self.session.execute(stmt)).scalars())

    async def add(self, row: Any) -> None:
        self.session.add(row)
        await self.session.flush()

    async def insert_rows(self, model: Any, rows: list[dict[str, Any]]) -> None:
        for chunk in _chunks(rows, 500):
            await self.session.execute(insert(model), list(chunk))

    # --- annotations ---------------------------------------------------------------------
    async def annotation(
        self, case_id: str, annotator: str, taxonomy: str, for_update: bool = False
    ) -> Annotation | None:
        stmt = select(Annotation).where(
            Annotation.case_id == case_id,
            Annotation.annotator == annotator,
            Annotation.taxonomy == taxonomy,
        )
        if for_update:
            stmt = stmt.with_for_update()
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def annotations_of(
        self, case_ids: Sequence[str], taxonomy: str | None = None
    ) -> list[Annotation]:
        out: list[Annotation] = []
        for chunk in _chunks(list(case_ids)):
            stmt = select(Annotation).where(Annotation.case_id.in_(chunk))
            if taxonomy is not None:
                stmt = stmt.where(Annotation.taxonomy == taxonomy)
            out += (await self.session.execute(stmt.order_by(Annotation.created_at))).scalars()
        return out

    async def annotations_with_assignment(
        self, case_ids: Sequence[str], reader: str
    ) -> list[tuple[Annotation, bool]]:
        """Every annotation of the cases, each with whether `reader` is assigned to its case:
        the blind-read rule's inputs and its answer in one statement."""
        assigned = (
            select(AnnotationAssignment.case_id)
            .where(
                AnnotationAssignment.case_id == Annotation.case_id,
                AnnotationAssignment.annotator == reader,
            )
            .exists()
        )
        out: list[tuple[Annotation, bool]] = []
        for chunk in _chunks(list(case_ids)):
            stmt = (
                select(Annotation, assigned.label("assigned"))
                .where(Annotation.case_id.in_(chunk))
                .order_by(Annotation.created_at)
            )
            out += [(row, bool(flag)) for row, flag in (await self.session.execute(stmt)).all()]
        return out

    async def annotation_values(self, case_ids: Sequence[str]) -> list[Any]:
        """(case, taxonomy, annotator, status, values) of every annotation of the cases, as
        plain rows (no ORM objects: a review queue reads tens of thousands)."""
        return await self._rows_of(case_ids, *_VALUE_COLUMNS)

    async def state_rows(self, case_ids: Sequence[str]) -> list[Any]:
        """(case, taxonomy, annotator, status, values, submitted_at) of every annotation of
        the cases, as plain rows: what their search documents say about annotation."""
        return await self._rows_of(case_ids, *_VALUE_COLUMNS, Annotation.submitted_at)

    async def _rows_of(self, case_ids: Sequence[str], *columns: Any) -> list[Any]:
        out: list[Any] = []
        connection = await self.session.connection()
        for chunk in _chunks(list(case_ids)):
            stmt = select(*columns).where(Annotation.case_id.in_(chunk))
            out += (await connection.execute(stmt)).all()
        return out

    async def annotations_by(self, annotator: str, case_ids: Sequence[str]) -> list[Annotation]:
        out: list[Annotation] = []
        for chunk in _chunks(list(case_ids)):
            stmt = select(Annotation).where(
                Annotation.annotator == annotator, Annotation.case_id.in_(chunk)
            )
            out += (await self.session.execute(stmt)).scalars()
        return out

    async def update_annotation(self, annotation_id: str, values: dict[str, Any]) -> None:
        await self.session.execute(
            update(Annotation).where(Annotation.id == annotation_id).values(**values)
        )

    async def changes_of(self, annotation_ids: Sequence[str]) -> list[AnnotationChange]:
        out: list[AnnotationChange] = []
        for chunk in _chunks(list(annotation_ids)):
            stmt = (
                select(AnnotationChange)
                .where(AnnotationChange.annotation_id.in_(chunk))
                .order_by(AnnotationChange.annotation_id, AnnotationChange.revision)
            )
            out += (await self.session.execute(stmt)).scalars()
        return out

    async def submitted(
        self,
        taxonomy: str,
        field: str,
        visible_ids: Select,
        annotators: Sequence[str] | None = None,
        *,
        as_text: bool = False,
    ) -> tuple[list[str], list[str], list[Any], list[str]]:
        """The columns case, annotator, value of `field` and "YYYY-MM" submitted of every
        submitted annotation of a taxonomy on the cases `visible_ids` selects, without an
        empty value.

        Agreement reads 100,000 of these at a time, and decoding rows was its cost: the
        database extracts the one value and the month and aggregates each column into one
        array (Postgres' array_agg, which asyncpg decodes in C; SQLite's json_group_array,
        which orjson parses), so the answer is one row of four lists: no row objects, no
        tuple per rating. The arrays of one SELECT follow the same row order.
        `as_text`: the value as text (a string, or a number), not JSON: for scalar fields.
        SQLite gives each value as it is stored in JSON (a string, number, bool or list):
        its json_extract would round a float to 15 digits inside json_group_array."""
        connection = await self.session.connection()
        postgres = connection.dialect.name == "postgresql"
        values = Annotation.__table__.c["values"]
        if postgres:
            month = func.to_char(func.timezone("UTC", Annotation.submitted_at), "YYYY-MM")
            value = values.op("->" if not as_text else "->>")(literal(field, String))
            given = value
        else:
            # Stored as "YYYY-MM-DD HH:MM:SS..." in UTC (shared.db.UTCDateTime): its start.
            month = func.substr(Annotation.submitted_at, 1, 7)
            if '"' in field:  # a JSON path label cannot hold a double quote: by key
                each = func.json_each(values).table_valued("key", "value")
                value = select(each.c.value).where(each.c.key == field).scalar_subquery()
                given = value
            else:
                path = literal(f'$."{field}"', String)
                value = func.json_extract(values, path)
                given = values.op("->")(path)  # the JSON text: json_group_array keeps it
        stmt = select(Annotation.annotator).where(
            Annotation.taxonomy == taxonomy,
            Annotation.status == "submitted",
            Annotation.case_id.in_(visible_ids),
            value.is_not(None),
        )
        if as_text:
            stmt = stmt.where(value != "")
        if annotators:
            stmt = stmt.where(Annotation.annotator.in_(list(annotators)))
        aggregate = func.array_agg if postgres else func.json_group_array
        stmt = stmt.with_only_columns(
            *(aggregate(c) for c in (Annotation.case_id, Annotation.annotator, given, month))
        )
        compiled = stmt.compile(
            dialect=connection.dialect, compile_kwargs={"render_postcompile": True}
        )
        params = [compiled.params[name] for name in compiled.positiontup or ()]
        # Two agreement fields of one GraphQL document share the session: driver_connection
        # takes its turn.
        async with driver_connection(self.session) as driver:
            if postgres:
                row = await driver.fetchrow(str(compiled), *params)
                columns = [list(c) if c is not None else [] for c in row]
            else:
                cursor = await driver.execute(str(compiled), params)
                try:
                    row = await cursor.fetchone()
                finally:
                    await cursor.close()
                columns = [orjson.loads(c) for c in row]
        return columns[0], columns[1], columns[2], columns[3]

    async def submitted_groups(self, visible_ids: Select) -> list[tuple[str, str, int, Any]]:
        """(case, taxonomy, annotations submitted, latest submission) on visible cases."""
        stmt = (
            select(
                Annotation.case_id,
                Annotation.taxonomy,
                func.count(),
                func.max(Annotation.submitted_at),
            )
            .where(Annotation.status == "submitted", Annotation.case_id.in_(visible_ids))
            .group_by(Annotation.case_id, Annotation.taxonomy)
        )
        return [tuple(r) for r in (await self.session.execute(stmt)).all()]  # type: ignore[misc]

    # --- assignments ---------------------------------------------------------------------
    async def assignments_of(self, case_ids: Sequence[str]) -> list[AnnotationAssignment]:
        out: list[AnnotationAssignment] = []
        for chunk in _chunks(list(case_ids)):
            stmt = select(AnnotationAssignment).where(AnnotationAssignment.case_id.in_(chunk))
            out += (await self.session.execute(stmt)).scalars()
        return out

    async def assignments_to(
        self, annotator: str, visible_ids: Select
    ) -> list[AnnotationAssignment]:
        stmt = (
            select(AnnotationAssignment)
            .where(
                AnnotationAssignment.annotator == annotator,
                AnnotationAssignment.case_id.in_(visible_ids),
            )
            .order_by(AnnotationAssignment.assigned_at, AnnotationAssignment.case_id)
        )
        return list((await self.session.execute(stmt)).scalars())

    async def load_of(self, annotators: Sequence[str]) -> dict[str, int]:
        """Assignments each annotator holds whose annotation is not yet submitted."""
        done = (
            select(Annotation.id)
            .where(
                Annotation.case_id == AnnotationAssignment.case_id,
                Annotation.annotator == AnnotationAssignment.annotator,
                Annotation.status == "submitted",
            )
            .exists()
        )
        stmt = (
            select(AnnotationAssignment.annotator, func.count())
            .where(AnnotationAssignment.annotator.in_(list(annotators)), ~done)
            .group_by(AnnotationAssignment.annotator)
        )
        return {a: n for a, n in (await self.session.execute(stmt)).all()}

    # --- reviews -------------------------------------------------------------------------
    async def last_adjudications(self, case_ids: Sequence[str]) -> dict[tuple[str, str], Any]:
        out: dict[tuple[str, str], Any] = {}
        for chunk in _chunks(list(case_ids)):
            stmt = (
                select(
                    AnnotationReview.case_id,
                    AnnotationReview.taxonomy,
                    func.max(AnnotationReview.created_at),
                )
                .where(
                    AnnotationReview.case_id.in_(chunk),
                    AnnotationReview.action == "adjudicated",
                )
                .group_by(AnnotationReview.case_id, AnnotationReview.taxonomy)
            )
            out.update({(c, t): at for c, t, at in (await self.session.execute(stmt)).all()})
        return out

    async def adjudicated_blind(
        self, case_ids: Sequence[str], reader: str, taxonomy: str
    ) -> set[str]:
        """The cases with an adjudication of `taxonomy` that `reader` annotates (assigned,
        or with an annotation) without having submitted theirs in it: one statement."""
        out: set[str] = set()
        stmt = _adjudicated_blind_stmt()
        for chunk in _chunks(list(case_ids)):
            params = {"ids": list(chunk), **blind_params(reader, taxonomy)}
            out.update((await self.session.execute(stmt, params)).scalars())
        return out

    async def reviews_of(self, case_ids: Sequence[str]) -> list[AnnotationReview]:
        out: list[AnnotationReview] = []
        for chunk in _chunks(list(case_ids)):
            stmt = (
                select(AnnotationReview)
                .where(AnnotationReview.case_id.in_(chunk))
                .order_by(AnnotationReview.created_at, AnnotationReview.id)
            )
            out += (await self.session.execute(stmt)).scalars()
        return out


class BoardRepository:
    """Every query of the review rituals: boards, sessions, agenda items."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, *rows: Any) -> None:
        self.session.add_all(rows)
        await self.session.flush()

    async def board(self, board_id: str, for_update: bool = False) -> ReviewBoard | None:
        stmt = select(ReviewBoard).where(ReviewBoard.id == board_id)
        if for_update:
            stmt = stmt.with_for_update()
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def board_named(self, team: str, name: str) -> ReviewBoard | None:
        stmt = select(ReviewBoard).where(ReviewBoard.team == team, ReviewBoard.name == name)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def boards(self, teams: Sequence[str] | None) -> list[ReviewBoard]:
        """Every board of `teams` (None: every team), by team then name."""
        stmt = select(ReviewBoard).order_by(ReviewBoard.team, ReviewBoard.name)
        if teams is not None:
            stmt = stmt.where(ReviewBoard.team.in_(list(teams)))
        return list((await self.session.execute(stmt)).scalars())

    async def sessions_of(self, board_ids: Sequence[str]) -> list[ReviewSession]:
        stmt = (
            select(ReviewSession)
            .where(ReviewSession.board_id.in_(list(board_ids)))
            .order_by(ReviewSession.board_id, ReviewSession.number)
        )
        return list((await self.session.execute(stmt)).scalars())

    async def review_session(
        self, session_id: str, for_update: bool = False
    ) -> ReviewSession | None:
        stmt = select(ReviewSession).where(ReviewSession.id == session_id)
        if for_update:
            stmt = stmt.with_for_update()
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def item(self, item_id: str, for_update: bool = False) -> ReviewAgendaItem | None:
        stmt = select(ReviewAgendaItem).where(ReviewAgendaItem.id == item_id)
        if for_update:
            stmt = stmt.with_for_update()
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def items_of(self, session_ids: Sequence[str]) -> list[ReviewAgendaItem]:
        stmt = (
            select(ReviewAgendaItem)
            .where(ReviewAgendaItem.session_id.in_(list(session_ids)))
            .order_by(ReviewAgendaItem.session_id, ReviewAgendaItem.position)
        )
        return list((await self.session.execute(stmt)).scalars())

    async def open_items_of_board(self, board_id: str) -> list[ReviewAgendaItem]:
        """The items of the board's sessions still open: what the next session carries."""
        stmt = (
            select(ReviewAgendaItem)
            .join(ReviewSession, ReviewSession.id == ReviewAgendaItem.session_id)
            .where(ReviewSession.board_id == board_id, ReviewAgendaItem.status == "open")
            .order_by(ReviewSession.number, ReviewAgendaItem.position)
            .with_for_update()
        )
        return list((await self.session.execute(stmt)).scalars())


# --- the blind-read rule on adjudicated (curated) values, as SQL -------------------------------
# Built once: the statement's shape never changes, only its bound values (blind_params), so
# SQLAlchemy compiles it once and a read pays for neither building nor compiling it.
_READER, _TAXONOMY = "blind_reader", "blind_taxonomy"


def blind_params(reader: str, taxonomy: str) -> dict[str, str]:
    """The values of the blind-read expression's parameters."""
    return {_READER: reader, _TAXONOMY: taxonomy}


@functools.cache
def curated_blind_condition(case_id: Any) -> Any:
    """True when the case whose id is `case_id` (a column) has an adjudication of the
    taxonomy that the reader annotates (assigned, or with an annotation of any taxonomy)
    without having submitted theirs in it. The one definition: the batch check below and the
    flag folded into a case read (services/annotation/service.visible_case_for) use it."""
    reader = bindparam(_READER, type_=String)
    taxonomy = bindparam(_TAXONOMY, type_=String)
    mine = Annotation.__table__.alias("blind_mine")
    theirs = Annotation.__table__.alias("blind_any")
    assigned = (
        select(AnnotationAssignment.case_id)
        .where(AnnotationAssignment.case_id == case_id, AnnotationAssignment.annotator == reader)
        .exists()
    )
    annotating = (
        select(theirs.c.id).where(theirs.c.case_id == case_id, theirs.c.annotator == reader)
    ).exists()
    submitted = (
        select(mine.c.id)
        .where(
            mine.c.case_id == case_id,
            mine.c.annotator == reader,
            mine.c.taxonomy == taxonomy,
            mine.c.status == "submitted",
        )
        .exists()
    )
    review = AnnotationReview.__table__.alias("blind_review")
    adjudicated = (
        select(review.c.id)
        .where(
            review.c.case_id == case_id,
            review.c.action == "adjudicated",
            review.c.taxonomy == taxonomy,
        )
        .exists()
    )
    return adjudicated & (assigned | annotating) & ~submitted


@functools.cache
def _adjudicated_blind_stmt() -> Any:
    review = AnnotationReview
    return (
        select(review.case_id)
        .where(
            review.case_id.in_(bindparam("ids", expanding=True)),
            review.action == "adjudicated",
            review.taxonomy == bindparam(_TAXONOMY, type_=String),
            curated_blind_condition(review.case_id),
        )
        .distinct()
    )
