"""Safeguards: frozen regression suites, evaluation runs and the release gate."""
