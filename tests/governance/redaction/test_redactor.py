"""The redactor on one validated case at a time: a single value of any kind, alone in any
scanned place, passes the pre-filter and leaves no trace but its mask; ordinary cases are
returned untouched."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from services.catalog.schemas import CaseIn
from services.governance.redaction.schemas import Mode, Policy
from services.governance.redaction.service import Redactor
from tests.corpus import aiid_cases
from tests.governance.redaction.test_detectors import VALID

PLACES = {
    "summary": lambda v: {"summary": f"Seen in production: {v}"},
    "title": lambda v: {"title": f"Report {v}"},
    "input (depth 4)": lambda v: {"input": {"a": [{"b": {"c": v}}]}},
    "environment": lambda v: {"environment": {"host": v}},
    "writeup": lambda v: {"writeup": {"results": f"{v} again"}},
}


def _case(**fields) -> CaseIn:
    base = {"model": {"name": "m", "version": "1"}, "data_source": "s"}
    return CaseIn.model_validate({**base, **fields})


@pytest.mark.parametrize("place", list(PLACES))
@pytest.mark.parametrize(("kind", "value"), VALID, ids=[f"{k}:{v[:16]}" for k, v in VALID])
def test_one_value_alone_anywhere_is_redacted(kind, value, place):
    out = Redactor({}, None).apply(_case(**PLACES[place](value)))
    assert [f["kind"] for f in out["pii_findings"]] == [kind]
    assert value not in orjson.dumps(out).decode()


@pytest.mark.parametrize(
    "fields",
    [
        {"input": {"db": {"password": "tr0ub4dor&3"}}},
        {"signals": {"headers": [{"X-Api-Key": 12345678}]}},
        {"summary": "the job failed: password=tr0ub4dor&3 was rejected"},
        {"impact": "Authorization: Bearer tr0ub4dor&3"},
    ],
)
def test_a_secret_alone_is_redacted(fields):
    out = Redactor({}, None).apply(_case(**fields))
    assert [f["kind"] for f in out["pii_findings"]] == ["secret"]
    assert "tr0ub4dor" not in orjson.dumps(out).decode() and "12345678" not in str(out)


def test_a_number_is_redacted_under_a_secret_key_only_as_redaction_md_says():
    # REDACTION.md's example was `"pin": 1234`, which ingest stores as written: `pin` is
    # not one of the secret key words; `password` is.
    out = Redactor({}, None).apply(_case(input={"password": 1234, "pin": 1234}))
    assert out["input"] == {"password": "[SECRET]", "pin": 1234}
    assert out["pii_findings"] == [{"kind": "secret", "path": "input.password"}]
    doc = (Path(__file__).parents[3] / "services/governance/REDACTION.md").read_text()
    assert '`"password": 1234` is masked' in " ".join(doc.split())


@pytest.mark.parametrize("mode", [Mode.MASK, Mode.HASH, Mode.KEEP_RESTRICTED])
def test_a_secret_ingest_masked_comes_out_as_it_went_in(mode):
    """An exported case ingested again: the `[SECRET]` under `password` was taken for the
    password, hashed to `[SECRET:hmac:...]` (the hash of the mask) and counted again."""
    redactor = Redactor({"s": Policy("s", mode, None, 1)}, b"k" * 32)
    [raw] = aiid_cases(1)
    raw = {**raw, "data_source": "s"}
    raw["input"] = {"db": {"password": "tr0ub4dor&3"}, "Authorization": "Bearer tr0ub4dor&3"}
    first = redactor.apply(CaseIn.model_validate(raw))
    assert "tr0ub4dor" not in orjson.dumps(first["input"]).decode()
    again = redactor.apply(CaseIn.model_validate({**raw, "input": first["input"]}))
    assert "input" not in again  # unchanged
    assert again["pii_findings"] is None and again["pii_restricted"] is None


def test_ordinary_cases_pass_through_untouched():
    for raw in aiid_cases(200):
        out = Redactor({}, None).apply(CaseIn.model_validate(raw))
        # Nothing rewritten: only the three bookkeeping columns.
        assert set(out) == {"payload_sensitivity", "pii_findings", "pii_restricted"}


def test_the_policys_payload_sensitivity_and_the_cases_combine_to_the_highest():
    policy = Policy("s", Mode.MASK, "confidential", 1)
    redactor = Redactor({"s": policy}, None)
    assert redactor.apply(_case())["payload_sensitivity"] == "confidential"
    assert redactor.apply(_case(payload_sensitivity="restricted"))["payload_sensitivity"] == (
        "restricted"
    )
    assert Redactor({}, None).apply(_case())["payload_sensitivity"] is None


def _after_real_summaries(values: list[str]) -> list[str]:
    """Each value at the end of a real AIID summary, after its closing full stop."""
    return [
        f"{raw['summary'] or raw['title']} {value}"
        for raw, value in zip(aiid_cases(len(values)), values, strict=True)
    ]


def test_a_value_after_a_full_stop_is_redacted():
    """The pre-filter read the digits after ". " as a float's decimals (the space was deleted
    before the dot was looked at), so a card, phone or SSN starting a sentence was stored as
    written: "... between 2000 and 2013. (202) 456-1111"."""
    values = [v for _, v in VALID]
    for summary, (kind, value) in zip(_after_real_summaries(values), VALID, strict=True):
        out = Redactor({}, None).apply(_case(summary=summary))
        assert [f["kind"] for f in out["pii_findings"] or ()] == [kind], summary
        assert value not in out["summary"]
    # A float's decimals are still not worth a scan.
    assert Redactor({}, None).apply(_case(summary="latency rose to 0.1234567 s")) == {
        "payload_sensitivity": None,
        "pii_findings": None,
        "pii_restricted": None,
    }


@pytest.mark.parametrize("mode", [m for m in Mode if m is not Mode.REMOVE])
def test_redacting_redacted_text_again_changes_nothing(mode):
    """An edit or an import scans text that ingest already redacted (a curator's new summary
    keeps the old one's masks; an export ingests into another instance). A hashed secret,
    `[SECRET:hmac:<hex>]`, read as "secret: <value>" and became `[SECRET:[SECRET:hmac:...]`,
    and the mask after `password=` was taken for the password: hashed again, kept raw."""
    redactor = Redactor({"s": Policy("s", mode, None, 1)}, b"k" * 32)
    values = [v for _, v in VALID] + ["password=tr0ub4dor&3", "Authorization: Bearer tr0ub4dor"]
    for summary in _after_real_summaries(values):
        once = redactor.apply(_case(summary=summary))
        assert once["pii_findings"], summary
        twice = redactor.apply(_case(summary=once["summary"]))
        assert "summary" not in twice, (once["summary"], twice["summary"])
        assert twice["pii_findings"] is None and twice["pii_restricted"] is None


def test_a_phone_written_next_to_a_year_or_a_count_is_redacted():
    """A year or a count before or after a phone number joined it in one candidate, which as
    a whole is no number: "... in 2013 (202) 456-1111" was stored as written."""
    phones = [v for kind, v in VALID if kind == "phone"]
    for summary, phone in zip(_after_real_summaries(phones), phones, strict=True):
        for written, kept in ((f"in 2013 {phone}", "in 2013 [PHONE]"), (f"{phone} 24 times", "")):
            out = Redactor({}, None).apply(_case(summary=summary.replace(phone, written)))
            assert [f["kind"] for f in out["pii_findings"] or ()] == ["phone"], written
            assert phone not in out["summary"] and kept in out["summary"]
