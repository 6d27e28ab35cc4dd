"""GraphQL for governance: one module per area (redaction, retention, escalation)."""
