"""Bundles given the wrong thing on purpose: a `--trust` file that is no JWKS, a signed bundle
whose content is not what a bundle holds, a bundle of this same instance. Each is one line
naming the problem, exit 2 or the bad record reported, and nothing stored by a refusal."""

from __future__ import annotations

import orjson
import pytest

from services.sharing.bundle import trusted_keys
from shared.errors import BadUserInput
from tests.corpus import aiid_cases


@pytest.mark.parametrize(
    "content",
    [
        orjson.dumps(aiid_cases(3)),  # a JSON array of cases, not keys
        b'{"keys": [1, 2]}',
        b'{"keys": "not a list"}',
        b'"a string"',
    ],
)
def test_a_trust_file_that_is_no_jwks_is_named(tmp_path, content):
    path = tmp_path / "trust.json"
    path.write_bytes(content)
    with pytest.raises(BadUserInput, match=r"--trust .*trust.json: not a JWKS or JWK"):
        trusted_keys(str(path))
