"""Documented ingestion limits (README "Limits"): every one is enforced with an error naming it."""

MAX_ITEMS_PER_REQUEST = 10_000
MAX_REQUEST_BYTES = 20 * 1024 * 1024
MAX_JSON_DEPTH = 32
MAX_BLOB_BYTES = 256 * 1024  # each of input / prediction / expected / signals
MAX_TITLE = 500
MAX_TEXT = 100_000  # summary, impact, each write-up field
MAX_NAME = 200  # model name, data source, team, provenance fields, external_id
MAX_VERSION = 100
MAX_TAGS = 50
MAX_TAG = 100
MAX_LINKS = 50
MAX_URL = 2000
MAX_ENV_KEYS = 100
MAX_ENV_VALUE = 1000
MAX_PAGE_SIZE = 500
