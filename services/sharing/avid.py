"""AVID interop: AI Vulnerability Database reports as cases, and cases as AVID reports.

An AVID report (avidml/avid-db, `reports/<year>/AVID-*.json`; one per line in a .jsonl) maps
onto a case as far as failcat has a field that means the same thing:

| AVID | failcat |
|---|---|
| `metadata.report_id` | `external_id` (data source and provenance source `avid`) |
| `data_version` | `provenance.pipeline_version` (the producer's format version) |
| `problemtype.description.value` | `title` |
| `description.value` | `summary` |
| `reported_date` | `occurred_at` (midnight UTC) |
| `affects.artifacts[0].name` | `model.name` (version `unknown`: AVID names no versions) |
| `affects.developer` / `deployer` | `environment.developer` / `.deployer` ("; "-joined) |
| `metrics` | `signals.metrics` (measured outcomes, as published) |
| `references` (http/https) | `links` (kind `other`, the label as title; at most 50) |
| `impact.cvss.baseSeverity` | `severity` (CRITICAL S0, HIGH S1, MEDIUM S2, LOW S3, NONE S4) |
| `impact.avid.sep_view` | `failure_mode`, where a mapping is defensible (SEP_TO_MODE) |

A report with no artifact, or whose first artifact has no name (AVID does not require one),
gets the model name `unknown` (UNKNOWN_MODEL). A report with a part shaped otherwise than the
schema says (SHAPES: `references` items that are not objects ...) or originals the `AVID`
taxonomy refuses is counted invalid, one line in the summary's `errors` naming the report and
the part; the other reports are imported.

The originals that have no case field of their own (AVID's classification: risk domain, SEP and
lifecycle views, its taxonomy version and vuln id, CVSS, CWE, ODIN; the problem type's class
and type; every reference with its AVID type; every artifact; the credits) are kept as a
submitted annotation of the `AVID` taxonomy by the annotator `AVID`, through the annotation
service's import path (the one `failcat import aiid` uses). Export reads both back, so a report
round-trips; a case that never came from AVID is exported from its own fields (AVID_FROM_MODE).

Text language: failcat keeps no language per text field; AVID's `lang` is written as `eng`
(every report of the published corpus is in English).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.annotation import service as annotations
from services.annotation.schemas import FieldType, TaxonomyField
from services.catalog import service as catalog
from services.sharing.importing import import_records
from shared.security import Principal

TAXONOMY = "AVID"
ANNOTATOR = "AVID"
DATA_SOURCE = "avid"
UNKNOWN_VERSION = "unknown"
UNKNOWN_MODEL = "unknown"  # a report whose first artifact is missing or has no name
DATA_VERSION = "0.3.3"  # the AVID schema version export writes
AVID_TAXONOMY_VERSION = "0.2"
LANG = "eng"
JOIN = "; "
MAX_LINKS = 50
BATCH = 500  # the export page of cases
URL = re.compile(r"^https?://\S+$")

SEVERITY_FROM_CVSS = {"CRITICAL": "S0", "HIGH": "S1", "MEDIUM": "S2", "LOW": "S3", "NONE": "S4"}

# AVID's SEP view (its taxonomy v0.2) -> failcat's failure modes, only where both describe the
# same failure; a code left out (software vulnerabilities, over-permissive APIs, accuracy ...)
# names no failure mode failcat has, and the case keeps no failure mode for it.
SEP_TO_MODE: dict[str, str] = {
    "S0201": "adversarial_input",  # Model Compromise: the model itself was tampered with
    "S0301": "safety.privacy_leak",  # Information Leak
    "S0400": "adversarial_input",  # Model Bypass
    "S0401": "adversarial_input.evasion",  # Bad Features: inputs engineered to evade
    "S0403": "adversarial_input",  # Adversarial Example (prompts and perturbations alike)
    "S0501": "safety.privacy_leak",  # Model Inversion: training data reconstructed
    "S0502": "adversarial_input.model_extraction",  # Model Theft
    "S0600": "adversarial_input.data_poisoning",  # Data Poisoning
    "S0601": "adversarial_input.data_poisoning",  # Ingest Poisoning
    "P0201": "robustness",  # Resilience/Stability
    "P0202": "robustness.out_of_distribution",  # OOD Generalization
    "P0400": "safety",  # Safety
    "P0401": "safety.harmful_content",  # Psychological Safety (unwanted content)
    "P0402": "safety",  # Physical Safety
    "E0100": "fairness",  # Bias/Discrimination
    "E0101": "fairness.disparate_performance",  # Group fairness
    "E0102": "fairness",  # Individual fairness
    "E0301": "safety.harmful_content",  # Toxicity
    "E0402": "safety.hallucination",  # Generative Misinformation
}
# The other way, for cases that did not come from AVID: a failure mode (or its family) -> the
# SEP category that names it.
AVID_FROM_MODE: dict[str, str] = {
    "adversarial_input": "S0403: Adversarial Example",
    "adversarial_input.evasion": "S0403: Adversarial Example",
    "adversarial_input.data_poisoning": "S0601: Ingest Poisoning",
    "adversarial_input.model_extraction": "S0502: Model Theft",
    "safety.privacy_leak": "S0301: Information Leak",
    "robustness": "P0201: Resilience/ Stability",
    "robustness.out_of_distribution": "P0202: OOD Generalization",
    "safety": "P0400: Safety",
    "safety.harmful_content": "E0301: Toxicity",
    "safety.hallucination": "E0402: Generative Misinformation",
    "fairness": "E0100: Bias/Discrimination",
    "fairness.disparate_performance": "E0101: Group fairness",
}
RISK_DOMAIN = {"S": "Security", "E": "Ethics", "P": "Performance"}
CVSS_FLOATS = ("baseScore",)
CVSS_STRINGS = (
    "version",
    "vectorString",
    "baseSeverity",
    "attackVector",
    "attackComplexity",
    "privilegesRequired",
    "userInteraction",
    "scope",
    "confidentialityImpact",
    "integrityImpact",
    "availabilityImpact",
)
IMPACT_PARTS = ("avid", "cvss", "cwe", "odin")
# Whether impact.avid had a vuln_id, kept beside the parts: an empty one is not a value.
VULN_ID_PART = "avid.vuln_id"

# The report's fields this module maps (dotted; [] a list's items): what the round trip keeps.
# AVID's view lists are sets of categories: failcat keeps them sorted, without their order.
MODELLED = (
    "data_type",
    "data_version",
    "metadata.report_id",
    "affects.developer",
    "affects.deployer",
    "affects.artifacts",
    "problemtype.classof",
    "problemtype.type",
    "problemtype.description.lang",
    "problemtype.description.value",
    "metrics",
    "references",
    "description.lang",
    "description.value",
    "impact.avid.risk_domain",
    "impact.avid.sep_view",
    "impact.avid.lifecycle_view",
    "impact.avid.taxonomy_version",
    "impact.avid.vuln_id",
    "impact.cvss",
    "impact.cwe",
    "impact.odin",
    "credit",
    "reported_date",
)
SET_VALUED = ("impact.avid.risk_domain", "impact.avid.sep_view", "impact.avid.lifecycle_view")


def _strings(*names: str) -> list[TaxonomyField]:
    return [TaxonomyField(name=n, type=FieldType.STRING) for n in names]


def taxonomy_fields() -> list[TaxonomyField]:
    """The `AVID` annotation taxonomy: the report's classification and the originals."""
    views = [
        TaxonomyField(name=n, type=FieldType.LIST, description=d)
        for n, d in (
            ("risk_domain", "AVID risk domain (Security, Ethics, Performance)"),
            ("sep_view", "AVID SEP view: security, ethics, performance categories"),
            ("lifecycle_view", "AVID lifecycle view: the stage the issue arises in"),
        )
    ]

    def objects(name: str, subs: tuple[str, ...], description: str) -> TaxonomyField:
        return TaxonomyField(
            name=name,
            type=FieldType.OBJECT_LIST,
            subfields=_strings(*subs),
            description=description,
        )

    return [
        *views,
        *_strings("taxonomy_version", "vuln_id", "classof", "problem_type"),
        *(TaxonomyField(name=f"cvss.{k}", type=FieldType.FLOAT) for k in CVSS_FLOATS),
        *_strings(*(f"cvss.{k}" for k in CVSS_STRINGS)),
        objects("cwe", ("cweId", "description", "lang"), "CWE weaknesses"),
        TaxonomyField(name="odin.SocialImpactScore", type=FieldType.STRING),
        objects("odin.JailbreakTaxonomy", ("Category", "Strategy", "Technique"), "0DIN"),
        objects("references", ("type", "label", "url"), "every reference, with its AVID type"),
        objects("artifacts", ("type", "name"), "every affected artifact"),
        objects("credit", ("lang", "value"), "who reported it"),
        TaxonomyField(
            name="impact_parts",
            type=FieldType.LIST,
            permitted_values=[*IMPACT_PARTS, VULN_ID_PART],
            description="the parts of `impact` the report had",
        ),
    ]


# --- import ----------------------------------------------------------------------------------
def _joined(values: list[str]) -> str | None:
    return JOIN.join(values)[:1000] if values else None


def _failure_mode(sep_view: list[str], known: set[str]) -> str | None:
    for entry in sep_view:
        mode = SEP_TO_MODE.get(entry.split(":", 1)[0].strip())
        if mode in known:
            return mode
    return None


def not_a_report(record: dict[str, Any]) -> str | None:
    """Why `record` is not a report to import (None: it is): its report id is the case's
    external id, which makes the import idempotent."""
    metadata = record.get("metadata")
    report_id = metadata.get("report_id") if isinstance(metadata, dict) else None
    if not isinstance(report_id, str) or not report_id.strip():
        return "not an AVID report: no 'metadata.report_id' (a string such as AVID-2022-R0001)"
    return None


# The parts report_case reads into, with the JSON type each must have where present (null is
# absent): a report shaped otherwise is refused naming the part, not with a Python error.
SHAPES: tuple[tuple[str, type], ...] = (
    ("affects", dict),
    ("affects.artifacts", list),
    ("affects.developer", list),
    ("affects.deployer", list),
    ("problemtype", dict),
    ("problemtype.description", dict),
    ("description", dict),
    ("references", list),
    ("impact", dict),
    ("impact.avid", dict),
    ("impact.avid.sep_view", list),
    ("impact.cvss", dict),
)
_JSON_TYPES = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}


def shape_problem(report: dict[str, Any]) -> str | None:
    """Where the report is not shaped as AVID's schema says (None: it is)."""
    for path, kind in SHAPES:
        value: Any = report
        for key in path.split("."):
            value = value.get(key) if isinstance(value, dict) else None
        if value is not None and not isinstance(value, kind):
            return f"{path}: expected {_JSON_TYPES[kind]}, got {_json_type(value)}"
    for n, reference in enumerate(report.get("references") or []):
        if not isinstance(reference, dict):
            return f"references.{n}: expected an object, got {_json_type(reference)}"
    return None


def _json_type(value: Any) -> str:
    return _JSON_TYPES.get(type(value), "a number")


def _model_name(artifacts: list[Any]) -> str:
    """The first artifact's name. AVID's schema does not require one: a report without it is
    still a report (its artifacts are kept whole in the annotation, so export gives them back)."""
    first = artifacts[0] if artifacts else None
    name = first.get("name") if isinstance(first, dict) else None
    return name[:200] if isinstance(name, str) and name.strip() else UNKNOWN_MODEL


def report_case(report: dict[str, Any], known_modes: set[str]) -> dict[str, Any]:
    """An AVID report as a case in the wire format (ValueError naming the part of a report
    shaped otherwise than AVID's schema)."""
    problem = shape_problem(report)
    if problem:
        raise ValueError(problem)
    affects = report.get("affects") or {}
    artifacts = affects.get("artifacts") or []
    impact = report.get("impact") or {}
    avid = impact.get("avid") or {}
    cvss = impact.get("cvss") or {}
    problem = report.get("problemtype") or {}
    environment = {
        k: v
        for k, v in (
            ("developer", _joined(affects.get("developer") or [])),
            ("deployer", _joined(affects.get("deployer") or [])),
        )
        if v
    }
    links = [
        {"kind": "other", "url": r["url"], "title": (r.get("label") or None) and r["label"][:500]}
        for r in report.get("references") or []
        if isinstance(r.get("url"), str) and URL.match(r["url"]) and len(r["url"]) <= 2000
    ][:MAX_LINKS]
    case: dict[str, Any] = {
        "external_id": report["metadata"]["report_id"],
        "title": ((problem.get("description") or {}).get("value") or "")[:500] or None,
        "summary": (report.get("description") or {}).get("value") or None,
        "model": {"name": _model_name(artifacts), "version": UNKNOWN_VERSION},
        "data_source": DATA_SOURCE,
        "occurred_at": f"{report['reported_date']}T00:00:00Z"
        if report.get("reported_date")
        else None,
        "environment": environment or None,
        "links": links,
        "severity": SEVERITY_FROM_CVSS.get(str(cvss.get("baseSeverity", "")).upper()),
        "failure_mode": _failure_mode(avid.get("sep_view") or [], known_modes),
        "provenance": {"source": DATA_SOURCE, "pipeline_version": report.get("data_version")},
        "tags": ["avid"],
    }
    if "metrics" in report:
        case["signals"] = {"metrics": report["metrics"]}
    return case


def report_values(report: dict[str, Any]) -> dict[str, Any]:
    """The originals kept as the `AVID` annotation's values."""
    impact = report.get("impact") or {}
    avid = impact.get("avid") or {}
    problem = report.get("problemtype") or {}
    values: dict[str, Any] = {
        "risk_domain": avid.get("risk_domain"),
        "sep_view": avid.get("sep_view"),
        "lifecycle_view": avid.get("lifecycle_view"),
        "taxonomy_version": avid.get("taxonomy_version"),
        "vuln_id": avid.get("vuln_id"),
        "classof": problem.get("classof"),
        "problem_type": problem.get("type"),
        "cwe": impact.get("cwe"),
        "references": report.get("references"),
        "artifacts": (report.get("affects") or {}).get("artifacts"),
        "credit": report.get("credit"),
        "impact_parts": [p for p in IMPACT_PARTS if p in impact]
        + ([VULN_ID_PART] if "vuln_id" in avid else []),
    }
    for key, value in (impact.get("cvss") or {}).items():
        values[f"cvss.{key}"] = value
    odin = impact.get("odin") or {}
    if "SocialImpactScore" in odin:
        values["odin.SocialImpactScore"] = odin["SocialImpactScore"]
    if "JailbreakTaxonomy" in odin:
        values["odin.JailbreakTaxonomy"] = odin["JailbreakTaxonomy"]
    return {k: v for k, v in values.items() if v is not None}


Progress = Callable[[str], None]


async def ensure_taxonomy(session: AsyncSession, actor: Principal) -> Any:
    return await annotations.import_taxonomy(
        session,
        TAXONOMY,
        taxonomy_fields(),
        description="AI Vulnerability Database: a report's classification and its originals",
        source="avid",
        actor=actor,
    )


async def import_reports(
    session: AsyncSession,
    reports: list[dict[str, Any]],
    actor: Principal,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Store AVID reports as cases (through the catalog's ingest) with their `AVID` annotation.
    Idempotent: the report id is the external id, and an unchanged annotation is not stored
    again."""
    taxonomy = await ensure_taxonomy(session, actor)
    return await import_records(
        session,
        reports,
        actor,
        taxonomy=taxonomy,
        annotator=ANNOTATOR,
        to_case=report_case,
        to_values=report_values,
        record_id=lambda report: report["metadata"]["report_id"],
        label="avid reports",
        progress=progress,
    )


# --- export ----------------------------------------------------------------------------------
def _split(value: str | None) -> list[str]:
    return value.split(JOIN) if value else []


def _text(value: str | None) -> dict[str, str]:
    return {"lang": LANG, "value": value or ""}


def case_report(case: dict[str, Any], values: dict[str, Any] | None) -> dict[str, Any]:
    """A case (wire format with `_meta`) and its `AVID` annotation's values, if it has one,
    as an AVID report."""
    meta = case.get("_meta") or {}
    env = case.get("environment") or {}
    provenance = case.get("provenance") or {}
    from_avid = values is not None
    values = values or {}
    report_id = (
        case["external_id"]
        if from_avid and case.get("external_id")
        else f"FAILCAT-{meta.get('id', case.get('external_id'))}"
    )
    artifacts = values.get("artifacts") or [
        {"type": "Model", "name": (case.get("model") or {}).get("name", "")}
    ]
    references = values.get("references")
    if references is None:
        references = [
            {"type": "source", "label": link.get("title") or link["url"], "url": link["url"]}
            for link in case.get("links") or []
        ]
    report: dict[str, Any] = {
        "data_type": "AVID",
        "data_version": (provenance.get("pipeline_version") if from_avid else None) or DATA_VERSION,
        "metadata": {"report_id": report_id},
        "affects": {
            "developer": _split(env.get("developer")),
            "deployer": _split(env.get("deployer")),
            "artifacts": artifacts,
        },
        "problemtype": {
            "classof": values.get("classof", "" if from_avid else "failcat case"),
            "type": values.get("problem_type", "Issue"),
            "description": _text(case.get("title")),
        },
    }
    signals = case.get("signals") or {}
    if isinstance(signals.get("metrics"), list):
        report["metrics"] = signals["metrics"]
    report["references"] = references
    report["description"] = _text(case.get("summary"))
    impact = _impact(case, values, from_avid)
    if impact:
        report["impact"] = impact
    if values.get("credit"):
        report["credit"] = values["credit"]
    occurred = case.get("occurred_at") or meta.get("received_at") or ""
    report["reported_date"] = occurred[:10]
    return report


def _impact(case: dict[str, Any], values: dict[str, Any], from_avid: bool) -> dict[str, Any]:
    parts = values.get("impact_parts", []) if from_avid else ["avid"]
    impact: dict[str, Any] = {}
    if "avid" in parts:
        if from_avid:
            avid: dict[str, Any] = {
                "risk_domain": values.get("risk_domain", []),
                "sep_view": values.get("sep_view", []),
                "lifecycle_view": values.get("lifecycle_view", []),
                "taxonomy_version": values.get("taxonomy_version", ""),
            }
            if VULN_ID_PART in parts:
                avid = {"vuln_id": values.get("vuln_id", ""), **avid}
        else:
            mode = case.get("failure_mode")
            sep = AVID_FROM_MODE.get(mode or "") or AVID_FROM_MODE.get((mode or "").split(".")[0])
            avid = {
                "risk_domain": [RISK_DOMAIN[sep[0]]] if sep else [],
                "sep_view": [sep] if sep else [],
                # failcat captures failures of models in production
                "lifecycle_view": ["L06: Deployment"],
                "taxonomy_version": AVID_TAXONOMY_VERSION,
            }
        impact["avid"] = avid
    cvss = {k.split(".", 1)[1]: v for k, v in values.items() if k.startswith("cvss.")}
    if "cvss" in parts:
        impact["cvss"] = cvss
    if "cwe" in parts:
        impact["cwe"] = values.get("cwe", [])
    if "odin" in parts:
        impact["odin"] = {k.split(".", 1)[1]: v for k, v in values.items() if k.startswith("odin.")}
    return impact


async def stream_reports(
    search: Any,
    db: Any,
    principal: Principal,
    query: str,
    progress: Callable[[int, int], None] | None = None,
    page_size: int = BATCH,
) -> AsyncIterator[dict[str, Any]]:
    """Every case `query` finds for `principal`, oldest first, as AVID reports: the ids come
    from the search a page at a time, each page is read in a short transaction of its own."""
    from services.catalog.export import wire_case
    from services.catalog.views import case_json
    from services.search.request import decode_cursor

    request = replace(
        search.build_request(principal, query, first=page_size, sort="occurred_at"),
        highlight=False,
    )
    result = await search.execute(request)
    done = 0
    while True:
        ids = [h.id for h in result.hits]
        async with db.transaction() as session:
            cases = await catalog.get_cases(session, ids, principal)
            refs = await catalog.page_relations(session, cases)
            found = await annotations.annotations_for(
                session, [c.id for c in cases], principal, TAXONOMY
            )
        by_id = {c.id: c for c in cases}
        for case_id in ids:
            if case_id not in by_id:
                continue  # deleted since it was indexed
            rows = found.get(case_id)
            mine = [a for a in rows if a.annotator == ANNOTATOR] if isinstance(rows, list) else []
            yield case_report(
                wire_case(case_json(by_id[case_id], refs, viewer=principal)),
                mine[0].values if mine else None,
            )
            done += 1
        if progress:
            progress(done, result.total)
        if not result.next_cursor:
            return
        result = await search.execute(
            replace(request, after=decode_cursor(result.next_cursor, request.sort))
        )
