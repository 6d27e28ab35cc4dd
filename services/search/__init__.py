"""The search service: owns the search index (OpenSearch or embedded SQLite FTS5)."""
