"""The authorization server's OAuth 2.0 wire names, defined once: the paths of its endpoints
(used by the routes, the RFC 8414 metadata, the pages' forms and the device verification URI)
and the grant types a client may be registered for."""

from __future__ import annotations

from authlib.oauth2.rfc8628 import DEVICE_CODE_GRANT_TYPE

METADATA = "/.well-known/oauth-authorization-server"  # RFC 8414
PREFIX = "/oauth"  # every endpoint below (the pages' CSRF cookie is scoped to it)
AUTHORIZE = f"{PREFIX}/authorize"
TOKEN = f"{PREFIX}/token"
JWKS = f"{PREFIX}/jwks.json"
INTROSPECT = f"{PREFIX}/introspect"  # RFC 7662
REVOKE = f"{PREFIX}/revoke"  # RFC 7009
DEVICE_AUTHORIZATION = f"{PREFIX}/device_authorization"  # RFC 8628
DEVICE = f"{PREFIX}/device"  # where a user enters the code a device shows (verification_uri)

# RFC 8628's grant type, as authlib (which implements the grant) spells it.
DEVICE_GRANT: str = DEVICE_CODE_GRANT_TYPE
GRANT_TYPES = ("authorization_code", "client_credentials", "refresh_token", DEVICE_GRANT)
