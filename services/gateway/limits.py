"""The GraphQL endpoint's documented limits (README "Limits"). Each refusal names its limit."""

from services.catalog.limits import MAX_PAGE_SIZE

MAX_REQUEST_BYTES = 1024 * 1024  # body of POST /graphql
MAX_TOKENS = 5000  # lexer tokens in one document
MAX_DEPTH = 10  # nesting of selection sets
MAX_ALIASES = 30  # aliases in one operation, fragments included
MAX_FIELDS = 2000  # field selections with every fragment spread expanded
MAX_SAME_KEY = 20  # selections of one response key in one selection set, fragments expanded
MAX_DIRECTIVES = 20  # directive uses in one document
MAX_COST = 20_000  # see services/gateway/guard.py for how cost is counted
LIST_ESTIMATE = 10  # assumed length of a list field that takes no `first`
MAX_SUBSCRIPTIONS_PER_CONNECTION = 10
MAX_CACHED_DOCUMENTS = 1000  # parser and validation caches

__all__ = [
    "LIST_ESTIMATE",
    "MAX_ALIASES",
    "MAX_CACHED_DOCUMENTS",
    "MAX_COST",
    "MAX_DEPTH",
    "MAX_DIRECTIVES",
    "MAX_FIELDS",
    "MAX_PAGE_SIZE",
    "MAX_REQUEST_BYTES",
    "MAX_SAME_KEY",
    "MAX_SUBSCRIPTIONS_PER_CONNECTION",
    "MAX_TOKENS",
]
