"""Auth point 6: every GraphQL root field declares its scopes, every type declares the scopes it
is read under, and every operation is allowed or denied to every role as declared."""

from __future__ import annotations

import json
import secrets

import pytest
import strawberry
from sqlalchemy import text
from strawberry.types.base import StrawberryList, StrawberryOptional

from services.gateway.permissions import declared_scopes, required_scopes
from services.gateway.schema import build_schema
from shared.security import ROLES, Scope
from tests.catalog.builders import unique
from tests.corpus import aiid_cases
from tests.gateway.helpers import INGEST, case_input, codes, data, gql

R, W, ING, A = Scope.CASES_READ, Scope.CASES_WRITE, Scope.CASES_INGEST, Scope.ADMIN
EV, REV = Scope.EVALS_WRITE, Scope.REVIEWS_WRITE
PR, PW = Scope.PLANS_READ, Scope.PLANS_WRITE
ANN = Scope.ANNOTATIONS_WRITE

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
    "Query.writeupTemplate": {R},
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
    "Query.suite": {R},
    "Query.suites": {R},
    "Query.evaluationRun": {R},
    "Query.evaluationRuns": {R},
    "Query.compareRuns": {R},
    "Query.releaseGate": {R},
    "Query.gateWaivers": {R},
    "Mutation.createSuite": {W, R},
    "Query.retrainingPlan": {PR},
    "Query.retrainingPlans": {PR},
    "Query.evaluationPlan": {PR},
    "Query.impactMetrics": {PR, R},
    "Mutation.createRetrainingPlan": {PW, PR},
    "Mutation.setRetrainingPlanStatus": {PW, PR},
    "Mutation.evaluateRetrainingPlan": {PW, PR},
    "Mutation.createEvaluationPlan": {PW, PR},
    "Mutation.reviseEvaluationPlan": {PW, PR},
    "Mutation.generateScenarios": {W, R},
    "Query.scenarios": {R},
    "Mutation.recordEvaluationRun": {EV, R},
    "Mutation.acceptResolution": {REV, R},
    "Mutation.waiveGroup": {REV, R},
    "Mutation.revokeWaiver": {REV, R},
    "Query.annotationTaxonomies": {R},
    "Query.auditLog": {Scope.AUDIT_READ},
    "Query.annotationTaxonomy": {R},
    "Query.annotationQueue": {ANN, R},
    "Query.agreement": {R},
    "Mutation.submitAnnotation": {ANN, R},
    "Mutation.assignAnnotators": {REV, R},
    "Mutation.adjudicate": {REV, R},
    "Mutation.sendBack": {REV, R},
    "Query.reviewBoards": {R},
    "Query.reviewBoard": {R},
    "Query.reviewSession": {R},
    "Mutation.createReviewBoard": {REV, R},
    "Mutation.openReviewSession": {REV, R},
    "Mutation.recordReviewDecision": {REV, R},
    "Mutation.closeReviewSession": {REV, R},
    "Query.contextEvents": {R},
    "Mutation.recordContextEvent": {ING, W},
    "Query.escalationRules": {W, R},
    "Query.escalationDeliveries": {W, R},
    "Query.releaseBlocks": {R},
    "Mutation.createEscalationRule": {W, R},
    "Mutation.setEscalationRuleEnabled": {W, R},
    "Mutation.liftReleaseBlock": {REV, R},
    "Query.retentionPolicies": {A},
    "Mutation.setRetentionPolicy": {A},
    "Mutation.setLegalHold": {REV, R},
    "Query.redactionPolicies": {A},
    "Mutation.setRedactionPolicy": {A},
    "Query.comments": {R},
    "Query.lessons": {R},
    "Query.lesson": {R},
    "Mutation.addComment": {ANN, R},
    "Mutation.acceptProposedMeasure": {PW, PR, R},
    "Mutation.createLesson": {W, R},
    "Mutation.reviewLesson": {REV, R},
    "Query.capturePolicy": {R},
    "Mutation.setCapturePolicy": {A},
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
    "Query.writeupTemplate": ('{ writeupTemplate(failureMode: "safety") { family } }', {}),
    "Query.samplingRules": ("{ samplingRules { modelName } }", {}),
    "Query.search": ('{ search(query: "matrix", first: 1) { total } }', {}),
    "Query.auditLog": ("{ auditLog(first: 1) { nodes { seq } } }", {}),
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
    "Query.suite": ('{ suite(name: "no-such-suite") { name } }', {}),
    "Query.suites": ('{ suites(model: "no-such-model") { name } }', {}),
    "Query.evaluationRun": ("query($id: ID!) { evaluationRun(id: $id) { id } }", {"id": MISSING}),
    "Query.evaluationRuns": ('{ evaluationRuns(model: "m", version: "1") { id } }', {}),
    "Query.compareRuns": (
        "query($id: ID!) { compareRuns(a: $id, b: $id) { onlyInA } }",
        {"id": MISSING},
    ),
    "Query.releaseGate": ('{ releaseGate(model: "no-such-model", version: "1") { passed } }', {}),
    "Query.gateWaivers": ('{ gateWaivers(model: "m", version: "1") { id } }', {}),
    "Mutation.createSuite": (
        'mutation { createSuite(name: "s", model: "m", caseIds: []) { name } }',
        {},
    ),
    "Query.retrainingPlan": ("query($id: ID!) { retrainingPlan(id: $id) { id } }", {"id": MISSING}),
    "Query.retrainingPlans": ('{ retrainingPlans(model: "no-such-model") { id } }', {}),
    "Query.evaluationPlan": ('{ evaluationPlan(name: "no-such-plan") { id } }', {}),
    "Query.impactMetrics": (
        "{ impactMetrics(metric: REMEDIATION_TIME, by: TEAM) { key } }",
        {},
    ),
    "Mutation.createRetrainingPlan": ("mutation { createRetrainingPlan(plan: {}) { id } }", {}),
    "Mutation.setRetrainingPlanStatus": (
        "mutation($id: ID!) { setRetrainingPlanStatus(id: $id, status: APPROVED,"
        " expectedRevision: 1) { id } }",
        {"id": MISSING},
    ),
    "Mutation.evaluateRetrainingPlan": (
        'mutation($id: ID!) { evaluateRetrainingPlan(id: $id, candidateVersion: "2") { id } }',
        {"id": MISSING},
    ),
    "Mutation.createEvaluationPlan": ("mutation { createEvaluationPlan(plan: {}) { id } }", {}),
    "Mutation.reviseEvaluationPlan": ("mutation { reviseEvaluationPlan(plan: {}) { id } }", {}),
    "Mutation.generateScenarios": (
        "mutation { generateScenarios(perturbations: [TYPOS], seed: 1, caseIds: []) { id } }",
        {},
    ),
    "Query.scenarios": ("query($id: ID!) { scenarios(caseId: $id) { id } }", {"id": MISSING}),
    "Mutation.recordEvaluationRun": (
        'mutation { recordEvaluationRun(run: {model: "m", version: "1", suite: "no-such-suite",'
        " outcomes: []}) { id } }",
        {},
    ),
    "Mutation.acceptResolution": (
        "mutation($id: ID!) { acceptResolution(id: $id) { id } }",
        {"id": MISSING},
    ),
    "Mutation.waiveGroup": (
        'mutation($id: ID!) { waiveGroup(waiver: {groupId: $id, model: "m", reason: "r",'
        ' expiresAt: "2000-01-01T00:00:00Z"}) { id } }',
        {"id": MISSING},
    ),
    "Mutation.revokeWaiver": (
        "mutation($id: ID!) { revokeWaiver(id: $id) { id } }",
        {"id": MISSING},
    ),
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
    "Query.reviewBoards": ("{ reviewBoards { id } }", {}),
    "Query.reviewBoard": ("query($id: ID!) { reviewBoard(id: $id) { id } }", {"id": MISSING}),
    "Query.reviewSession": ("query($id: ID!) { reviewSession(id: $id) { id } }", {"id": MISSING}),
    "Mutation.createReviewBoard": (
        'mutation { createReviewBoard(team: "t", name: "n", cadence: WEEKLY, roster: []) { id } }',
        {},
    ),
    "Mutation.openReviewSession": (
        "mutation($id: ID!) { openReviewSession(boardId: $id) { id } }",
        {"id": MISSING},
    ),
    "Mutation.recordReviewDecision": (
        'mutation($id: ID!) { recordReviewDecision(itemId: $id, decision: "d") { id } }',
        {"id": MISSING},
    ),
    "Mutation.closeReviewSession": (
        'mutation($id: ID!) { closeReviewSession(sessionId: $id, minutes: "m") { id } }',
        {"id": MISSING},
    ),
    "Query.contextEvents": ("{ contextEvents(first: 1) { nodes { id } } }", {}),
    "Query.redactionPolicies": ("{ redactionPolicies { dataSource } }", {}),
    "Mutation.setRedactionPolicy": (
        'mutation { setRedactionPolicy(dataSource: "matrix-none", mode: MASK) { version } }',
        {},
    ),
    "Mutation.recordContextEvent": (
        "mutation { recordContextEvent(event: {kind: DEPLOY}) { id } }",
        {},
    ),
    "Query.escalationRules": ("{ escalationRules { name } }", {}),
    "Query.escalationDeliveries": (
        '{ escalationDeliveries(rule: "no-such-rule") { nodes { id } } }',
        {},
    ),
    "Query.releaseBlocks": ('{ releaseBlocks(model: "no-such-model", version: "1") { id } }', {}),
    "Mutation.createEscalationRule": (
        'mutation { createEscalationRule(rule: {name: "r", kind: THRESHOLD}) { secret } }',
        {},
    ),
    "Mutation.setEscalationRuleEnabled": (
        "mutation($id: ID!) { setEscalationRuleEnabled(id: $id, enabled: false) { id } }",
        {"id": MISSING},
    ),
    "Mutation.liftReleaseBlock": (
        'mutation { liftReleaseBlock(model: "no-such-model", version: "1", reason: "r") { id } }',
        {},
    ),
    "Query.retentionPolicies": ("{ retentionPolicies { dataSource } }", {}),
    "Mutation.setRetentionPolicy": (
        'mutation { setRetentionPolicy(dataSource: "s", sensitivity: INTERNAL,'
        " payloadTtlDays: 0) { dataSource } }",
        {},
    ),
    "Mutation.setLegalHold": (
        'mutation($id: ID!) { setLegalHold(target: {kind: CASE, id: $id}, hold: true, reason: "r")'
        " { active } }",
        {"id": MISSING},
    ),
    "Query.comments": (
        "query($id: ID!) { comments(target: $id) { nodes { id } } }",
        {"id": MISSING},
    ),
    "Query.lessons": ("{ lessons(first: 1) { nodes { id } } }", {}),
    "Query.lesson": ("query($id: ID!) { lesson(id: $id) { id } }", {"id": MISSING}),
    "Mutation.addComment": (
        'mutation($id: ID!) { addComment(target: $id, body: "b") { id } }',
        {"id": MISSING},
    ),
    "Mutation.acceptProposedMeasure": (
        "mutation($id: ID!) { acceptProposedMeasure(id: $id, planId: $id) { id } }",
        {"id": MISSING},
    ),
    "Mutation.createLesson": (
        'mutation { createLesson(lesson: {title: "t", whatHappened: "w", whyItMatters: "w",'
        ' mitigation: "m", cost: "c", evidenceGroupIds: []}) { id } }',
        {},
    ),
    "Mutation.reviewLesson": (
        "mutation($id: ID!) { reviewLesson(id: $id, expectedRevision: 1) { id } }",
        {"id": MISSING},
    ),
    "Query.capturePolicy": ('{ capturePolicy(model: "m", dataSource: "d") { version } }', {}),
    "Mutation.setCapturePolicy": (
        'mutation { setCapturePolicy(model: "m", dataSource: "d", '
        'policy: {required: ["nope"]}) { version } }',
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
# is listed (and so proven to hide what its caller may not see). Variables the walk always
# offers beside the ids: $model (the model of the walk's cases) and $salt (unique per run).
# Kinds: "case", "group" (one id; NOT_FOUND), "cases" (a list: the whole call refused as for an
# unknown id), "proposal" (visible when a case of its group in the run's suite is), "waiver"
# (visible with its group), and the kinds of EXEMPT below.
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
    # safeguards
    "Query.scenarios": (
        "query($case_id: ID!) { scenarios(caseId: $case_id) { id input } }",
        {"case_id": "case"},
    ),
    "Mutation.generateScenarios": (
        "mutation($case_ids: [ID!]) { generateScenarios(perturbations: [CASING], seed: 7,"
        " caseIds: $case_ids) { id parentCaseId input } }",
        {"case_ids": "cases"},
    ),
    "Mutation.createSuite": (
        "mutation($case_ids: [ID!], $model: String!, $salt: String!) { createSuite(name: $salt,"
        " model: $model, caseIds: $case_ids) { name caseCount } }",
        {"case_ids": "cases"},
    ),
    "Mutation.acceptResolution": (
        "mutation($id: ID!) { acceptResolution(id: $id) { id groupId status } }",
        {"id": "proposal"},
    ),
    "Mutation.revokeWaiver": (
        "mutation($id: ID!) { revokeWaiver(id: $id) { id groupId revokedAt } }",
        {"id": "waiver"},
    ),
    "Query.evaluationRun": ("query($id: ID!) { evaluationRun(id: $id) { id } }", {"id": "run"}),
    "Query.compareRuns": (
        "query($a: ID!, $b: ID!) { compareRuns(a: $a, b: $b) { onlyInA } }",
        {"a": "run", "b": "run"},
    ),
    # plans
    "Query.retrainingPlan": ("query($id: ID!) { retrainingPlan(id: $id) { id } }", {"id": "plan"}),
    "Mutation.setRetrainingPlanStatus": (
        "mutation($id: ID!) { setRetrainingPlanStatus(id: $id, status: CLOSED,"
        " expectedRevision: 1) { id } }",
        {"id": "plan"},
    ),
    "Mutation.evaluateRetrainingPlan": (
        'mutation($id: ID!) { evaluateRetrainingPlan(id: $id, candidateVersion: "2") { id } }',
        {"id": "plan"},
    ),
    # annotation
    "Mutation.submitAnnotation": (
        'mutation($case_id: ID!) { submitAnnotation(caseId: $case_id, taxonomy: "failcat",'
        " values: {}, submit: false) { id } }",
        {"case_id": "case"},
    ),
    "Mutation.assignAnnotators": (
        "mutation($case_ids: [ID!]!, $salt: String!) { assignAnnotators(caseIds: $case_ids,"
        " annotators: [$salt], overlap: 1) { annotator } }",
        {"case_ids": "cases"},
    ),
    "Mutation.adjudicate": (
        'mutation($case_id: ID!) { adjudicate(caseId: $case_id, taxonomy: "failcat",'
        ' values: {failure_mode: "harmful_content", severity: "S2"}, expectedRevision: 1)'
        " { id } }",
        {"case_id": "case"},
    ),
    "Mutation.sendBack": (
        'mutation($case_id: ID!) { sendBack(caseId: $case_id, comment: "again") { id } }',
        {"case_id": "case"},
    ),
    "Query.reviewBoard": ("query($id: ID!) { reviewBoard(id: $id) { id } }", {"id": "board"}),
    "Query.reviewSession": ("query($id: ID!) { reviewSession(id: $id) { id } }", {"id": "board"}),
    "Mutation.openReviewSession": (
        "mutation($board_id: ID!) { openReviewSession(boardId: $board_id) { id } }",
        {"board_id": "board"},
    ),
    "Mutation.recordReviewDecision": (
        'mutation($item_id: ID!) { recordReviewDecision(itemId: $item_id, decision: "d") { id } }',
        {"item_id": "board"},
    ),
    "Mutation.closeReviewSession": (
        "mutation($session_id: ID!) { closeReviewSession(sessionId: $session_id,"
        ' minutes: "m") { id } }',
        {"session_id": "board"},
    ),
    # sharing
    "Query.comments": (
        "query($target: ID!) { comments(target: $target) { nodes { id body } } }",
        {"target": "case"},
    ),
    "Mutation.addComment": (
        'mutation($target: ID!) { addComment(target: $target, body: "seen") { id } }',
        {"target": "case"},
    ),
    "Mutation.acceptProposedMeasure": (
        "mutation($id: ID!, $plan_id: ID!) { acceptProposedMeasure(id: $id, planId: $plan_id)"
        " { id acceptedPlanId } }",
        {"id": "comment", "plan_id": "plan"},
    ),
    "Query.lesson": ("query($id: ID!) { lesson(id: $id) { id } }", {"id": "lesson"}),
    # governance
    "Mutation.setEscalationRuleEnabled": (
        "mutation($id: ID!) { setEscalationRuleEnabled(id: $id, enabled: true) { id } }",
        {"id": "escalation_rule"},
    ),
    "Mutation.reviewLesson": (
        "mutation($id: ID!) { reviewLesson(id: $id, expectedRevision: 1) { id } }",
        {"id": "lesson"},
    ),
}

# Objects with no visibility of their own, by design: any caller with the field's scopes may
# name them. What they must not do is carry a hidden case: their case lists are filtered for
# the reader (test_objects_without_visibility_leak_no_hidden_case proves it for each kind).
EXEMPT: dict[str, str] = {
    # A run is a model version's result on a suite version: its figures (total, passed, by
    # severity and failure mode) count every case of the suite, as the release gate decides on
    # all of them (SAFEGUARDS.md); outcomes, slices, proposals and the suite's cases list only
    # the cases the reader sees, and compareRuns compares only those.
    "run": "figures over the whole suite; every case list filtered for the reader",
    # A plan belongs to the plans:read / plans:write holders, not to a team (PLANS.md): its
    # evidence shows only the cases and groups the reader may see.
    "plan": "governed by the plans scopes; evidence filtered for the reader",
    # A review board (its sessions and agenda items) is its team's, not a case's: NOT_FOUND
    # to a caller of another team, and an agenda lists only the cases and groups the reader
    # sees (tests/annotation/test_boards.py proves both).
    "board": "a team's; NOT_FOUND to other teams; agendas filtered for the reader",
    # A lesson is written to be shared across teams (services/sharing/SHARING.md): any
    # cases:read holder reads it; its evidence groups are filtered for the reader
    # (tests/sharing/test_lessons.py proves it).
    "lesson": "written to be shared; evidence groups filtered for the reader",
    # An escalation rule sees what its creator saw (ESCALATION.md): NOT_FOUND to a caller
    # who may not see its team and clearance, and nothing of it changes
    # (tests/governance/escalation/test_escalation.py proves it); it carries no case.
    "escalation_rule": "its creator's team and clearance; NOT_FOUND to others",
}
# "comment": seen with its target (a proposed measure on each case of the world). Its one
# field also names a plan (EXEMPT), so tests/sharing/test_discussion.py proves the hidden one.
WALKED = {"case", "group", "cases", "proposal", "waiver", "comment"}


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
    kinds = {kind for _, args in BY_ID.values() for kind in args.values()}
    assert kinds <= WALKED | set(EXEMPT), f"kinds neither walked nor exempt: {kinds}"
    assert not WALKED & set(EXEMPT)


EVERY_SCOPE = (
    "cases:read cases:write cases:ingest evals:write reviews:write plans:read plans:write"
    " annotations:write"
)


@pytest.fixture(scope="module")
async def world(client, token_for):
    """Three cases of one model, each in a group of its own: two hidden from one caller each
    (another team's; one above the caller's clearance), one everybody sees. Around them, as
    their owner made them: a suite of the three, two runs on it (all passed; then the hidden
    ones failed), the first run's resolution proposals, a waiver per group and a retraining
    plan resting on all three cases and groups."""
    salt = secrets.token_hex(3)
    team, other = f"vis-a-{salt}", f"vis-b-{salt}"
    model = f"vis-model-{salt}"
    owner = await token_for(EVERY_SCOPE, team=team, clearance="restricted")
    cases = unique(aiid_cases(3))
    for n, (c, (who, sensitivity)) in enumerate(
        zip(
            cases,
            [(team, "internal"), (team, "restricted"), (None, "public")],
            strict=True,
        )
    ):
        c.update(team=who, sensitivity=sensitivity, fingerprint=f"vis-{n}-{salt}")
        c["title"] = f"{c['title']} (vis-title-{n}-{salt})"
        c["input"] = {"text": f"vis-input-{n}-{salt}", "parties": c["input"]["parties"]}
        c["model"] = {"name": model, "version": "1.0"}
    # A case takes its ingesting client's team when it names none: the one every caller sees
    # is ingested by a client without a team.
    teamless = await token_for("cases:ingest", clearance="restricted")
    ids = []
    for token, batch in ((owner, cases[:2]), (teamless, cases[2:])):
        body = await gql(client, token, INGEST, {"cases": [case_input(c) for c in batch]})
        ids += [r["id"] for r in data(body)["ingestCases"]]
    group_of = "query($id: ID!) { case(id: $id) { group { id } } }"
    groups = [
        data(await gql(client, owner, group_of, {"id": i}))["case"]["group"]["id"] for i in ids
    ]
    suite = f"vis-suite-{salt}"
    await _ok(
        client,
        owner,
        "mutation($n: String!, $m: String!, $ids: [ID!]) {"
        " createSuite(name: $n, model: $m, caseIds: $ids) { name } }",
        {"n": suite, "m": model, "ids": ids},
    )
    record = """mutation($run: EvaluationRunInput!) { recordEvaluationRun(run: $run) {
                id proposals { id groupId } } }"""
    runs, proposals = [], {}
    for failing in ((), ids[:2]):
        outcomes = [
            {"caseId": i, "outcome": "FAIL" if i in failing else "PASS", "latencyMs": 5.0}
            for i in ids
        ]
        run = {"model": model, "version": "2.0", "suite": suite, "outcomes": outcomes}
        answer = (await _ok(client, owner, record, {"run": run}))["recordEvaluationRun"]
        runs.append(answer["id"])
        proposals.update({p["groupId"]: p["id"] for p in answer["proposals"]})
    waive = """mutation($g: ID!, $m: String!) { waiveGroup(waiver: {groupId: $g, model: $m,
               reason: "vis", expiresAt: "2999-01-01T00:00:00Z"}) { id } }"""
    waivers = {
        g: (await _ok(client, owner, waive, {"g": g, "m": model}))["waiveGroup"]["id"]
        for g in groups
    }
    plan = {
        "title": f"vis-plan-{salt}",
        "model": model,
        "evidence": {"case_ids": ids, "group_ids": groups},
        "targets": [{"suite": suite, "metric": "pass_rate", "op": ">=", "value": 0.5}],
    }
    created = await _ok(
        client, owner, "mutation($p: JSON!) { createRetrainingPlan(plan: $p) { id } }", {"p": plan}
    )
    add = """mutation($t: ID!) { addComment(target: $t, body: "vis", kind: PROPOSED_MEASURE)
             { id } }"""
    comments = [(await _ok(client, owner, add, {"t": i}))["addComment"]["id"] for i in ids]
    return {
        "salt": salt,
        "model": model,
        "cases": cases,
        "ids": ids,
        "groups": groups,
        "runs": runs,
        "plan": created["createRetrainingPlan"]["id"],
        # Each kind's object for case n: its id, its group, the proposal and waiver of its group.
        "of": [
            {
                "case": ids[n],
                "cases": [ids[n]],
                "group": groups[n],
                "proposal": proposals[groups[n]],
                "waiver": waivers[groups[n]],
                "comment": comments[n],
            }
            for n in range(3)
        ],
        # (a caller with every scope, the cases it may not see, the one it must be refused)
        "callers": {
            "other team": (
                await token_for(EVERY_SCOPE, team=other, clearance="restricted"),
                [0, 1],
                0,
            ),
            "lower clearance": (
                await token_for(EVERY_SCOPE, team=team, clearance="confidential"),
                [1],
                1,
            ),
        },
    }


async def _ok(client, token, query, variables):
    return data(await gql(client, token, query, variables))


def _like_unknown(got: dict, unknown: dict, hidden: str) -> bool:
    """The answer for a hidden id is the answer for an id that exists nowhere."""
    return json.dumps(got).replace(hidden, MISSING) == json.dumps(unknown)


# Ids inside input objects: not found by the schema walk, listed here by hand.
BY_INPUT_ID: dict[str, tuple[str, str]] = {
    "Mutation.waiveGroup": (
        """mutation($id: ID!, $model: String!) { waiveGroup(waiver: {groupId: $id,
           model: $model, reason: "r", expiresAt: "2999-01-01T00:00:00Z"}) { id } }""",
        "group",
    ),
    "Mutation.recordEvaluationRun": (
        """mutation($id: ID!, $model: String!, $salt: String!) { recordEvaluationRun(run: {
           model: $model, version: "3.0", suite: $salt, outcomes: [{caseId: $id,
           outcome: PASS}]}) { id } }""",
        "case",
    ),
    # One entry per kind of target the same field takes.
    "Mutation.setLegalHold (case)": (
        """mutation($id: ID!) { setLegalHold(target: {kind: CASE, id: $id}, hold: true,
           reason: "vis") { active } }""",
        "case",
    ),
    "Mutation.setLegalHold (group)": (
        """mutation($id: ID!) { setLegalHold(target: {kind: GROUP, id: $id}, hold: true,
           reason: "vis") { active } }""",
        "group",
    ),
}


async def test_a_caller_who_cannot_see_the_target_gets_not_found_and_nothing_changes(
    client, world, admin_token, app
):
    ids, groups = world["ids"], world["groups"]
    extra = {"model": world["model"], "salt": f"vis-suite-{world['salt']}"}
    before = await _snapshot(client, app, admin_token, ids, groups)

    wrong = []
    for why, (caller, _, target) in world["callers"].items():
        hidden, seen = world["of"][target], world["of"][2]
        for name, (query, args) in BY_ID.items():
            if set(args.values()) & set(EXEMPT):
                continue  # proven by test_objects_without_visibility_leak_no_hidden_case
            # Each ID argument in turn names the hidden target; the others name visible ones.
            for arg, kind in args.items():
                variables = {a: (hidden if a == arg else seen)[k] for a, k in args.items()}
                got = await gql(client, caller, query, {**extra, **variables})
                if kind == "cases":
                    # A list is refused whole, as it would be for an id that exists nowhere
                    # (NOT_FOUND, or the service's BAD_USER_INPUT naming `caseIds.N`).
                    unknown = await gql(
                        client, caller, query, {**extra, **variables, arg: [MISSING]}
                    )
                    if (
                        codes(got) not in (["NOT_FOUND"], ["BAD_USER_INPUT"])
                        or got.get("data")
                        or hidden["case"] not in json.dumps(got["errors"])
                        or not _like_unknown(got, unknown, hidden["case"])
                    ):
                        wrong.append(f"{name}({arg}) for {why}: {got} (unknown id: {unknown})")
                elif codes(got) != ["NOT_FOUND"] or got.get("data"):
                    wrong.append(f"{name}({arg}) for {why}: {got}")
        for name, (query, kind) in BY_INPUT_ID.items():
            got = await gql(client, caller, query, {**extra, "id": hidden[kind]})
            unknown = await gql(client, caller, query, {**extra, "id": MISSING})
            if (
                not got.get("errors")
                or got.get("data")
                or not _like_unknown(got, unknown, hidden[kind])
            ):
                wrong.append(f"{name} for {why}: {got} (unknown id: {unknown})")
        # An id inside a filter is not a lookup: the page is empty, as for an unknown id.
        listed = await gql(
            client,
            caller,
            "query($g: ID!) { cases(filter: {groupId: $g}) { nodes { id } } }",
            {"g": hidden["group"]},
        )
        if data(listed)["cases"]["nodes"]:
            wrong.append(f"cases(filter: {{groupId}}) for {why}: {listed}")
    assert not wrong, wrong
    assert await _snapshot(client, app, admin_token, ids, groups) == before


RUN = """query($id: ID!) { evaluationRun(id: $id) {
  id total passed failed notRun byFailureMode { value total } bySeverity { value total }
  slice(by: "team") { value total } outcomes { caseId outcome prediction error }
  proposals { id groupId group { id } }
  suite { name caseCount cases { nodes { caseId parentCaseId input expected case { id title } } } }
} }"""
COMPARE = """query($a: ID!, $b: ID!) { compareRuns(a: $a, b: $b) {
  onlyInA onlyInB fixed { caseId } regressed { caseId } stillFailing { caseId } } }"""
WAIVERS = "query($m: String!, $v: String!) { gateWaivers(model: $m, version: $v) { id groupId } }"
PLAN = "id title status revision outcome evidence { caseIds groupIds sliceQuery }"
PLAN_READ = f"query($id: ID!) {{ retrainingPlan(id: $id) {{ {PLAN} }} }}"
PLAN_STATUS = f"""mutation($id: ID!, $s: PlanStatus!, $r: Int!) {{
  setRetrainingPlanStatus(id: $id, status: $s, expectedRevision: $r) {{ {PLAN} }} }}"""
PLAN_EVALUATE = f"""mutation($id: ID!) {{
  evaluateRetrainingPlan(id: $id, candidateVersion: "2.0") {{ {PLAN} }} }}"""


async def test_objects_without_visibility_leak_no_hidden_case(client, world):
    """Runs and plans (EXEMPT) answer any caller with their scopes, and never with a case, a
    group, a proposal or a waiver the caller may not see: no id, title or input of it."""
    a, b = world["runs"]
    revision, leaks, missing = 1, [], []
    for why, (caller, hidden, _) in world["callers"].items():
        forbidden = [
            fact
            for n in hidden
            for fact in (
                world["ids"][n],
                world["groups"][n],
                world["of"][n]["proposal"],
                world["of"][n]["waiver"],
                world["cases"][n]["title"],
                world["cases"][n]["input"]["text"],
            )
        ]
        answers = {
            "evaluationRun": await _ok(client, caller, RUN, {"id": a}),
            "compareRuns": await _ok(client, caller, COMPARE, {"a": a, "b": b}),
            "retrainingPlan": await _ok(client, caller, PLAN_READ, {"id": world["plan"]}),
            # Not a lookup by id, but it lists waivers, which are seen with their group.
            "gateWaivers": await _ok(client, caller, WAIVERS, {"m": world["model"], "v": "2.0"}),
        }
        # The plan's mutations answer with the plan: walk it through its states meanwhile.
        for status in ("APPROVED", "IN_PROGRESS") if why == "other team" else ():
            answers[f"setRetrainingPlanStatus {status}"] = got = await _ok(
                client, caller, PLAN_STATUS, {"id": world["plan"], "s": status, "r": revision}
            )
            revision = got["setRetrainingPlanStatus"]["revision"]
        if why == "lower clearance":
            answers["evaluateRetrainingPlan"] = await _ok(
                client, caller, PLAN_EVALUATE, {"id": world["plan"]}
            )
        for name, answer in answers.items():
            text = json.dumps(answer)
            leaks += [f"{name} for {why} shows {fact!r}" for fact in forbidden if fact in text]
            # ... while what the caller sees is there (the answers are not merely empty).
            if name not in ("compareRuns", "gateWaivers") and world["ids"][2] not in text:
                missing.append(f"{name} for {why}: {text}")
        sees = [n for n in range(3) if n not in hidden]
        compared = answers["compareRuns"]["compareRuns"]
        assert (compared["onlyInA"], compared["onlyInB"], compared["fixed"]) == (0, 0, [])
        # The second run failed cases 0 and 1: only those the caller sees regressed, for it.
        regressed = sorted(world["ids"][n] for n in sees if n < 2)
        assert sorted(c["caseId"] for c in compared["regressed"]) == regressed
        run = answers["evaluationRun"]["evaluationRun"]
        assert sorted(o["caseId"] for o in run["outcomes"]) == sorted(world["ids"][n] for n in sees)
        assert run["total"] == 3  # the run's figures count the whole suite, by design
        plan = answers["retrainingPlan"]["retrainingPlan"]["evidence"]
        assert plan["caseIds"] == [world["ids"][n] for n in sees]
        assert plan["groupIds"] == [world["groups"][n] for n in sees]
        waivers = answers["gateWaivers"]["gateWaivers"]
        assert sorted(w["id"] for w in waivers) == sorted(world["of"][n]["waiver"] for n in sees)
    assert not leaks, leaks
    assert not missing, missing


# The new services' tables (annotation, safeguards, plans) as counts and sums: a refused call
# writes nothing, so every figure is the same after the walk.
TABLE_FIGURES = (
    "select count(*) from annotation",
    "select count(*) from annotation_change",
    "select count(*) from annotation_assignment",
    "select count(*) from annotation_review",
    "select count(*) from suite",
    "select count(*) from suite_version",
    "select count(*) from synthetic_scenario",
    "select count(*) from evaluation_run",
    "select count(*) from resolution_proposal where status = 'proposed'",
    "select count(*) from gate_waiver where revoked_at is null",
    "select count(*) from gate_waiver",
    "select count(*), coalesce(sum(revision), 0) from retraining_plan",
    "select count(*) from escalation_rule",
    "select count(*) from release_block where lifted_at is null",
    "select count(*) from sharing_comment",
    "select count(*) from sharing_comment where accepted_plan_id is not null",
    "select count(*), coalesce(sum(revision), 0) from sharing_lesson",
)


async def _snapshot(client, app, token, ids, groups):
    query = """query($id: ID!, $g: ID!) { case(id: $id) { revision title status mergedIntoId
               lastRevision { revision } } group(id: $g) { status resolvedInVersion } }"""
    cases = [
        data(await gql(client, token, query, {"id": i, "g": g}))
        for i, g in zip(ids, groups, strict=True)
    ]
    async with app.state.db.transaction() as s:
        tables = [tuple((await s.execute(text(q))).one()) for q in TABLE_FIGURES]
    return cases, tables
