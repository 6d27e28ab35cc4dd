"""Escalation paths: rules over indexed cases (written in the search query language) whose
firings send signed webhooks, open remediation tickets and block model releases.
ESCALATION.md describes the rules, the signature scheme and the retry policy."""
