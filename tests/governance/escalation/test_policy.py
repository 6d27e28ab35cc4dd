"""The retry policy and the signature, as a receiver and an operator rely on them."""

from __future__ import annotations

import hashlib
import hmac
import random
import time

from services.governance.escalation.delivery import DeliveryPolicy, sign, ticket_url_of, verify


def test_backoff_doubles_up_to_its_cap_with_equal_jitter():
    policy = DeliveryPolicy(base_delay_s=2.0, max_delay_s=30.0)
    rng = random.Random(7)
    for attempts, full in ((1, 2.0), (2, 4.0), (3, 8.0), (4, 16.0), (5, 30.0), (9, 30.0)):
        delays = [policy.delay(attempts, rng) for _ in range(200)]
        assert all(full / 2 <= d <= full for d in delays), (attempts, min(delays), max(delays))
        assert max(delays) - min(delays) > full / 4  # jittered: retries spread out


def test_the_signature_is_hmac_sha256_over_timestamp_dot_body():
    body, stamp = b'{"event":"escalation.fired"}', str(int(time.time()))
    expected = hmac.new(b"k" * 32, stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    assert sign("k" * 32, stamp, body) == f"sha256={expected}"
    assert verify("k" * 32, stamp, body, f"sha256={expected}")
    assert not verify("k" * 32, "not a time", body, f"sha256={expected}")


def test_the_ticket_url_is_read_from_the_usual_fields_and_must_be_a_web_url():
    assert ticket_url_of({"url": "https://t.example/1"}) == "https://t.example/1"
    assert ticket_url_of({"ticket_url": "https://t.example/2", "url": "x"}) == "https://t.example/2"
    assert ticket_url_of({"ticket": {"url": "http://t.example/3"}}) == "http://t.example/3"
    assert ticket_url_of({"url": "javascript:alert(1)"}) is None
    assert ticket_url_of(["https://t.example/4"]) is None
    # Only a URL a case's link may hold: the catalog refused these when the link was added.
    assert ticket_url_of({"ticket_url": "https://t.example/a b", "url": "https://t.example/5"}) == (
        "https://t.example/5"
    )
    assert ticket_url_of({"url": "https://t.example/" + "x" * 2000}) is None
