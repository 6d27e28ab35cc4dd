"""Which webhook destinations the sender refuses when only public addresses are allowed."""

from __future__ import annotations

import pytest

from services.governance.escalation.delivery import private_destination
from shared.settings import Settings


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9000/hook",
        "http://localhost/hook",
        "https://10.1.2.3/hook",
        "http://192.168.0.7:8080/",
        "http://169.254.169.254/latest/meta-data/",  # the cloud metadata service
        "http://[::1]:9000/hook",
        "http://0.0.0.0/hook",
    ],
)
async def test_a_host_that_is_or_resolves_to_a_non_public_address_is_refused(url):
    why = await private_destination(url)
    assert why is not None and why.startswith("refused: ") and "not a public address" in why


@pytest.mark.parametrize(
    "url",
    [
        "https://93.184.216.34/hook",
        "http://[2606:4700:4700::1111]:8443/hook",
        "http://no-such-host.invalid/hook",  # does not resolve: the POST fails and says so
    ],
)
async def test_a_public_address_or_an_unresolvable_name_is_not_refused(url):
    assert await private_destination(url) is None


def test_private_destinations_are_refused_by_default_in_production_only():
    assert Settings(env="development").private_webhooks_allowed is True
    assert Settings(env="production").private_webhooks_allowed is False
    allowed = Settings(env="production", webhook_private_destinations=True)
    assert allowed.private_webhooks_allowed is True
    assert Settings(webhook_private_destinations=False).private_webhooks_allowed is False
