"""Cases with the relations their answers show, in ONE query: a page of search hits, or the
one case of a REST read.

A case answer carries the case as the catalog renders it (REST) or as GraphQL's FailureCase
(whose model, version, source and links the gateway's loaders serve). Loading them the
catalog's general way costs a query per table (cases, models, versions, sources, links): five
round trips, most of what a served search spent beyond the engine and what a REST case read
spent beyond GraphQL's. Here the case row is joined to its model, version and source, and
(when asked) outer-joined to its links, by primary key.

The case comes as a row of its columns, read by name as an entity's attributes are: building
its ORM entity cost ~0.7 of the 4 ms a 20-hit page took to hydrate and render. GraphQL
(`hit_cases`) takes the model, version, source and links as records of their columns (which
its loaders are primed with, and its types read by name, as an entity's attributes), and the
case's JSON columns as text, decoded only if a field reads them (`LazyCase`); REST
(`case_answers`) takes only the relations' names, and renders the rows straight to its JSON.
Neither goes through the ORM's loading of entities: for the four relations of 20 hits it was
about half of what GraphQL's hydration cost.

Visibility is the catalog's rule (`visible_cases_clause`), applied in the same statement: a
case the caller may not see is simply absent, as with `get_cases`, and so is a case
retention purged whole (a tombstone is no live case: RETENTION.md). The annotation service's
blind-read rule is a column of the same statement (its `curated_blind_condition`, as
`case(id)` folds it): REST nulls the adjudicated curated fields it withholds, and GraphQL's
curated fields read the flag from their loader, primed here, instead of a query of their
own. Redaction stays where it is, in the catalog's `case_json` and the gateway's field
resolvers, which read these rows. The statement lives beside the catalog's repository, not in
it, because one of its columns is the annotation service's rule.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import (
    ARRAY,
    JSON,
    Row,
    Select,
    String,
    Text,
    any_,
    bindparam,
    cast,
    column,
    func,
    literal_column,
    select,
)
from sqlalchemy.ext.asyncio import AsyncSession

from services.annotation.service import blind_params, curated_blind_condition
from services.annotation.taxonomies import FAILCAT
from services.catalog import service as catalog
from services.catalog.models import CaseLink, DataSource, FailureCase, Model, ModelVersion
from services.catalog.repository.cases import T_CASE
from services.catalog.views import PageRelations, case_json
from shared import audit
from shared.db import json_value
from shared.redaction import hide_blinded
from shared.security import Principal
from shared.visibility import Visibility


class LazyCase:
    """A hit's case row whose JSON columns (input, prediction, signals ...) arrive as their
    text and are decoded when first read: a page of hits is mostly listed by its title,
    severity and status, and decoding the ~140 JSON values of 20 cases through the driver's
    codec cost ~0.2 ms of a search's ~2.5 ms hydration (in process, Postgres). Reads by
    name, as GraphQL's FailureCase reads an entity or a row; each attribute once."""

    def __init__(self, row: Row[Any]) -> None:
        self._row = row

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._row, name)
        if name in _JSON_COLUMNS and value is not None:
            value = json_value(value)
        self.__dict__[name] = value
        return value


@dataclass(slots=True)
class HitCase:
    # The case's columns by name (a row, not an entity: see the module's docstring), as
    # GraphQL's FailureCase reads them; its relations as records of their columns.
    case: LazyCase
    model: Any
    version: Any
    source: Any
    # The blind-read rule withholds the case's adjudicated curated fields from the caller.
    blinded: bool = False
    links: list[Any] = field(default_factory=list)


# How a statement carries an audit entry (Postgres): not at all; a search's, appended always
# (shared.audit.take_along); or a one-case read's, appended when the case is found.
ALONG_NONE, ALONG_ALWAYS, ALONG_FOUND = 0, 1, 2

# What a statement selects beside the case's columns: its relations' columns (GraphQL primes
# its loaders with their records), or only their names and the links' fields (REST).
RECORDS, NAMES = False, True

_CASE_WIDTH = len(T_CASE.c)
_JSON_COLUMNS = frozenset(c.name for c in T_CASE.c if isinstance(c.type, JSON))

# The relations a RECORDS row carries after the case's columns and the blind-read flag, in
# this order (the links last: selected only when asked for).
_RELATIONS = (Model, ModelVersion, DataSource, CaseLink)
_MODEL, _VERSION, _SOURCE, _LINK = range(len(_RELATIONS))


def _record_layout() -> list[tuple[Any, int, int]]:
    """Per relation: its record (a namedtuple of its columns, which GraphQL's types read by
    name as an entity's attributes), and where its columns start and end in a RECORDS row."""
    layout, start = [], _CASE_WIDTH + 1
    for entity in _RELATIONS:
        names = [c.name for c in entity.__table__.c]
        record = namedtuple(f"{entity.__tablename__}_record", names)
        layout.append((record, start, start + len(names)))
        start += len(names)
    return layout


_LAYOUT = _record_layout()

# Statements by (dialect, caller's view, links, entry along, names): a handful per deployment.
_STATEMENTS: dict[tuple[str, Visibility, bool, int, bool], Select[Any]] = {}


def _statement(
    dialect: str, viewer: Principal, links: bool, along: int, names: bool
) -> Select[Any]:
    """Built once per caller's view: building and keying a statement over five tables cost
    more CPU than running it. The catalog's visibility clause depends on the view only
    (team and clearance); the ids are bound per call."""
    key = (dialect, Visibility.of(viewer), links, along, names)
    stmt = _STATEMENTS.get(key)
    if stmt is None:
        if len(_STATEMENTS) >= 256:
            _STATEMENTS.clear()
        where = _where(dialect, viewer)
        stmt = _build(where, links, names)
        if along == ALONG_ALWAYS:
            stmt = stmt.add_cte(*audit.read_entry_ctes(None))
        elif along == ALONG_FOUND:  # the same rows, as an EXISTS the entry's CTEs are guarded by
            found = select(literal_column("1")).select_from(T_CASE).where(*where).correlate(None)
            stmt = stmt.add_cte(*audit.read_entry_ctes(found.exists()))
        _STATEMENTS[key] = stmt
    return stmt


def _where(dialect: str, viewer: Principal) -> tuple[Any, ...]:
    return (
        _id_among(dialect),
        catalog.visible_cases_clause(viewer),
        FailureCase.purged_at.is_(None),
    )


def _build(where: tuple[Any, ...], links: bool, names: bool) -> Select[Any]:
    blinded = curated_blind_condition(FailureCase.id).label("hit_blinded")
    if names:  # labels no case column has
        columns: list[Any] = [
            *T_CASE.c,
            Model.name.label("hit_model"),
            ModelVersion.version.label("hit_version"),
            DataSource.name.label("hit_source"),
            blinded,
        ]
        if links:
            columns += [
                CaseLink.id.label("hit_link_id"),
                CaseLink.kind.label("hit_link_kind"),
                CaseLink.url.label("hit_link_url"),
                CaseLink.title.label("hit_link_title"),
            ]
    else:  # the case's columns by their names (GraphQL reads them so), the relations' after
        columns = [*map(_as_text, T_CASE.c), blinded]
        for entity in _RELATIONS if links else _RELATIONS[:_LINK]:
            table = entity.__table__
            columns += [c.label(f"hit_{table.name}_{c.name}") for c in table.c]
    stmt = (
        select(*columns)
        .join_from(T_CASE, Model, Model.id == FailureCase.model_id)
        .join(ModelVersion, ModelVersion.id == FailureCase.model_version_id)
        .join(DataSource, DataSource.id == FailureCase.data_source_id)
        .where(*where)
    )
    if links:
        stmt = stmt.outerjoin(CaseLink, CaseLink.case_id == FailureCase.id).order_by(CaseLink.id)
    return stmt


def _as_text(col: Any) -> Any:
    """A JSON column as its text (LazyCase decodes it when read), any other as it is. The
    cast is what Postgres sends for JSONB anyway; on SQLite the text is what is stored."""
    if col.name not in _JSON_COLUMNS:
        return col
    return cast(col, Text).label(col.name)


# The ids as ONE bound value: an array on Postgres, a JSON array on SQLite (as the ingest's
# lookups bind theirs: repository/base.py). SQLAlchemy's expanding IN rendered the statement
# anew and processed a parameter per id on every call, ~0.15 ms of a page's hydration, and
# made as many statements (and server-side prepared plans) as there are page lengths.
def _id_among(dialect: str) -> Any:
    if dialect == "postgresql":
        return FailureCase.id == any_(bindparam("ids", type_=ARRAY(String)))
    ids = select(column("value")).select_from(func.json_each(bindparam("ids")))
    return FailureCase.id.in_(ids.scalar_subquery())


def _ids_value(dialect: str, ids: Sequence[str]) -> Any:
    return list(ids) if dialect == "postgresql" else orjson.dumps(list(ids)).decode()


async def _execute(
    session: AsyncSession,
    ids: Sequence[str],
    viewer: Principal,
    links: bool,
    names: bool,
    read_entry: audit.Staged | None,
) -> tuple[Any, bool]:
    """The statement's result for `ids`, and whether `read_entry` is recorded already.

    The search's audit entry, staged on `session` before this is called, is appended by the
    same statement on Postgres (shared.audit.take_along): no round trip of its own at commit.
    `read_entry` (a one-case read's, shared.audit.entry) is recorded only when the case is
    found: on Postgres by the same statement, on SQLite on the read's own trip
    (shared.audit.read_appending) outside a write; the caller stages it otherwise."""
    dialect = session.sync_session.get_bind().dialect.name
    params = {"ids": _ids_value(dialect, ids), **blind_params(viewer.subject, FAILCAT)}
    if read_entry is not None:  # a one-case read: no search entry is staged
        mode = ALONG_FOUND if audit.folds_reads(session) else ALONG_NONE
        if mode == ALONG_FOUND:
            params.update(audit.read_entry_params(read_entry))
    else:
        along = audit.take_along(session)
        mode = ALONG_NONE if along is None else ALONG_ALWAYS
        params.update(along or {})
    stmt = _statement(dialect, viewer, links, mode, names)
    return await audit.execute_read(session, stmt, params, read_entry, rows=True)


async def hit_cases(
    session: AsyncSession,
    ids: Sequence[str],
    viewer: Principal,
    *,
    links: bool = True,
    read_entry: audit.Staged | None = None,
) -> dict[str, HitCase]:
    """The visible cases among `ids` by id, each with its model, version and source, and its
    links (ordered as the catalog orders them) when `links`: the relations as records of
    their columns, for GraphQL's loaders. The audit entries as `_execute` says."""
    if not ids:
        return {}
    result, recorded = await _execute(session, ids, viewer, links, RECORDS, read_entry)
    out: dict[str, HitCase] = {}
    # One record per model, version and source of the page, as one entity per identity was.
    records: dict[tuple[int, Any], Any] = {}

    def record(row: Row[Any], kind: int) -> Any:
        make, start, end = _LAYOUT[kind]
        found = records.get((kind, row[start]))
        if found is None:
            found = records[(kind, row[start])] = make._make(row[start:end])
        return found

    link, link_start, link_end = _LAYOUT[_LINK]
    for row in result:
        found = out.get(row.id)
        if found is None:
            found = out[row.id] = HitCase(
                LazyCase(row),
                record(row, _MODEL),
                record(row, _VERSION),
                record(row, _SOURCE),
                blinded=bool(row[_CASE_WIDTH]),
            )
        if links and row[link_start] is not None:
            found.links.append(link._make(row[link_start:link_end]))
    if read_entry is not None and out and not recorded:
        audit.stage(session, read_entry)
    return out


async def case_answers(
    session: AsyncSession,
    ids: Sequence[str],
    viewer: Principal,
    *,
    read_entry: audit.Staged | None = None,
) -> dict[str, dict[str, Any]]:
    """The visible cases among `ids` by id, in the catalog's wire format (`case_json`, which
    redacts for `viewer`) with their names and links, the blinded curated fields nulled (as
    the catalog's REST case reads null them): what REST answers, from plain rows. The audit
    entries as `_execute` says."""
    if not ids:
        return {}
    result, recorded = await _execute(session, ids, viewer, True, NAMES, read_entry)
    refs = PageRelations()
    cases: dict[str, Any] = {}
    for row in result:
        case_id = row.id
        if case_id not in cases:
            cases[case_id] = row
            refs.models[row.model_id] = row.hit_model
            refs.versions[row.model_version_id] = row.hit_version
            refs.sources[row.data_source_id] = row.hit_source
        if row.hit_link_id is not None:
            link = {"kind": row.hit_link_kind, "url": row.hit_link_url, "title": row.hit_link_title}
            refs.links.setdefault(case_id, []).append(link)
    if read_entry is not None and cases and not recorded:
        audit.stage(session, read_entry)
    return {
        case_id: dict(hide_blinded(case_json(row, refs, viewer=viewer), row.hit_blinded))
        for case_id, row in cases.items()
    }
