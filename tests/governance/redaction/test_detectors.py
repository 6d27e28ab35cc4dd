"""Each detector on valid values (found, in several spellings) and on look-alikes that fail
its validation (left alone): a detector is its validator, not its regex."""

from __future__ import annotations

import json

import pytest

from services.governance.redaction.detectors import (
    card_ok,
    detect,
    iban_ok,
    is_secret_key,
    worth_scanning,
)
from tests.corpus import CORPORA

JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
    "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
)
PEM = (
    "-----BEGIN RSA PRIVATE KEY-----\n"
    "MIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu\n"
    "KUpRKfFLfRYC9AIKjbJTWit+CqvjWYzvQwECAwEAAQJAIJLixBy2qpFoS4DSmoEm\n"
    "-----END RSA PRIVATE KEY-----"
)

VALID = [
    ("email", "jane.doe+ml@example.co.uk"),
    ("email", "X_Y@sub.example.org"),
    ("phone", "+1 415-555-2671"),
    ("phone", "+14155552671"),
    ("phone", "(202) 456-1111"),
    ("phone", "202.456.1111"),
    ("phone", "020 7946 0958"),
    ("phone", "+44 20 7946 0958"),
    ("phone", "01 23 45 67 89"),
    ("phone", "+33 1 23 45 67 89"),
    ("phone", "0049 30 123456"),
    ("card", "4111 1111 1111 1111"),
    ("card", "4111-1111-1111-1111"),
    ("card", "5500005555555559"),
    ("card", "3782 822463 10005"),
    ("iban", "DE89 3704 0044 0532 0130 00"),
    ("iban", "GB82WEST12345698765432"),
    ("iban", "FR1420041010050500013M02606"),
    ("iban", "NL91ABNA0417164300"),
    ("ipv4", "192.168.1.20"),
    ("ipv4", "8.8.8.8"),
    ("ipv6", "2001:db8::8a2e:370:7334"),
    ("ipv6", "fe80::1"),
    ("ipv6", "::ffff:10.0.0.1"),
    ("ssn", "123-45-6789"),
    ("ssn", "321 54 9876"),
    ("aws_key", "AKIAIOSFODNN7EXAMPLE"),
    ("aws_key", "ASIAY34FZKBOKMUTVV7A"),
    ("jwt", JWT),
    ("private_key", PEM),
]

# Shapes that pass the candidate regex but fail validation: never redacted.
INVALID = [
    "4111 1111 1111 1112",  # Luhn fails
    "4111-1111-1111-1121",  # Luhn fails
    "1234 5678 9012 3452",  # Luhn holds, but no network issues 1...
    "DE89 3704 0044 0532 0130 01",  # mod 97 fails
    "GB82WEST12345698765433",  # mod 97 fails
    "XX82WEST12345698765432",  # no such country
    "666-12-3456",  # area 666
    "000-12-3456",  # area 000
    "912-34-5678",  # area 9xx
    "123-00-4567",  # group 00
    "123-45-0000",  # serial 0000
    "999.1.2.3",  # not an IPv4 address
    "10:30:00",  # a time, not an IPv6 address
    "std::vector",  # C++, not an address
    "2026-11-02",  # a date, not a phone number
    "2026-11-02T14:03:11Z",
    "2345678901",  # a bare id: phones need formatting or a +
    "0.41442451883910536",
    "user@localhost",  # no top-level domain
    "a@b.c",  # one-letter top-level domain
    "eyJub3QiOiJhIGp3dCJ9.eyJzdWIiOiIxIn0.sig",  # header without alg
    "-----BEGIN PRIVATE KEY-----\nnot base64 at all!\n-----END PRIVATE KEY-----",
    "AKIA1234",  # too short for an access key id
    "version 7.8.1 of m-2922",
    # Real vulnerability reports (AVID): release numbers and addresses that name no host.
    "fixed in version 3.41.2.2",
    "h2o-3 versions 3.46.0.4 and 3.46.0.1",
    "prior to 23.11.4.1",
    "v23.11.4.1",
    "loopback (`127.0.0.1`, `::1`, `::ffff:127.0.0.1`)",
    "within the `@router.post(",  # a decorator, not a mailbox
]


@pytest.mark.parametrize(("kind", "value"), VALID, ids=[f"{k}:{v[:24]}" for k, v in VALID])
def test_a_valid_value_is_found_alone_and_inside_text(kind, value):
    assert [(f.kind, f.start, f.end) for f in detect(value)] == [(kind, 0, len(value))]
    text = f"Reported by ops: {value}. Please check."
    found = detect(text)
    assert [(f.kind, text[f.start : f.end]) for f in found] == [(kind, value)]
    assert worth_scanning(f'{{"x": "{text}"}}'.encode())


@pytest.mark.parametrize("value", INVALID)
def test_a_look_alike_that_fails_validation_is_not_found(value):
    assert detect(value) == []
    assert detect(f"see {value} here") == []


def test_a_version_word_spares_only_the_number_after_it():
    found = detect("upgrade to version 1.2.3.4 from host 203.0.113.77 or 10.0.0.8")
    assert [text for text in ("203.0.113.77", "10.0.0.8")] == [
        "upgrade to version 1.2.3.4 from host 203.0.113.77 or 10.0.0.8"[f.start : f.end]
        for f in found
    ]


def _avid_text(containing: str) -> str:
    """The one string of a real AVID report that holds `containing`."""
    with (CORPORA / "avid_reports.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            if containing in line:
                rec = json.loads(line)
                for value in (
                    rec["description"]["value"],
                    *(r["label"] for r in rec["references"]),
                ):
                    if containing in value:
                        return value
    raise AssertionError(f"no AVID report holds {containing!r}")


# Every dotted quad the IPv4 detector took in the real corpora before, none an address: a
# release after its product's name, a section number, a release's URL.
@pytest.mark.parametrize(
    ("containing", "quad"),
    [
        ("found in h2oai h2o-3 3.46.0.4.", "3.46.0.4"),
        ("(i.e., steps 5.4.3.1 and 5.5.5", "5.4.3.1"),
        ("sqlite-jdbc/releases/tag/3.41.2.2", "3.41.2.2"),
    ],
)
def test_a_version_in_a_real_avid_report_is_no_address(containing, quad):
    text = _avid_text(containing)
    assert quad in text
    assert [f for f in detect(text) if f.kind == "ipv4"] == []


@pytest.mark.parametrize(
    "text",
    [
        "h2o-3 3.46.0.4",
        "log4j 2.17.1.0",
        "v1.2.3.4",
        "V 1.2.3.4",
        "ver. 1.2.3.4",
        "release 1.2.3.4",
        "section 1.2.3.4",
    ],
)
def test_a_dotted_quad_read_as_a_version_is_left(text):
    assert detect(text) == []


# Addresses after words, names and ids that are no software name: still redacted.
@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("login from 10.0.0.1 failed", "10.0.0.1"),
        ("host 192.168.1.20 down", "192.168.1.20"),
        ("ip=203.0.113.5", "203.0.113.5"),
        ("client 8.8.8.8 sent", "8.8.8.8"),
        ("IPv4 203.0.113.9", "203.0.113.9"),
        ("Alice 10.0.0.5 logged in", "10.0.0.5"),
        ("Python 10.0.0.5", "10.0.0.5"),
        ("eth0 10.0.0.1", "10.0.0.1"),
        ("web-01 10.0.0.5", "10.0.0.5"),
        ("req-a1b2c3 10.0.0.5 GET /", "10.0.0.5"),
        ("vertex 10.0.0.1", "10.0.0.1"),
        ("h2o-3 on host 10.0.0.7", "10.0.0.7"),
        ("http://192.168.1.20/admin", "192.168.1.20"),
    ],
)
def test_an_address_after_no_version_word_or_software_name_is_found(text, address):
    assert [(f.kind, text[f.start : f.end]) for f in detect(text)] == [("ipv4", address)]


def test_validators_directly():
    assert card_ok("4111111111111111") and not card_ok("4111111111111112")
    assert iban_ok("DE89370400440532013000") and not iban_ok("DE89370400440532013001")


def test_equal_values_normalize_alike_across_spellings():
    spellings = {
        "card": ["4111 1111 1111 1111", "4111-1111-1111-1111", "4111111111111111"],
        "phone": ["+1 415-555-2671", "+14155552671", "(415) 555-2671"],
        "email": ["Jane@Example.com", "Jane@example.COM"],
    }
    for kind, values in spellings.items():
        normals = {f.normal for v in values for f in detect(v)}
        assert len(normals) == 1, (kind, normals)


def test_secret_keys_are_named_like_secrets_not_like_their_counts():
    for key in [
        "password",
        "passwd",
        "db_password",
        "client_secret",
        "token",
        "access_token",
        "accessToken",
        "api_key",
        "apiKey",
        "X-Api-Key",
        "Authorization",
        "cookie",
        "Set-Cookie",
        "privateKey",
        "aws_secret_access_key",
    ]:
        assert is_secret_key(key), key
    for key in ["max_tokens", "tokens", "token_count", "token_type", "secretary", "author"]:
        assert not is_secret_key(key), key


def test_secrets_written_out_in_text_are_found():
    text = "retry with password=hunter2-Zq9 and header Authorization: Bearer abc123def456"
    assert [(f.kind, text[f.start : f.end]) for f in detect(text)] == [
        ("secret", "hunter2-Zq9"),
        ("secret", "abc123def456"),
    ]


def test_overlaps_resolve_to_the_more_specific_kind():
    # A card number is phone-shaped too; an email's digits are not a phone.
    assert [f.kind for f in detect("pay 4111 1111 1111 1111 now")] == ["card"]
    assert [f.kind for f in detect("mail 2024561111@example.com")] == ["email"]


def test_the_prefilter_passes_ordinary_payloads_without_a_walk():
    ordinary = (
        b'{"amount":198.3,"currency":"EUR","merchant":"m-2922","features":[0.41442451883910536,'
        b'0.0015847499555259326],"region":"us-west-2","app_version":"7.8.1","max_tokens":256}'
    )
    assert not worth_scanning(ordinary.replace(b"max_tokens", b"max_len"))
    assert worth_scanning(b'{"password": "x"}')
