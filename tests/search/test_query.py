"""The query language: what parses to what, and what a malformed query is told."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.search.query import (
    And,
    Exists,
    MatchAll,
    Not,
    Or,
    Prefix,
    Range,
    Term,
    Text,
    parse,
)
from shared.errors import BadUserInput

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
DAY = 86_400_000
MAR10 = int(datetime(2026, 3, 10, tzinfo=UTC).timestamp() * 1000)


def ms(y: int, m: int, d: int) -> int:
    return int(datetime(y, m, d, tzinfo=UTC).timestamp() * 1000)


@pytest.mark.parametrize(
    ("query", "tree"),
    [
        ("", MatchAll()),
        ("timeout", Text("timeout")),
        ("refund fraud", And((Text("refund"), Text("fraud")))),
        ("refund AND fraud", And((Text("refund"), Text("fraud")))),
        ('"label noise"', Text("label noise", phrase=True)),
        ("title:refund", Text("refund", field="title")),
        ('summary:"scored as fraud"', Text("scored as fraud", phrase=True, field="summary")),
        ("status:resolved", Term("status", ("resolved",))),
        ("-status:resolved", Not(Term("status", ("resolved",)))),
        ("NOT status:resolved", Not(Term("status", ("resolved",)))),
        ("a OR b", MatchAll()),  # "a" is a stopword: matches everything, so the OR does too
        ("x OR y z", Or((Text("x"), And((Text("y"), Text("z")))))),
        ("(x OR y) z", And((Or((Text("x"), Text("y"))), Text("z")))),
        ("severity:S1", Term("severity", ("S1",))),
        ("severity:<=S1", Range("severity_rank", gte=0, lte=1)),
        ("severity:<S1", Term("severity", ("S0",))),
        ("severity:>S3", Term("severity", ("S4",))),
        ("severity:s1..s3", Range("severity_rank", gte=1, lte=3)),
        ("sensitivity:>=confidential", Term("sensitivity", ("confidential", "restricted"))),
        ("confidence:<0.3", Range("confidence", lt=0.3)),
        ("latency_ms:>500", Range("latency_ms", gt=500.0)),
        ("latency:500..*", Range("latency_ms", gte=500.0)),
        ("confidence:0.5", Range("confidence", gte=0.5, lte=0.5)),
        ("confidence:-1..0", Range("confidence", gte=-1.0, lte=0.0)),
        ("occurred:>now-7d", Range("occurred_at", gte=int(NOW.timestamp() * 1000) - 7 * DAY + 1)),
        (
            "occurred:2026-01-01..2026-02-01",
            Range("occurred_at", gte=ms(2026, 1, 1), lt=ms(2026, 2, 2)),
        ),
        ("occurred:2026-03-10", Range("occurred_at", gte=MAR10, lt=MAR10 + DAY)),
        ("occurred:<2026-03-10", Range("occurred_at", lt=MAR10)),
        ("occurred:<=2026-03-10", Range("occurred_at", lt=MAR10 + DAY)),
        ("occurred:>2026-03-10", Range("occurred_at", gte=MAR10 + DAY)),
        ("env.region:eu-west-1", Term("env.region", ("eu-west-1",))),
        ("environment.app_version:7.4.1", Term("env.app_version", ("7.4.1",))),
        ("env.region:*", Exists("env.region")),
        ("-team:*", Not(Exists("team"))),
        ("tag:refunds", Term("tags", ("refunds",))),
        (
            "failure_mode:label_noise",
            Or(
                (
                    Term("failure_mode", ("label_noise",)),
                    Term("failure_mode_parent", ("label_noise",)),
                )
            ),
        ),
        (
            "model:fraud-detector version:3.2.0",
            And((Term("model", ("fraud-detector",)), Term("model_version", ("3.2.0",)))),
        ),
        ("team:OR", Term("team", ("or",))),  # values are read raw (and folded)
        # Case: keywords are folded, a closed set's values take their one spelling.
        ("status:TRIAGED", Term("status", ("triaged",))),
        ("severity:s1", Term("severity", ("S1",))),
        ("sensitivity:Public", Term("sensitivity", ("public",))),
        ("tags:Privacy", Term("tags", ("privacy",))),
        ("model:ChatGPT", Term("model", ("chatgpt",))),
        ("env.region:EU-West-1", Term("env.region", ("eu-west-1",))),
        # Prefixes: words as written in text, folded values in keywords, and a closed set's
        # values that start so.
        ("injectio*", Text("injectio", prefix=True)),
        ("title:Injectio*", Text("Injectio", field="title", prefix=True)),
        ("input:prompt*", Text("prompt", field="input", prefix=True)),
        ("tags:Priv*", Prefix("tags", "priv")),
        ("env.region:eu-*", Prefix("env.region", "eu-")),
        ("status:IN_*", Term("status", ("in_remediation",))),
        ("severity:S*", Term("severity", ("S0", "S1", "S2", "S3", "S4"))),
        ("latency:500..*", Range("latency_ms", gte=500.0)),
        ("re-ranking", Text("re-ranking")),
    ],
)
def test_parses(query, tree):
    assert parse(query, NOW) == tree


@pytest.mark.parametrize(
    ("query", "column", "says"),
    [
        ("sevrity:S1", 1, "unknown field 'sevrity'; valid fields: after_event, agreement"),
        ("x env:eu", 3, "use env.<key>:value"),
        ("severity:S9", 10, "expected one of S0, S1, S2, S3, S4 for 'severity', got 'S9'"),
        ("severity:<=S9", 12, "got 'S9'"),
        ("(refund fraud", 14, "expected ')' to close '(' at column 1"),
        ("refund)", 7, "unexpected ')'"),
        ("refund OR", 8, "expected a term after OR"),
        ("OR refund", 1, "expected a term before OR"),
        ('"label noise', 1, "unterminated phrase"),
        ("title:", 7, "expected a value after 'title:'"),
        ("severity:<=", 12, "expected a value after 'severity:<='"),
        ("confidence:high", 12, "expected a number for 'confidence', got 'high'"),
        ("status:<new", 8, "field 'status' does not support '<'"),
        ("status:triagd", 8, "expected one of new, triaged, confirmed"),
        ("status:zz*", 8, "expected one of new, triaged"),
        ("a*", 1, "a prefix search takes 2 or more letters or digits before '*'"),
        ("x title:re-r*", 9, "a prefix search takes"),
        ("confidence:0.*", 12, "does not support a prefix"),
        ("title:>x", 7, "is full text and does not support '>'"),
        ("occurred:2026-13-01", 10, "expected a date for 'occurred'"),
        ("occurred:last-week", 10, "now-7d"),
        ("occurred:2026-01-01..", 10, "expected a range 'from..to'"),
        ("()", 2, "expected a term inside '()'"),
        ("x -", 3, "expected a term after '-'"),
    ],
)
def test_errors_name_the_column_and_what_was_expected(query, column, says):
    with pytest.raises(BadUserInput) as err:
        parse(query, NOW)
    message = err.value.errors[0].message
    assert err.value.errors[0].path == "query"
    assert message.startswith(f"column {column}: "), message
    assert says in message


def test_limits():
    with pytest.raises(BadUserInput, match="longer than 2000"):
        parse("x" * 2001)
    with pytest.raises(BadUserInput, match="nested deeper"):
        parse("(" * 40 + "x" + ")" * 40)
    with pytest.raises(BadUserInput, match="more than 200 terms"):
        parse(" ".join(f"w{i}" for i in range(201)))


def test_a_nul_character_is_refused_naming_its_column():
    # FTS5 would read the phrase only up to the NUL and fail on it ("unterminated string").
    with pytest.raises(BadUserInput) as caught:
        parse('title:"a\x00b"')
    assert "column 9: a NUL character is not allowed" in caught.value.message
