"""The embedded search backend (SQLite FTS5): tables derived from the field table (layout),
the query compiler, the connection pool, writes, aggregations and similar cases."""

from services.search.backends.embedded.backend import EmbeddedBackend

__all__ = ["EmbeddedBackend"]
