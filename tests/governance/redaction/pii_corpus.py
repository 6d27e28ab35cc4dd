"""A synthetic PII corpus mixed into real AIID incidents: every detector's kinds in several
spellings, at JSON depths 1..5 and inside free text, with the list of literal values a leak
check greps for.

Values are random per run (seeded), so a literal found anywhere came from this corpus.
"""

from __future__ import annotations

import base64
import random
import string
from dataclasses import dataclass, field
from typing import Any

import orjson
import phonenumbers

from services.governance.redaction.detectors import luhn_ok
from tests.catalog.builders import unique
from tests.corpus import aiid_cases

SECRET_KEYS = [
    "password",
    "passwd",
    "db_password",
    "client_secret",
    "secret",
    "token",
    "access_token",
    "refreshToken",
    "api_key",
    "apiKey",
    "X-Api-Key",
    "Authorization",
    "cookie",
    "Set-Cookie",
    "private_key",
]
# Regions whose national spelling the phone detector reads, and others written
# internationally only.
NATIONAL_REGIONS = ["US", "GB", "FR"]
INTERNATIONAL_REGIONS = ["DE", "JP", "BR", "IN", "AU", "CH"]
IBAN_SHAPES = {  # country: BBAN as (kind, length) runs; n digits, a upper-case letters
    "DE": [("n", 18)],
    "GB": [("a", 4), ("n", 14)],
    "FR": [("n", 10), ("n", 11), ("n", 2)],
    "NL": [("a", 4), ("n", 10)],
    "ES": [("n", 20)],
    "IT": [("a", 1), ("n", 10), ("n", 12)],
    "BE": [("n", 12)],
    "CH": [("n", 17)],
}


@dataclass
class Corpus:
    cases: list[dict[str, Any]]
    # literal -> kind: each must be absent from every sink
    literals: dict[str, str] = field(default_factory=dict)
    kinds: set[str] = field(default_factory=set)


class Generator:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def _word(self, n: int = 6) -> str:
        return "".join(self.rng.choice(string.ascii_lowercase) for _ in range(n))

    def _digits(self, n: int) -> str:
        return "".join(self.rng.choice(string.digits) for _ in range(n))

    def email(self) -> str:
        local = f"{self._word(5)}.{self._word(7)}"
        if self.rng.random() < 0.3:
            local += f"+{self._word(3)}"
        domain = self.rng.choice(["example.com", "mail.example.org", "corp.example.co.uk"])
        value = f"{local}@{self._word(4)}{domain}"
        return value.title() if self.rng.random() < 0.2 else value

    def phone(self) -> str:
        while True:
            if self.rng.random() < 0.5:
                region = self.rng.choice(NATIONAL_REGIONS)
                fmt = self.rng.choice(
                    [
                        phonenumbers.PhoneNumberFormat.NATIONAL,
                        phonenumbers.PhoneNumberFormat.E164,
                        phonenumbers.PhoneNumberFormat.INTERNATIONAL,
                    ]
                )
            else:
                region = self.rng.choice(INTERNATIONAL_REGIONS)
                fmt = self.rng.choice(
                    [
                        phonenumbers.PhoneNumberFormat.E164,
                        phonenumbers.PhoneNumberFormat.INTERNATIONAL,
                    ]
                )
            example = phonenumbers.example_number(region)
            national = str(example.national_number)
            # Vary the subscriber part; keep only numbers libphonenumber calls valid.
            varied = national[:-4] + self._digits(4)
            number = phonenumbers.parse("+" + str(example.country_code) + varied, None)
            if phonenumbers.is_valid_number(number):
                return phonenumbers.format_number(number, fmt)

    def card(self) -> str:
        prefix, length = self.rng.choice([("4", 16), ("51", 16), ("55", 16), ("37", 15)])
        body = prefix + self._digits(length - len(prefix) - 1)
        check = next(d for d in string.digits if luhn_ok(body + d))
        digits = body + check
        style = self.rng.choice(["plain", "spaces", "dashes"])
        if style == "plain":
            return digits
        groups = [4, 6, 5] if length == 15 else [4, 4, 4, 4]
        parts, at = [], 0
        for g in groups:
            parts.append(digits[at : at + g])
            at += g
        return (" " if style == "spaces" else "-").join(parts)

    def iban(self) -> str:
        country = self.rng.choice(list(IBAN_SHAPES))
        bban = "".join(
            self._digits(n)
            if kind == "n"
            else "".join(self.rng.choice(string.ascii_uppercase) for _ in range(n))
            for kind, n in IBAN_SHAPES[country]
        )
        moved = bban + country + "00"
        check = 98 - int("".join(str(int(ch, 36)) for ch in moved)) % 97
        compact = f"{country}{check:02d}{bban}"
        if self.rng.random() < 0.5:
            return " ".join(compact[i : i + 4] for i in range(0, len(compact), 4))
        return compact

    def ipv4(self) -> str:
        # Not 127/8: a loopback address names no host (the detectors leave it, as prose
        # about `127.0.0.1` is no personal data).
        first = self.rng.choice([n for n in range(11, 224) if n != 127])
        return ".".join([str(first)] + [str(self.rng.randint(11, 223)) for _ in range(3)])

    def ipv6(self) -> str:
        groups = [f"{self.rng.randint(0x1000, 0xFFFF):x}" for _ in range(8)]
        if self.rng.random() < 0.5:
            return ":".join(groups)
        return ":".join(groups[:3]) + "::" + ":".join(groups[6:])

    def ssn(self) -> str:
        area = self.rng.choice([self.rng.randint(1, 665), self.rng.randint(667, 899)])
        sep = self.rng.choice(["-", " "])
        return f"{area:03d}{sep}{self.rng.randint(1, 99):02d}{sep}{self.rng.randint(1, 9999):04d}"

    def aws_key(self) -> str:
        alphabet = string.ascii_uppercase + "234567"
        return self.rng.choice(["AKIA", "ASIA"]) + "".join(
            self.rng.choice(alphabet) for _ in range(16)
        )

    def jwt(self) -> str:
        def b64(data: bytes) -> str:
            return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

        header = b64(orjson.dumps({"alg": self.rng.choice(["HS256", "RS256"]), "typ": "JWT"}))
        payload = b64(orjson.dumps({"sub": self._word(10), "iat": self.rng.randint(1, 10**9)}))
        return f"{header}.{payload}.{b64(self.rng.randbytes(32))}"

    def pem(self) -> tuple[str, list[str]]:
        label = self.rng.choice(["RSA PRIVATE KEY", "PRIVATE KEY", "EC PRIVATE KEY"])
        body = base64.b64encode(self.rng.randbytes(120)).decode()
        lines = [body[i : i + 64] for i in range(0, len(body), 64)]
        text = f"-----BEGIN {label}-----\n" + "\n".join(lines) + f"\n-----END {label}-----"
        return text, [ln for ln in lines if len(ln) >= 16]

    def secret_value(self) -> str:
        return f"{self._word(4)}-{self.rng.randbytes(9).hex()}"


VALUE_KINDS = ["email", "phone", "card", "iban", "ipv4", "ipv6", "ssn", "aws_key", "jwt"]


def _nest(value: Any, depth: int, rng: random.Random, key: str) -> Any:
    """`value` at JSON depth `depth` (1: {key: value}), through dicts and lists."""
    node: Any = {key: value}
    for level in range(depth - 1):
        node = [node] if rng.random() < 0.3 else {f"level{depth - level - 1}": node}
    return node


def build(n_cases: int = 30, seed: int = 12) -> Corpus:
    gen = Generator(seed)
    rng = gen.rng
    cases = unique(aiid_cases(n_cases))
    corpus = Corpus(cases)

    def note(value: str, kind: str) -> str:
        corpus.literals[value] = kind
        corpus.kinds.add(kind)
        return value

    def value_of(kind: str) -> str:
        return note(getattr(gen, kind)(), kind)

    for i, case in enumerate(cases):
        kinds = VALUE_KINDS[i % len(VALUE_KINDS) :] + VALUE_KINDS[: i % len(VALUE_KINDS)]
        # Free text: the real description with PII spliced between its sentences.
        sentences = (case.get("summary") or "").split(". ")
        for kind in kinds[:3]:
            at = rng.randint(0, len(sentences))
            sentences.insert(at, f"Contact on file: {value_of(kind)}")
        case["summary"] = ". ".join(sentences)
        case["title"] = f"{case['title']} (reported by {value_of('email')})"
        case["impact"] = f"Customer {value_of('phone')} affected; card {value_of('card')}"
        case["writeup"] = {"hypothesis": f"Leaked key {value_of('aws_key')} in logs"}
        # Payload blobs at depths 1..5, real content kept beside.
        payload = case.get("input") or {}
        for depth, kind in enumerate(kinds[3:8], start=1):
            payload[f"{kind}_d{depth}"] = _nest(value_of(kind), depth, rng, "value")
        secret_key = SECRET_KEYS[i % len(SECRET_KEYS)]
        secret = note(gen.secret_value(), "secret")
        if secret_key == "Authorization":
            payload["headers"] = _nest(f"Bearer {secret}", 1 + i % 5, rng, secret_key)
        else:
            payload["auth"] = _nest(secret, 1 + i % 5, rng, secret_key)
        pem, pem_lines = gen.pem()
        for line in pem_lines:
            note(line, "private_key")
        payload["deploy"] = {"key_material": pem} if i % 2 else {"notes": [pem]}
        case["input"] = payload
        case["prediction"] = {"label": "safe", "reviewer": {"email": value_of("email")}}
        case["expected"] = {"label": "harmful", "evidence": [f"seen from {value_of('ipv4')}"]}
        case["signals"] = {"drift_score": 0.3, "client": {"ip": value_of("ipv6")}}
        case["environment"] = {**case["environment"], "operator_phone": value_of("phone")}
        if i % 3 == 0:
            case["signals"]["session"] = {"jwt": value_of("jwt"), "ssn": value_of("ssn")}
    return corpus
