"""Inputs of the sharing service (pydantic), and the mention syntax."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

MAX_BODY = 20_000
MAX_LESSON_TEXT = 20_000
MAX_EVIDENCE_GROUPS = 50
MAX_SUITES = 20
MIN_EVIDENCE_GROUPS = 2  # a lesson is a pattern: drawn from several groups
MAX_MENTIONS = 50

# `@alice` names a person (a username); `@team:payments-ml` a team. Not inside a word (an
# e-mail address mentions nobody); a trailing full stop ends the sentence, not the name.
MENTION = re.compile(r"(?<![\w@])@(team:)?([A-Za-z0-9][A-Za-z0-9._-]{0,119})")


class CommentKind(StrEnum):
    COMMENT = "comment"
    PROPOSED_MEASURE = "proposed_measure"


class TargetKind(StrEnum):
    CASE = "case"
    GROUP = "group"


class LessonStatus(StrEnum):
    DRAFT = "draft"
    REVIEWED = "reviewed"


def parse_mentions(body: str) -> dict[str, list[str]]:
    """{"people": [...], "teams": [...]}, each in order of first mention."""
    people: dict[str, None] = {}
    teams: dict[str, None] = {}
    for match in MENTION.finditer(body):
        name = match.group(2).rstrip(".-_")
        if not name:
            continue
        (teams if match.group(1) else people)[name] = None
    return {
        "people": list(people)[:MAX_MENTIONS],
        "teams": list(teams)[:MAX_MENTIONS],
    }


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Body = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_BODY)]
LessonText = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_LESSON_TEXT)
]


class CommentIn(_In):
    body: Body
    kind: CommentKind = CommentKind.COMMENT


class SuiteRef(_In):
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    version: int | None = Field(default=None, ge=1)  # the latest when left out


class LessonIn(_In):
    """Written for readers who are not specialists: what happened, why it matters to users
    and operators, the mitigation that worked, and what it cost against the alternatives."""

    title: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=300)]
    what_happened: LessonText
    why_it_matters: LessonText
    mitigation: LessonText
    cost: LessonText
    evidence_group_ids: Annotated[
        list[str], Field(min_length=MIN_EVIDENCE_GROUPS, max_length=MAX_EVIDENCE_GROUPS)
    ]
    suites: Annotated[list[SuiteRef], Field(max_length=MAX_SUITES)] = []
