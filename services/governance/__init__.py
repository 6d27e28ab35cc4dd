"""Governance: redaction policies and PII detectors, field sensitivity, retention and legal
holds, escalation rules and webhook deliveries. One sub-package per area, each with the
usual inner shape (models, schemas, repository, service)."""
