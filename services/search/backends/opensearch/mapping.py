"""The OpenSearch index mapping and settings, derived from the field table.

Every index `<alias>-<timestamp>` gets them from an index template. The mapping's `_meta`
carries a fingerprint of both: an index made for another field table is `outdated` and is
rebuilt from the catalog instead of being patched in place (new analysis settings and
sub-fields cannot be added to an open index, and existing documents would lack them).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from services.search.fields import DocumentSchema, Kind

KEYWORD: dict[str, Any] = {"type": "keyword"}
# A keyword matched in any case: the stored spelling (facets, sorts, visibility) and, as a
# sub-field, the folded one that terms and prefixes compare with (fields.fold, the same).
FOLDED_KEYWORD: dict[str, Any] = {
    "type": "keyword",
    "fields": {"folded": {"type": "keyword", "normalizer": "folded", "doc_values": False}},
}
TEXT: dict[str, Any] = {
    "type": "text",
    "analyzer": "english",
    # Offsets in the postings let the unified highlighter skip re-analysing the text.
    "index_options": "offsets",
    # The words as written (unstemmed), for prefixes: `injectio*` finds "injection",
    # which the english analyzer indexes as "inject". No positions: a prefix needs none.
    "fields": {"plain": {"type": "text", "analyzer": "plain", "index_options": "docs"}},
}
ANALYSIS: dict[str, Any] = {
    "normalizer": {"folded": {"type": "custom", "filter": ["lowercase"]}},
    # As the embedded index's unicode61 tokenizer with remove_diacritics.
    "analyzer": {
        "plain": {
            "type": "custom",
            "tokenizer": "standard",
            "filter": ["lowercase", "asciifolding"],
        }
    },
}
_BY_KIND: dict[Kind, dict[str, Any]] = {
    Kind.TEXT: TEXT,
    Kind.KEYWORD: KEYWORD,
    Kind.DATE: {"type": "date"},
    # double, not float: `confidence:<0.3` must compare exactly as SQLite's REAL does.
    Kind.NUMBER: {"type": "double"},
}

INDEX_SETTINGS: dict[str, Any] = {
    "number_of_shards": 1,
    # One replica where there is a second node to hold it; a single node stays green.
    "auto_expand_replicas": "0-1",
    "refresh_interval": "1s",
}


def map_fields(schema: DocumentSchema) -> tuple[str, str]:
    """The map is indexed as two keyword lists, its keys ("region") and its pairs
    ("region=eu-west-1"), instead of one field per open-ended key."""
    return f"{schema.map_prefix}_keys", f"{schema.map_prefix}_pairs"


def _properties(schema: DocumentSchema) -> dict[str, Any]:
    props: dict[str, Any] = {"revision": {"type": "long"}}
    for f in schema.fields:
        if f.kind is Kind.MAP:
            # The map itself is only stored; its keys and pairs are what is searched.
            props[f.name] = {"type": "object", "enabled": False}
            for name in map_fields(schema):
                props[name] = FOLDED_KEYWORD
            continue
        props[f.name] = FOLDED_KEYWORD if f.folded else _BY_KIND[f.kind]
        if f.rank:
            props[f.rank] = {"type": "byte"}
    return props


def settings(schema: DocumentSchema) -> dict[str, Any]:
    return {**INDEX_SETTINGS, "analysis": ANALYSIS}


def mappings(schema: DocumentSchema) -> dict[str, Any]:
    body: dict[str, Any] = {
        # Unknown fields are kept in _source but not indexed: a catalog that adds a field
        # cannot break indexing or blow up the mapping.
        "dynamic": False,
        "properties": _properties(schema),
    }
    digest = json.dumps([body, settings(schema)], sort_keys=True).encode()
    body["_meta"] = {"failcat_schema": hashlib.sha256(digest).hexdigest()[:16]}
    return body


def fingerprint(schema: DocumentSchema) -> str:
    return mappings(schema)["_meta"]["failcat_schema"]
