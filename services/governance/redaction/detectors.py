"""PII detectors: a candidate regex per kind, then a validator, so shapes that only look like
PII (a card number failing Luhn, an IBAN failing mod 97, `999-12-3456`) are left alone.

`detect(text)` answers the non-overlapping findings of one string; `worth_scanning(blob)`
is the cheap pre-filter the ingest path runs on a whole case's serialized text first: most
cases carry nothing that even looks like PII, and they pay one regex search, not a walk.

Secrets named by their JSON key (password, token, api_key ...) are the walker's business
(services/governance/redaction/service.py): `is_secret_key` says which keys they are.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import itertools
import re
from dataclasses import dataclass

import orjson
import phonenumbers

# Regions whose national formats ("(202) 456-1111", "020 7946 0958", "01 23 45 67 89") are
# recognized; any number written internationally (+44 ..., 0044 ...) is recognized whatever
# its country. Germany's variable-length numbers are left out on purpose: dates such as
# 2026-11-02 parse as valid German numbers.
PHONE_REGIONS = ("US", "GB", "FR")
_TRUNK_ZERO = frozenset({"GB", "FR"})


@dataclass(frozen=True, slots=True)
class Finding:
    kind: str
    start: int
    end: int
    # The value in one spelling (digits of a card, E.164 of a phone, lower-case email):
    # what a keyed hash covers, so equal values hash alike however they were written.
    normal: str


# ---- validators --------------------------------------------------------------------------


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


# Issuer prefixes (IIN ranges) of the card networks: a Luhn-valid 16-digit number that no
# network issues is a counter or an id, not a card.
_CARD_PREFIX = re.compile(
    r"^(?:4\d{12}(?:\d{3}){0,2}"  # Visa: 13, 16 or 19 digits
    r"|5[1-5]\d{14}|2(?:2[2-9][1-9]|2[3-9]\d|[3-6]\d\d|7[01]\d|720)\d{12}"  # Mastercard
    r"|3[47]\d{13}"  # American Express
    r"|6(?:011|5\d\d|4[4-9]\d)\d{12,15}"  # Discover
    r"|35(?:2[89]|[3-8]\d)\d{12,15}"  # JCB
    r"|3(?:0[0-5]|[68]\d)\d{11,16}"  # Diners Club
    r"|62\d{14,17})$"  # UnionPay
)


def card_ok(digits: str) -> bool:
    return 13 <= len(digits) <= 19 and bool(_CARD_PREFIX.match(digits)) and luhn_ok(digits)


# IBAN length per country (ISO 13616 registry).
_IBAN_LENGTHS = {
    **dict.fromkeys(["NO"], 15),
    **dict.fromkeys(["BE"], 16),
    **dict.fromkeys(["DK", "FI", "FO", "GL", "NL"], 18),
    **dict.fromkeys(["MK", "SI"], 19),
    **dict.fromkeys(["AT", "BA", "EE", "KZ", "LT", "LU", "XK"], 20),
    **dict.fromkeys(["CH", "CR", "HR", "LI", "LV"], 21),
    **dict.fromkeys(["BG", "BH", "DE", "GB", "GE", "IE", "ME", "RS", "VA"], 22),
    **dict.fromkeys(["AE", "GI", "IL", "IQ", "TL"], 23),
    **dict.fromkeys(["AD", "CZ", "ES", "MD", "PK", "RO", "SA", "SE", "SK", "TN", "VG"], 24),
    **dict.fromkeys(["PT", "ST"], 25),
    **dict.fromkeys(["IS", "TR"], 26),
    **dict.fromkeys(["FR", "GR", "IT", "MC", "MR", "SM"], 27),
    **dict.fromkeys(["AL", "AZ", "BY", "CY", "DO", "GT", "HU", "LB", "PL", "SV"], 28),
    **dict.fromkeys(["BR", "EG", "PS", "QA", "UA"], 29),
    **dict.fromkeys(["JO", "KW", "MU"], 30),
    **dict.fromkeys(["MT", "SC"], 31),
    **dict.fromkeys(["LC"], 32),
}


def iban_ok(compact: str) -> bool:
    if _IBAN_LENGTHS.get(compact[:2]) != len(compact):
        return False
    moved = compact[4:] + compact[:4]
    return int("".join(str(int(ch, 36)) for ch in moved)) % 97 == 1


def ssn_ok(area: str, group: str, serial: str) -> bool:
    """SSA rules: no area 000, 666 or 900-999, no group 00, no serial 0000."""
    a = int(area)
    return a != 0 and a != 666 and a < 900 and group != "00" and serial != "0000"


def email_ok(local: str, domain: str) -> bool:
    if len(local) > 64 or len(domain) > 253 or local.startswith(".") or ".." in local:
        return False
    if not any(c.isalnum() for c in local):  # "`@router.post" in code is no mailbox
        return False
    labels = domain.split(".")
    if len(labels) < 2 or not labels[-1].isalpha() or len(labels[-1]) < 2:
        return False
    return all(
        0 < len(lb) <= 63 and not lb.startswith("-") and not lb.endswith("-") for lb in labels
    )


def _b64url(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def jwt_ok(token: str) -> bool:
    """Three base64url parts whose header is a JSON object naming its `alg`."""
    parts = token.split(".")
    if len(parts) != 3:
        return False
    try:
        header = orjson.loads(_b64url(parts[0]))
        _b64url(parts[1])
    except (ValueError, binascii.Error):
        return False
    return isinstance(header, dict) and "alg" in header


def pem_ok(body: str) -> bool:
    try:
        return len(base64.b64decode("".join(body.split()), validate=True)) > 16
    except (ValueError, binascii.Error):
        return False


def _nobody(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Addresses that identify no host or person: loopback, unspecified, multicast, and (v4
    only: v6's "reserved" spans most of its space) 240/4 (documentation prose names
    `127.0.0.1` and `::1`; they are not personal data)."""
    if addr.is_loopback or addr.is_unspecified or addr.is_multicast:
        return True
    return addr.version == 4 and addr.is_reserved


# ---- candidates ---------------------------------------------------------------------------

_EMAIL = re.compile(
    r"([A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+)@([A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)"
)
_CARD = re.compile(r"(?<![\d-])\d{4}(?:[ -]?\d{2,6}){2,5}(?![\d-])")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{1,4}){3,8}\b")
_SSN = re.compile(r"(?<![\d-])(\d{3})([- ])(\d{2})\2(\d{4})(?![\d-])")
# A dotted quad after a version word is a release number (h2o-3 "version 3.46.0.1",
# "prior to 23.11.4.1", a release's URL ".../releases/tag/3.41.2.2"), and after "step" or
# "section" a section number ("steps 5.4.3.1"), found by the hundred in vulnerability
# reports (AVID).
_VERSION_BEFORE = re.compile(
    r"(?:\bv|\bver\b\.?|\bversions?(?:\(s\))?|\breleases?(?:/tags?)?|\bprior to|\bthrough"
    r"|\bup to|\bsteps?|\bsections?)"
    r"[\s:`'\"(/]*(?:\d[\w.-]*(?:,|\s+and|\s+or)?\s+)*$",
    re.IGNORECASE,
)
# So is one right after a software name shaped letters, a digit or two, letters, maybe "-N"
# (h2o-3 in "h2oai h2o-3 3.46.0.4", log4j, k8s): no person's name, no address word (host,
# from, client, IPv4), no interface (eth0) or host name (web-01) is written so, nor a hex id
# (a1b2c3, 3f2a9c). A plain word is not enough: "Python 3.x" reads as "Alice 10.0.0.5" does.
_PRODUCT_BEFORE = re.compile(r"(?<![\w.-])[A-Za-z]+\d{1,2}[A-Za-z]+(?:-\d+)? $")
_IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.]*\d)")
_IPV6 = re.compile(
    r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:(?:\d{1,3}\.){3}\d{1,3}|[0-9A-Fa-f]{1,4})?(?![\w:]|\.\d)"
)
# A dot only between digits (202.456.1111): one that ends a sentence ("... in 2013. (202)
# 456-1111") would join the year to the number and hide it in one invalid candidate.
_PHONE = re.compile(r"(?<![\w+.-])(?:\+|00)?\(?\d(?:[\d ()-]|\.(?=\d)){5,20}\d(?![\w-]|\.\d)")
_AWS = re.compile(r"\b(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AIPA|ANPA|ANVA|AROA|APKA)[A-Z2-7]{16}\b")
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*")
_PEM = re.compile(
    r"-----BEGIN ((?:RSA |EC |DSA |OPENSSH |ENCRYPTED )?PRIVATE KEY)-----(.*?)-----END \1-----",
    re.S,
)
# A secret written out in free text: "password=...", "api_key: ...", "Authorization: Bearer ..."
# Never a mask redaction wrote (`password=[SECRET]`, `[SECRET:hmac:<hex>]`, the latter
# itself read as "SECRET: <value>"): text already redacted is scanned again by edits and
# imports, and must come out as it went in. The kinds are the masks' (service.MASKS).
_MASKED = (
    r"(?-i:\[(?:EMAIL|PHONE|IBAN|IPV4|IPV6|SSN|SECRET|AWS_KEY|JWT|PRIVATE_KEY)"
    r"(?::hmac:[0-9a-f]{16})?\]|hmac:[0-9a-f]{16}\])"
)
_MASK = re.compile(_MASKED)


def is_mask(text: str) -> bool:
    """A value that is one mask redaction wrote (`[SECRET]`, `[SECRET:hmac:<hex>]`): under a
    secret key it is what ingest left there, not a secret to redact again."""
    return _MASK.fullmatch(text) is not None


_TEXT_SECRET = re.compile(
    r"(?i)\b(?:pass(?:word|wd|phrase)|pwd|secret|client[_-]?secret|api[_-]?key|access[_-]?token"
    r"|auth[_-]?token|refresh[_-]?token|authorization)\b[\"']?\s*[:=]\s*[\"']?"
    rf"(?!(?:(?:bearer|basic|token)\s+)?{_MASKED})"
    r"(?:(?:bearer|basic|token)\s+)?([^\s\"',;]{4,})"
)
_DATE_LIKE = re.compile(r"^\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|^\d{1,2}[-/.]\d{1,2}[-/.]\d{4}$")
_DIGITS = re.compile(r"\d")

# The pre-filter: a necessary condition for any detector above to find anything, in C-speed
# bytes operations only: a regex over every byte of every case costs as much as validating
# the case, and so would a substring test per secret word over a case's prose. So:
# - markers are substring tests, the rarer ones behind a one-byte (memchr) test;
# - digit shapes are tested on the bytes translated to classes, separators ( -()/) deleted:
#   digits become '0', '.' 'd', anything else 'x'; a phone, card, SSN or IBAN shows as seven
#   '0' after an 'x', while a float's decimals follow a 'd'; dotted quads leave '...' once
#   digits are deleted, IPv6 addresses '::' once hex digits are;
# - secret words matter as JSON keys (tested on the keys alone, `keys`) and in text followed
#   by '=' or ': ' (orjson writes no space after its own colons, and '=' is never JSON syntax).
_KEY_WORDS = (
    "pass",
    "pwd",
    "secret",
    "token",
    "api",
    "authori",
    "cookie",
    "credential",
    "private",
)
_SECRET_KEY_WORDS = "|".join(_KEY_WORDS)
_SEPARATORS = b" -()/"
# Separators are classed 's' and then deleted; a dot followed by one ends a sentence
# ("declined. 4111 1111 ...", "call us. (202) ..."), it is not a float's point: 'ds' becomes
# 'x' first (deleted outright, the digits after it read as decimals and were never scanned).
_CLASSES = bytes(
    ord("0")
    if chr(i).isdigit()
    else ord("d")
    if i == 0x2E
    else ord("s")
    if i in _SEPARATORS
    else ord("x")
    for i in range(256)
)
_DIGITS_B = b"0123456789"
_HEX_B = b"0123456789abcdefABCDEF"


def worth_scanning(serialized: bytes, keyed: bytes | None = None) -> bool:
    """False when nothing in `serialized` (orjson's compact JSON) even looks like PII or a
    secret. Secret words are looked for in `keyed` (the part holding JSON objects, whose keys
    may name secrets; default all of it), and elsewhere only before '=' or ': '. Chained
    tests, not loops: this runs for every case ingested."""
    s = serialized
    if (
        b"@" in s
        or b"IA" in s  # AKIA, ASIA access key ids
        or (b"J" in s and b"eyJ" in s)
        or (b"G" in s and b"-----BEGIN" in s)
    ):
        return True
    if keyed is None or b"=" in s or b": " in s:
        keyed = s
    if _secret_word(keyed.lower()):
        return True
    classes = s.translate(_CLASSES).replace(b"ds", b"x").translate(None, b"s")
    return (
        b"x0000000" in classes
        or b"000d000d0000" in classes
        or b"..." in s.translate(None, _DIGITS_B)
        or b"::" in s.translate(None, _HEX_B)  # compressed or full IPv6 (or a clock time)
    )


def _secret_word(w: bytes) -> bool:
    return (
        b"pass" in w
        or b"pwd" in w
        or b"secret" in w
        or b"token" in w
        or b"api" in w
        or b"authori" in w
        or b"cookie" in w
        or b"credential" in w
        or b"private" in w
    )


def maybe_pii(text: str) -> bool:
    return worth_scanning(b'"' + text.encode() + b'"')  # as inside JSON: quoted


# ---- secret keys --------------------------------------------------------------------------

_WORDS = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+")
_SECRET_WORDS = frozenset(
    {
        "password",
        "passwd",
        "passphrase",
        "pwd",
        "secret",
        "token",
        "apikey",
        "authorization",
        "cookie",
        "credential",
        "credentials",
        "privatekey",
    }
)
# A key naming something about a secret rather than the secret: max_token, token_count.
_NOT_SECRET_WORDS = frozenset(
    {"count", "max", "min", "num", "limit", "length", "len", "type", "usage", "ttl", "expiry"}
    | {"expires", "expiration", "name", "id", "ids", "policy", "required", "hint"}
)


def is_secret_key(key: str) -> bool:
    """A JSON key whose value is a secret whatever it looks like: password, client_secret,
    accessToken, X-Api-Key, Authorization, Cookie ... (not max_tokens or token_count)."""
    if not _KEY_HINT.search(key):
        return False
    words = [w.lower() for w in _WORDS.findall(key)]
    joined = {a + b for a, b in itertools.pairwise(words)}  # api+key, private+key
    hits = (set(words) | joined) & _SECRET_WORDS
    return bool(hits) and not (set(words) & _NOT_SECRET_WORDS)


_KEY_HINT = re.compile(_SECRET_KEY_WORDS, re.I)


# ---- detection ----------------------------------------------------------------------------


def _phone(candidate: str) -> str | None:
    """The E.164 form of a valid phone number written as `candidate`, else None. A national
    number needs some formatting (a separator or parentheses): a bare run of digits is an
    id far more often than a phone number."""
    text = candidate.strip(" .-")
    digits = sum(ch.isdigit() for ch in text)
    if not 7 <= digits <= 15 or _DATE_LIKE.match(text):
        return None
    international = text.startswith(("+", "00"))
    if not international and text.isdigit():
        return None
    if international:
        regions: tuple[str | None, ...] = (None,)
    else:
        # A national number starts with its trunk prefix where the country has one (0 in
        # Britain and France), never with it in North America.
        trunk = text.lstrip("(").startswith("0")
        regions = tuple(r for r in PHONE_REGIONS if (r in _TRUNK_ZERO) == trunk)
    if text.startswith("00"):
        text = "+" + text[2:]
    for region in regions:
        try:
            number = phonenumbers.parse(text, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(number):
            return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return None


def _find_all(text: str) -> list[Finding]:
    """Every validated candidate of every kind, overlapping ones included."""
    out: list[Finding] = []
    add = out.append
    if "-----BEGIN" in text:
        for m in _PEM.finditer(text):
            if pem_ok(m.group(2)):
                add(Finding("private_key", m.start(), m.end(), m.group(0)))
    if "eyJ" in text:
        for m in _JWT.finditer(text):
            if jwt_ok(m.group(0)):
                add(Finding("jwt", m.start(), m.end(), m.group(0)))
    if "IA" in text:
        for m in _AWS.finditer(text):
            add(Finding("aws_key", m.start(), m.end(), m.group(0)))
    if _KEY_HINT.search(text):
        for m in _TEXT_SECRET.finditer(text):
            add(Finding("secret", m.start(1), m.end(1), m.group(1)))
    if "@" in text:
        for m in _EMAIL.finditer(text):
            local, domain = m.group(1), m.group(2)
            if email_ok(local, domain):
                # Case-folded whole: mail systems treat local parts alike in any case.
                add(Finding("email", m.start(), m.end(), f"{local}@{domain}".lower()))
    if not _DIGITS.search(text):
        return out
    for m in _IBAN.finditer(text):
        compact = m.group(0).replace(" ", "")
        # A trailing word can join the match; try the longest valid prefix of whole groups.
        while len(compact) >= 15:
            if iban_ok(compact):
                end = m.start()
                seen = 0
                while seen < len(compact):  # the span of `compact` within the match
                    if text[end] != " ":
                        seen += 1
                    end += 1
                add(Finding("iban", m.start(), end, compact))
                break
            compact = compact[:-1]
    for m in _CARD.finditer(text):
        digits = m.group(0).replace(" ", "").replace("-", "")
        if card_ok(digits):
            add(Finding("card", m.start(), m.end(), digits))
    for m in _SSN.finditer(text):
        if ssn_ok(m.group(1), m.group(3), m.group(4)):
            add(Finding("ssn", m.start(), m.end(), m.group(1) + m.group(3) + m.group(4)))
    if "." in text:
        for m in _IPV4.finditer(text):
            try:
                addr = ipaddress.IPv4Address(m.group(0))
            except ValueError:
                continue
            before = max(0, m.start() - 40)
            if (
                _nobody(addr)
                or _VERSION_BEFORE.search(text, before, m.start())
                or _PRODUCT_BEFORE.search(text, before, m.start())
            ):
                continue
            add(Finding("ipv4", m.start(), m.end(), str(addr)))
    if text.count(":") >= 2:
        for m in _IPV6.finditer(text):
            value = m.group(0)
            if not _DIGITS.search(value):  # a::b is C++ far more often than an address
                continue
            try:
                addr6 = ipaddress.IPv6Address(value)
            except ValueError:
                continue
            if _nobody(addr6) or (addr6.ipv4_mapped is not None and _nobody(addr6.ipv4_mapped)):
                continue
            add(Finding("ipv6", m.start(), m.end(), addr6.compressed))
    for m in _PHONE.finditer(text):
        if found := _phone_in(m.group(0)):
            start, end, e164 = found
            add(Finding("phone", m.start() + start, m.start() + end, e164))
    return out


_GROUP = re.compile(r"\S+")
_YEAR = re.compile(r"(?:19|20)\d\d")


def _phone_in(candidate: str) -> tuple[int, int, str] | None:
    """(start, end, E.164) of the phone number a candidate is or holds. A year before it or a
    count after it joins the number in one candidate that as a whole is no number ("in 2013
    (202) 456-1111", "(202) 456-1111 24 times"), so a candidate that is none may drop a year
    before it, or any groups before a number written as numbers start (+, 00, an area code
    in parentheses), and one group after it. Nothing else: the middle of a longer run of
    digits (an invalid IBAN's) is often a valid number of some country."""
    groups = [g.span() for g in _GROUP.finditer(candidate)]
    starts = [0] + [
        start
        for n, (start, _) in enumerate(groups[1:], start=1)
        if candidate.startswith(("+", "00", "("), start)
        or (n == 1 and _YEAR.fullmatch(candidate, 0, groups[0][1]))
    ]
    ends = [groups[-1][1]] + ([groups[-2][1]] if len(groups) > 1 else [])
    for end in ends:
        for start in (s for s in starts if s < end):
            span = candidate[start:end]
            e164 = _phone(span)
            if e164 is not None:
                lead = len(span) - len(span.lstrip(" .-"))
                return start + lead, start + len(span.rstrip(" .-")), e164
    return None


# When two findings overlap, the more specific kind wins (a card is also phone-shaped).
_PRIORITY = {
    kind: rank
    for rank, kind in enumerate(
        (
            "private_key",
            "jwt",
            "aws_key",
            "secret",
            "email",
            "iban",
            "card",
            "ssn",
            "ipv6",
            "ipv4",
            "phone",
        )
    )
}


def detect(text: str) -> list[Finding]:
    """The findings of `text`, non-overlapping, in order of position."""
    if not text or not maybe_pii(text):
        return []
    found = _find_all(text)
    if not found:
        return []
    found.sort(key=lambda f: (_PRIORITY[f.kind], f.start - f.end))
    kept: list[Finding] = []
    for f in found:
        if all(f.end <= k.start or f.start >= k.end for k in kept):
            kept.append(f)
    kept.sort(key=lambda f: f.start)
    return kept
