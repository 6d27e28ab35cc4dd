"""Auth point 6: every GraphQL root field declares its scopes, every type declares the scopes it
is read under, and every operation is allowed or denied to every role as declared."""

from __future__ import annotations

import secrets

import pytest
import strawberry
from strawberry.types.base import StrawberryList, StrawberryOptional

from services.gateway.permissions import declared_scopes, required_scopes
from services.gateway.schema import build_schema
from shared.security import ROLES, Scope
from tests.catalog.builders import unique
from tests.corpus import aiid_cases
from tests.gateway.helpers import INGEST, case_input, codes, data, gql

R, W, ING, A = Scope.CASES_READ, Scope.CASES_WRITE, Scope.CASES_INGEST, Scope.ADMIN

# What each operation requires: written here, independently of the code, so a change to a
# field's declaration shows up as a failing test and a visible diff in review.
EXPECTED: dict[str, set[Scope]] = {
    "Query.case": {R},
    "Query.cases": {R},
    "Query.group": {R},
    "Query.groups": {R},
    "Query.models": {R},
    "Query.taxonomy": {R},
    "Query.taxonomyVersions": {R},
    "Query.severityRubric": {R},
    "Query.samplingRules": {R},
    "Query.search": {R},
    "Query.clients": {A},
    "Query.client": {A},
    "Query.users": {A},
    "Mutation.ingestCases": {ING},
    "Mutation.updateCase": {W, R},
    "Mutation.setCaseStatus": {W, R},
    "Mutation.mergeCase": {W, R},
    "Mutation.resolveGroup": {W, R},
    "Mutation.registerModelVersion": {W, R},
    "Mutation.publishTaxonomy": {A},
    "Mutation.setSamplingRule": {A},
    "Mutation.createClient": {A},
    "Mutation.rotateClientSecret": {A},
    "Mutation.disableClient": {A},
    "Mutation.createUser": {A},
    "Mutation.rotateSigningKeys": {A},
    "Subscription.caseEvents": {R},
    "Query.contextEvents": {R},
    "Mutation.recordContextEvent": {ING, W},
}
# Operations allowed with any one of their scopes (the rest need every one).
ANY_OF = {"Mutation.recordContextEvent"}

MISSING = "00000000-0000-0000-0000-000000000000"
# One document per operation, with inputs that change nothing when allowed (unknown ids,
# refused values), except where the admin's success is itself harmless.
OPERATIONS: dict[str, tuple[str, dict]] = {
    "Query.case": ("query($id: ID!) { case(id: $id) { id } }", {"id": MISSING}),
    "Query.cases": ("{ cases(first: 1) { nodes { id } } }", {}),
    "Query.group": ("query($id: ID!) { group(id: $id) { id } }", {"id": MISSING}),
    "Query.groups": ("{ groups(first: 1) { nodes { id } } }", {}),
    "Query.models": ("{ models { name } }", {}),
    "Query.taxonomy": ("{ taxonomy { code } }", {}),
    "Query.taxonomyVersions": ("{ taxonomyVersions { version } }", {}),
    "Query.severityRubric": ("{ severityRubric { grade } }", {}),
    "Query.samplingRules": ("{ samplingRules { modelName } }", {}),
    "Query.search": ('{ search(query: "matrix", first: 1) { total } }', {}),
    "Query.clients": ("{ clients { clientId } }", {}),
    "Query.client": ("query($c: String!) { client(clientId: $c) { name } }", {"c": "nope"}),
    "Query.users": ("{ users { username } }", {}),
    "Mutation.ingestCases": ("mutation { ingestCases(cases: []) { id } }", {}),
    "Mutation.updateCase": (
        'mutation($id: ID!) { updateCase(id: $id, patch: {title: "t"}, expectedRevision: 1)'
        " { id } }",
        {"id": MISSING},
    ),
    "Mutation.setCaseStatus": (
        "mutation($id: ID!) { setCaseStatus(id: $id, status: TRIAGED, expectedRevision: 1)"
        " { id } }",
        {"id": MISSING},
    ),
    "Mutation.mergeCase": (
        "mutation($id: ID!) { mergeCase(id: $id, into: $id, expectedRevision: 1) { id } }",
        {"id": MISSING},
    ),
    "Mutation.resolveGroup": (
        'mutation($id: ID!) { resolveGroup(id: $id, fixedInVersion: "1") { id } }',
        {"id": MISSING},
    ),
    "Mutation.registerModelVersion": (
        'mutation { registerModelVersion(model: "", version: "1") { id } }',
        {},
    ),
    "Mutation.publishTaxonomy": (
        'mutation { publishTaxonomy(codes: [{code: "no_parent.child"}]) { version } }',
        {},
    ),
    "Mutation.setSamplingRule": (
        'mutation { setSamplingRule(rule: {modelName: "m", dataSource: "s", dailyCap: 0}) { id } }',
        {},
    ),
    "Mutation.createClient": (
        'mutation($n: String!) { createClient(client: {name: $n, scopes: ["no:such"]})'
        " { clientSecret } }",
        {"n": "matrix"},
    ),
    "Mutation.rotateClientSecret": (
        'mutation { rotateClientSecret(clientId: "nope") { clientSecret } }',
        {},
    ),
    "Mutation.disableClient": ('mutation { disableClient(clientId: "nope") { name } }', {}),
    "Mutation.createUser": (
        'mutation { createUser(user: {username: "m", password: "short", roles: ["viewer"]})'
        " { id } }",
        {},
    ),
    "Mutation.rotateSigningKeys": ("mutation { rotateSigningKeys { kid } }", {}),
    "Query.contextEvents": ("{ contextEvents(first: 1) { nodes { id } } }", {}),
    "Mutation.recordContextEvent": (
        "mutation { recordContextEvent(event: {kind: DEPLOY}) { id } }",
        {},
    ),
}


def _root_fields():
    schema = build_schema()
    for root in ("Query", "Mutation", "Subscription"):
        definition = schema.get_type_by_name(root)
        for field in definition.fields:
            yield f"{root}.{schema.config.name_converter.get_graphql_name(field)}", field


def _named(type_):
    while isinstance(type_, (StrawberryList, StrawberryOptional)):
        type_ = type_.of_type
    return getattr(type_, "__strawberry_definition__", None) and type_


def _reachable(cls, seen=None):
    """Every object type reachable from `cls` through its fields."""
    seen = seen if seen is not None else {}
    if cls is None or cls in seen:
        return seen
    definition = cls.__strawberry_definition__
    if definition.is_input:
        return seen
    seen[cls] = definition.name
    for field in definition.fields:
        _reachable(_named(field.type), seen)
    return seen


def _return_type(field):
    return _named(field.type)  # a subscription's type is already its payload's


def test_every_root_field_declares_its_scopes_and_covers_what_it_returns():
    undeclared, uncovered, missing_types, fields = [], [], set(), set()
    for name, field in _root_fields():
        fields.add(name)
        scopes = required_scopes(field)
        if not scopes:
            undeclared.append(name)
            continue
        if name in EXPECTED:
            assert scopes == EXPECTED[name], f"{name} requires {scopes}, expected {EXPECTED[name]}"
        any_of = any(getattr(p, "any_of", False) for p in field.permission_classes)
        assert any_of == (name in ANY_OF), f"{name}: any-of declaration differs"
        for cls, type_name in _reachable(_return_type(field)).items():
            needs = declared_scopes(cls)
            if needs is None:
                missing_types.add(type_name)
            elif Scope.ADMIN not in scopes and not needs <= (set() if any_of else scopes):
                uncovered.append(f"{name} returns {type_name} (read with {set(needs)})")
    assert not undeclared, f"root fields without a scope declaration: {undeclared}"
    assert not missing_types, f"types without @read_with: {sorted(missing_types)}"
    assert not uncovered, uncovered
    assert fields == set(EXPECTED), f"update EXPECTED: {fields ^ set(EXPECTED)}"


@pytest.fixture(scope="module")
async def role_tokens(token_for):
    return {
        role: await token_for(" ".join(sorted(s.value for s in scopes)), clearance="restricted")
        for role, scopes in ROLES.items()
    }


@pytest.mark.parametrize("role", sorted(ROLES))
async def test_authorization_matrix(client, role_tokens, role):
    granted = ROLES[role]
    wrong = []
    for name, (query, variables) in OPERATIONS.items():
        variables = {
            k: (f"{v}-{secrets.token_hex(2)}" if k == "n" else v) for k, v in variables.items()
        }
        body = await gql(client, role_tokens[role], query, variables)
        allowed = Scope.ADMIN in granted or (
            bool(EXPECTED[name] & granted) if name in ANY_OF else EXPECTED[name] <= granted
        )
        denied = "FORBIDDEN" in codes(body)
        if denied == allowed:
            wrong.append(f"{name}: {'denied' if denied else 'allowed'} ({codes(body)})")
        if denied:
            assert body["errors"][0]["message"].startswith("insufficient_scope")
    assert not wrong, f"role {role}: {wrong}"


def test_every_operation_is_in_the_matrix():
    assert set(OPERATIONS) == set(EXPECTED) - {"Subscription.caseEvents"}


# --- visibility: every operation taking an id answers NOT_FOUND for what the caller can't see

# Per root field taking an ID: a document, and what each of its ID arguments names. The walk
# below derives the field list from the schema, so a new field with an ID fails here until it
# is listed (and so proven to hide what its caller may not see).
BY_ID: dict[str, tuple[str, dict[str, str]]] = {
    "Query.case": ("query($id: ID!) { case(id: $id) { id title } }", {"id": "case"}),
    "Query.group": ("query($id: ID!) { group(id: $id) { id caseCount } }", {"id": "group"}),
    "Mutation.updateCase": (
        'mutation($id: ID!) { updateCase(id: $id, patch: {title: "seen"}, expectedRevision: 1)'
        " { id } }",
        {"id": "case"},
    ),
    "Mutation.setCaseStatus": (
        "mutation($id: ID!) { setCaseStatus(id: $id, status: TRIAGED, expectedRevision: 1)"
        " { id } }",
        {"id": "case"},
    ),
    "Mutation.mergeCase": (
        "mutation($id: ID!, $into: ID!) { mergeCase(id: $id, into: $into, expectedRevision: 1)"
        " { id } }",
        {"id": "case", "into": "case"},
    ),
    "Mutation.resolveGroup": (
        'mutation($id: ID!) { resolveGroup(id: $id, fixedInVersion: "1.0") { id } }',
        {"id": "group"},
    ),
}


def _takes_id(field) -> list[str]:
    names = []
    for arg in field.arguments:
        type_ = arg.type
        while isinstance(type_, (StrawberryList, StrawberryOptional)):
            type_ = type_.of_type
        if type_ is strawberry.ID:
            names.append(arg.python_name)
    return names


def test_every_root_field_taking_an_id_is_in_the_visibility_walk():
    taking = {
        name: _takes_id(field)
        for name, field in _root_fields()
        if not name.startswith("Subscription.") and _takes_id(field)
    }
    assert set(taking) == set(BY_ID), f"update BY_ID: {set(taking) ^ set(BY_ID)}"
    for name, ids in taking.items():
        assert set(ids) == set(BY_ID[name][1]), f"{name} takes ids {ids}"


async def test_a_caller_who_cannot_see_the_target_gets_not_found_and_nothing_changes(
    client, token_for, admin_token
):
    salt = secrets.token_hex(3)
    team, other = f"vis-a-{salt}", f"vis-b-{salt}"
    writer = "cases:read cases:write cases:ingest"
    owner = await token_for(writer, team=team, clearance="restricted")
    # One case per way of being hidden, each in a group of its own, plus one the caller sees.
    [hidden_team, hidden_clearance, visible] = unique(aiid_cases(3))
    hidden_team.update(team=team, sensitivity="internal", fingerprint=f"vis-team-{salt}")
    hidden_clearance.update(team=team, sensitivity="restricted", fingerprint=f"vis-clr-{salt}")
    visible.update(team=None, sensitivity="public", fingerprint=f"vis-ok-{salt}")
    for c in (hidden_team, hidden_clearance, visible):
        c["model"] = {"name": f"vis-model-{salt}", "version": "1.0"}
    body = await gql(
        client,
        owner,
        INGEST,
        {"cases": [case_input(c) for c in (hidden_team, hidden_clearance, visible)]},
    )
    ids = [r["id"] for r in data(body)["ingestCases"]]
    group_of = "query($id: ID!) { case(id: $id) { group { id } } }"
    groups = [
        data(await gql(client, owner, group_of, {"id": i}))["case"]["group"]["id"] for i in ids
    ]
    targets = {
        # (hidden case, its group, a caller with every scope who may not see it)
        "other team": (
            ids[0],
            groups[0],
            await token_for(writer, team=other, clearance="restricted"),
        ),
        "lower clearance": (
            ids[1],
            groups[1],
            await token_for(writer, team=team, clearance="confidential"),
        ),
    }
    before = await _snapshot(client, admin_token, ids, groups)

    wrong = []
    for why, (case_id, group_id, caller) in targets.items():
        hidden = {"case": case_id, "group": group_id}
        seen = {"case": ids[2], "group": groups[2]}
        for name, (query, args) in BY_ID.items():
            # Each ID argument in turn names the hidden target; the others name visible ones.
            for arg in args:
                variables = {a: (hidden if a == arg else seen)[kind] for a, kind in args.items()}
                got = await gql(client, caller, query, variables)
                if codes(got) != ["NOT_FOUND"] or got.get("data"):
                    wrong.append(f"{name}({arg}) for {why}: {got}")
        # An id inside a filter is not a lookup: the page is empty, as for an unknown id.
        listed = await gql(
            client,
            caller,
            "query($g: ID!) { cases(filter: {groupId: $g}) { nodes { id } } }",
            {"g": group_id},
        )
        if data(listed)["cases"]["nodes"]:
            wrong.append(f"cases(filter: {{groupId}}) for {why}: {listed}")
    assert not wrong, wrong
    assert await _snapshot(client, admin_token, ids, groups) == before


async def _snapshot(client, token, ids, groups):
    query = """query($id: ID!, $g: ID!) { case(id: $id) { revision title status mergedIntoId
               lastRevision { revision } } group(id: $g) { status resolvedInVersion } }"""
    return [
        data(await gql(client, token, query, {"id": i, "g": g}))
        for i, g in zip(ids, groups, strict=True)
    ]
