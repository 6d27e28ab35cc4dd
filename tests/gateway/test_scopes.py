"""Auth point 6: every GraphQL root field declares its scopes, every type declares the scopes it
is read under, and every operation is allowed or denied to every role as declared."""

from __future__ import annotations

import secrets

import pytest
from strawberry.types.base import StrawberryList, StrawberryOptional

from services.gateway.permissions import declared_scopes, required_scopes
from services.gateway.schema import build_schema
from shared.security import ROLES, Scope
from tests.gateway.helpers import codes, gql

R, W, ING, A = Scope.CASES_READ, Scope.CASES_WRITE, Scope.CASES_INGEST, Scope.ADMIN
ANN, REV = Scope.ANNOTATIONS_WRITE, Scope.REVIEWS_WRITE

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
    "Mutation.publishTaxonomy": {A},
    "Mutation.setSamplingRule": {A},
    "Mutation.createClient": {A},
    "Mutation.rotateClientSecret": {A},
    "Mutation.disableClient": {A},
    "Mutation.createUser": {A},
    "Mutation.rotateSigningKeys": {A},
    "Subscription.caseEvents": {R},
    "Query.annotationTaxonomies": {R},
    "Query.annotationTaxonomy": {R},
    "Query.annotationQueue": {ANN, R},
    "Query.agreement": {R},
    "Mutation.submitAnnotation": {ANN, R},
    "Mutation.assignAnnotators": {REV, R},
    "Mutation.adjudicate": {REV, R},
    "Mutation.sendBack": {REV, R},
}

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
    "Query.annotationTaxonomies": ("{ annotationTaxonomies { name } }", {}),
    "Query.annotationTaxonomy": ('{ annotationTaxonomy(name: "failcat") { version } }', {}),
    "Query.annotationQueue": ("{ annotationQueue(kind: ASSIGNED) { nodes { overlap } } }", {}),
    "Query.agreement": ('{ agreement(taxonomy: "failcat", field: "severity") { n } }', {}),
    "Mutation.submitAnnotation": (
        'mutation($id: ID!) { submitAnnotation(caseId: $id, taxonomy: "failcat", values: {})'
        " { id } }",
        {"id": MISSING},
    ),
    "Mutation.assignAnnotators": (
        'mutation($id: ID!) { assignAnnotators(caseIds: [$id], annotators: ["a"], overlap: 1)'
        " { annotator } }",
        {"id": MISSING},
    ),
    "Mutation.adjudicate": (
        'mutation($id: ID!) { adjudicate(caseId: $id, taxonomy: "failcat", values: {},'
        " expectedRevision: 1) { id } }",
        {"id": MISSING},
    ),
    "Mutation.sendBack": (
        'mutation($id: ID!) { sendBack(caseId: $id, comment: "c") { id } }',
        {"id": MISSING},
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
        for cls, type_name in _reachable(_return_type(field)).items():
            needs = declared_scopes(cls)
            if needs is None:
                missing_types.add(type_name)
            elif Scope.ADMIN not in scopes and not needs <= scopes:
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
        allowed = Scope.ADMIN in granted or EXPECTED[name] <= granted
        denied = "FORBIDDEN" in codes(body)
        if denied == allowed:
            wrong.append(f"{name}: {'denied' if denied else 'allowed'} ({codes(body)})")
        if denied:
            assert body["errors"][0]["message"].startswith("insufficient_scope")
    assert not wrong, f"role {role}: {wrong}"


def test_every_operation_is_in_the_matrix():
    assert set(OPERATIONS) == set(EXPECTED) - {"Subscription.caseEvents"}
