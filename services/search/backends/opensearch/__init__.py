"""The OpenSearch backend: the mapping derived from the field table, the request compiler,
and the client that writes, searches and rebuilds through an alias."""

from services.search.backends.opensearch.backend import OpenSearchBackend

__all__ = ["OpenSearchBackend"]
