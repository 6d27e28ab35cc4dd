"""schema.graphql is the checked-in contract: it must equal the schema the code builds."""

from __future__ import annotations

import difflib

from services.gateway.sdl import SDL_PATH, current_sdl


def test_checked_in_sdl_matches_the_code():
    assert SDL_PATH.exists(), "schema.graphql is missing: run `make schema`"
    checked_in, code = SDL_PATH.read_text(), current_sdl()
    diff = "".join(
        difflib.unified_diff(
            checked_in.splitlines(keepends=True),
            code.splitlines(keepends=True),
            "schema.graphql",
            "code",
        )
    )
    assert not diff, f"the schema changed; review and run `make schema`:\n{diff}"


def test_contract_names_other_tools_rely_on():
    sdl = current_sdl()
    for needle in (
        "case(id: ID!",
        "cases(filter: CaseFilterInput",
        "search(query: String!",
        "ingestCases(cases: [CaseInput!]!): [IngestResult!]!",
        "updateCase(id: ID!, patch: CasePatchInput!, expectedRevision: Int!",
        "caseEvents(filter: CaseEventFilterInput",
    ):
        assert needle in sdl, needle
