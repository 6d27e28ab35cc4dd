"""Bundles given the wrong thing on purpose: a `--trust` file that is no JWKS, a signed bundle
whose content is not what a bundle holds, a bundle of this same instance. Each is one line
naming the problem, exit 2 or the bad record reported, and nothing stored by a refusal."""

from __future__ import annotations

import gzip
import hashlib
import io
import secrets
import tarfile
from typing import Any

import orjson
import pytest
from joserfc.jwk import ECKey
from sqlalchemy import text

from services.catalog import service as catalog
from services.catalog.schemas import CasePatch
from services.cli.errors import describe
from services.sharing.anonymise import Pseudonyms, anonymise_decision
from services.sharing.bundle import FILES, MAX_MEMBER_BYTES, sign, trusted_keys, write_bundle
from services.sharing.cli import _signer
from shared.db import Database
from shared.errors import BadUserInput
from shared.migrate import upgrade_async
from shared.security import SYSTEM, Principal
from tests.catalog.builders import ingest, unique
from tests.cli_run import indexed, run_cli
from tests.conftest import make_settings
from tests.corpus import CORPORA, aiid_cases

N = 40


@pytest.fixture(scope="module")
async def bundle(backend, settings, app, tmp_path_factory):
    """N real AIID incidents exported with the partner profile, the exporter's JWKS and
    signing key, and an empty second instance to import into."""
    cases = unique(aiid_cases(N))
    async with app.state.db.transaction() as session:
        await ingest(session, cases)
    source = cases[0]["data_source"]
    assert await indexed(app.state.search, f"data_source:{source}", N) >= N
    folder = tmp_path_factory.mktemp(f"bundle-input-{backend}")
    out = folder / "partner.tar.gz"
    code, _, err = await run_cli(
        settings, "export", "bundle", "-q", f"data_source:{source}", "--profile", "partner",
        "--out", str(out),
    )  # fmt: skip
    assert code == 0, err
    trust = folder / "jwks.json"
    trust.write_bytes(orjson.dumps(app.state.auth.jwks()))
    kid, key = await _signer(settings, app.state.db)
    second = await make_settings(backend, folder / "second")
    await upgrade_async(second.catalog_url)
    with tarfile.open(out, "r:gz") as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar}
    return {"out": out, "trust": trust, "kid": kid, "key": key, "second": second,
            "folder": folder, "members": members, "source": source}  # fmt: skip


def resigned(bundle: dict[str, Any], name: str, **changed: bytes) -> Any:
    """The bundle with some members changed, its manifest's hashes made to match and signed
    again with the exporter's own key: well signed, whatever it holds."""
    members = {**bundle["members"], **changed}
    if "manifest.json" not in changed:
        manifest = orjson.loads(members["manifest.json"])
        for file in FILES:
            manifest["files"][file] = {"sha256": hashlib.sha256(members[file]).hexdigest()}
        members["manifest.json"] = orjson.dumps(manifest, option=orjson.OPT_SORT_KEYS)
    members["manifest.jws"] = sign(members["manifest.json"], bundle["kid"], bundle["key"]).encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for member, content in members.items():
            info = tarfile.TarInfo(member)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    path = bundle["folder"] / name
    path.write_bytes(buf.getvalue())
    return path


async def stored(settings: Any) -> tuple[int, ...]:
    """The rows an import writes: cases, adjudicated reviews, lessons, imported bundles."""
    db = Database(settings.catalog_url)
    try:
        async with db.transaction() as s:
            tables = ("failure_case", "annotation_review", "sharing_lesson", "sharing_bundle")
            return tuple(
                [(await s.execute(text(f"select count(*) from {t}"))).scalar_one() for t in tables]
            )
    finally:
        await db.dispose()


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


def test_a_trust_file_that_cannot_be_read_is_named_as_the_trust(tmp_path):
    for path, reason in ((tmp_path / "missing.json", "No such file"), (tmp_path, "directory")):
        with pytest.raises(BadUserInput, match=rf"^--trust {path}: .*{reason}") as refused:
            trusted_keys(str(path))
        assert describe(refused.value).startswith(f"trust: {path}: ")  # the CLI's line


def _lines(content: bytes, number: int, line: bytes) -> bytes:
    lines = content.splitlines()
    lines[number - 1] = line
    return b"\n".join(lines) + b"\n"


async def test_a_signed_bundle_that_holds_no_bundle_is_refused_naming_file_and_line(bundle):
    cases = bundle["members"]["cases.jsonl"]
    manifest = orjson.loads(bundle["members"]["manifest.json"])
    no_issuer = orjson.dumps({k: v for k, v in manifest.items() if k != "issuer"})
    long_id = orjson.dumps({**manifest, "bundle_id": f"partner-export-{manifest['bundle_id']}"})
    lesson = {"id": "x", "title": "t", "what_happened": "w", "why_it_matters": "w"}
    groups = sorted({orjson.loads(line)["_meta"]["group_id"] for line in cases.splitlines()})
    published = orjson.dumps(
        {**lesson, "mitigation": "m", "cost": "c", "evidence_group_ids": groups[:2],
         "status": "published"}
    )  # fmt: skip
    draft = published.replace(b'"status":"published"', b'"status":"draft"')
    variants = {
        "cases.jsonl:2: not JSON": {"cases.jsonl": _lines(cases, 2, b"{not json")},
        "cases.jsonl:3: not a JSON object": {"cases.jsonl": _lines(cases, 3, b"[1, 2]")},
        "lessons.jsonl:1: mitigation: missing": {"lessons.jsonl": orjson.dumps(lesson)},
        "lessons.jsonl:1: status: one of draft, reviewed": {"lessons.jsonl": published},
        "lessons.jsonl:1: evidence_group_ids: not a list of group ids": {
            "lessons.jsonl": draft.replace(
                b'"evidence_group_ids":[', b'"evidence_group_ids":[{"id":1},'
            )
        },
        "annotations.jsonl:1: values: not an object": {
            "annotations.jsonl": b'{"case_id": "c", "taxonomy": "failcat", "values": [1]}\n'
        },
        "annotations.jsonl:1: taxonomy: not a text": {
            "annotations.jsonl": b'{"case_id": "c", "taxonomy": {"name": "failcat"}}\n'
        },
        "manifest.json: not JSON": {"manifest.json": b"manifest"},
        "manifest.json: not a JSON object": {"manifest.json": b"[]"},
        "manifest.json: issuer: missing": {"manifest.json": no_issuer},
        "manifest.json: bundle_id: longer than 36 characters": {"manifest.json": long_id},
        "lessons.jsonl:1: title: holds a NUL character": {
            "lessons.jsonl": draft.replace(b'"title":"t"', b'"title":"t\\u0000"')
        },
        "annotations.jsonl:1: reviewer: holds a NUL character": {
            "annotations.jsonl": b'{"case_id": "c", "taxonomy": "failcat", "reviewer": "r\\u0000"}'
        },
        "annotations.jsonl:1: values.notes.0: holds a NUL character": {
            "annotations.jsonl": b'{"case_id": "c", "values": {"notes": ["\\u0000"]}}'
        },
        "manifest.json: issuer: holds a control character": {
            "manifest.json": orjson.dumps({**manifest, "issuer": "https://partner\u0000.example"})
        },
    }
    second = bundle["second"]
    before = await stored(second)
    for i, (problem, changed) in enumerate(variants.items()):
        path = resigned(bundle, f"bad-{i}.tar.gz", **changed)
        code, _, err = await run_cli(
            second, "import", "bundle", str(path), "--trust", str(bundle["trust"])
        )
        assert code == 2 and problem in err, err
        assert err.startswith("failcat: bundle: ") and len(err.splitlines()) == 1, err
    assert await stored(second) == before


async def fresh_instance(backend: str, folder: Any) -> Any:
    settings = await make_settings(backend, folder)
    await upgrade_async(settings.catalog_url)
    return settings


async def test_a_case_the_catalog_refuses_is_reported_by_line_and_field(bundle, backend):
    cases = bundle["members"]["cases.jsonl"]
    bad = orjson.loads(cases.splitlines()[6])
    bad["severity"] = "urgent"
    path = resigned(
        bundle, "bad-case.tar.gz", **{"cases.jsonl": _lines(cases, 7, orjson.dumps(bad))}
    )
    target = await fresh_instance(backend, bundle["folder"] / "invalid-case")
    code, out, err = await run_cli(
        target, "import", "bundle", str(path), "--trust", str(bundle["trust"])
    )
    summary = orjson.loads(out)
    assert code == 1, err
    assert summary["cases"] == {"created": N - 1, "invalid": 1}  # the others are stored
    [error] = summary["errors"]
    assert error.startswith("cases.jsonl:7: severity: "), error
    assert (await stored(target))[0] == N - 1


async def test_a_bundle_of_this_instance_is_refused_by_it(bundle, settings):
    before = await stored(settings)
    code, _, err = await run_cli(
        settings, "import", "bundle", str(bundle["out"]), "--trust", str(bundle["trust"])
    )
    bundle_id = orjson.loads(bundle["members"]["manifest.json"])["bundle_id"]
    assert code == 2 and err == (
        f"failcat: bundle: bundle {bundle_id} was exported by this instance\n"
    ), err
    assert await stored(settings) == before  # no second copy of its own cases


async def test_the_same_cases_in_a_later_bundle_are_duplicates(bundle, backend, settings):
    """A partner shares the same query again (a new bundle id): the cases it already sent are
    `duplicate`, as the same bundle sent twice is, not a conflict of each one."""
    again = bundle["folder"] / "again.tar.gz"
    code, _, err = await run_cli(
        settings, "export", "bundle", "-q", f"data_source:{bundle['source']}", "--profile",
        "partner", "--out", str(again),
    )  # fmt: skip
    assert code == 0, err
    target = await fresh_instance(backend, bundle["folder"] / "again")
    for path, status in ((bundle["out"], "created"), (again, "duplicate"), (again, "duplicate")):
        code, out, err = await run_cli(
            target, "import", "bundle", str(path), "--trust", str(bundle["trust"])
        )
        summary = orjson.loads(out)
        assert code == 0 and summary["cases"] == {status: N}, summary
    assert (await stored(target))[0] == N


def test_free_text_of_adjudicated_values_is_masked_for_a_partner():
    """GMF's classification of AIID incident 115 quotes a report with an e-mail address in it;
    an adjudicated decision's values travel in the bundle as a case's summary does."""
    record = next(
        r
        for r in map(orjson.loads, (CORPORA / "aiid_classifications_GMF.jsonl").open("rb"))
        if r["Incident ID"] == "115"
    )
    values = {k: v for k, v in record.items() if k.startswith("Known AI")}
    values["list"] = [record["Known AI Technical Failure Snippets"], 3]
    assert "Test@test.com" in orjson.dumps(values).decode()
    decision = {"case_id": "c", "taxonomy": "GMF", "values": values, "reviewer": "r"}
    pseudonyms = Pseudonyms(b"k" * 32)
    shown = anonymise_decision(decision, "partner", pseudonyms)["values"]
    assert "Test@test.com" not in orjson.dumps(shown).decode()
    assert "[EMAIL]" in shown["Known AI Technical Failure Snippets"] and shown["list"][1] == 3
    assert shown["Known AI Goal"] == values["Known AI Goal"]  # codes and plain text as they were
    assert anonymise_decision(decision, "internal", pseudonyms)["values"] == values


async def test_a_bundle_over_the_size_limit_or_with_a_file_twice_says_which(bundle):
    """Refused from the tar headers, before a byte of the file is read."""
    big = tarfile.TarInfo("cases.jsonl")
    big.size = MAX_MEMBER_BYTES + 1  # a header only: the limit is checked before reading
    twice = io.BytesIO()
    with tarfile.open(fileobj=twice, mode="w:gz") as tar:
        for _ in range(2):
            info = tarfile.TarInfo("manifest.json")
            info.size = len(bundle["members"]["manifest.json"])
            tar.addfile(info, io.BytesIO(bundle["members"]["manifest.json"]))
    cases = (
        (gzip.compress(big.tobuf(format=tarfile.PAX_FORMAT)), f"{MAX_MEMBER_BYTES + 1:,} bytes"),
        (twice.getvalue(), "member 'manifest.json' is repeated"),
    )
    for i, (content, problem) in enumerate(cases):
        path = bundle["folder"] / f"limit-{i}.tar.gz"
        path.write_bytes(content)
        code, _, err = await run_cli(
            bundle["second"], "import", "bundle", str(path), "--trust", str(bundle["trust"])
        )
        assert code == 2 and problem in err and len(err.splitlines()) == 1, err


async def test_an_export_to_a_path_it_cannot_write_names_that_path_before_reading(bundle, settings):
    folder = bundle["folder"]
    for out, problem in (
        (folder / "missing" / "x.tar.gz", f"no directory {folder / 'missing'}"),
        (folder, f"{folder} is a directory"),
    ):
        code, _, err = await run_cli(
            settings, "export", "bundle", "--profile", "partner", "--out", str(out)
        )
        assert code == 2 and err.startswith("failcat: out: ") and problem in err, err
        assert "failcat-bundle-" not in err and "bundled" not in err, err  # nothing read


async def test_a_decision_this_instance_refuses_is_skipped_and_named(bundle, backend):
    cases = bundle["members"]["cases.jsonl"]
    case_id = orjson.loads(cases.splitlines()[0])["_meta"]["id"]
    decisions = [
        {"case_id": case_id, "taxonomy": "failcat", "values": {"failure_mode": "no.such.mode"}},
        {"case_id": case_id, "taxonomy": "CSETv1", "values": {}},
    ]
    path = resigned(
        bundle,
        "bad-decision.tar.gz",
        **{"annotations.jsonl": b"".join(orjson.dumps(d) + b"\n" for d in decisions)},
    )
    target = await fresh_instance(backend, bundle["folder"] / "bad-decision")
    code, out, err = await run_cli(
        target, "import", "bundle", str(path), "--trust", str(bundle["trust"])
    )
    summary = orjson.loads(out)
    assert code == 0 and summary["cases"] == {"created": N}, err
    assert summary["annotations_skipped"] == 2
    mode, taxonomy = summary["errors"]
    assert mode.startswith("annotations.jsonl:1: values.failure_mode: 'no.such.mode'"), mode
    assert taxonomy.startswith("annotations.jsonl:2: taxonomy: "), taxonomy


async def test_an_untrusted_or_altered_signature_says_which(bundle, backend):
    """Signed by a key --trust does not hold (another instance's JWKS given), or signed by
    the trusted key and its manifest changed after (the profile made `internal`)."""
    members = bundle["members"]
    other = await fresh_instance(backend, bundle["folder"] / "other-jwks")
    other_jwks = bundle["folder"] / "other-jwks.json"
    other_jwks.write_bytes(orjson.dumps({"keys": [{**ECKey.generate_key("P-256").as_dict(
        private=False), "kid": "partner-2026"}]}))  # fmt: skip
    manifest = orjson.loads(members["manifest.json"])
    altered = {**manifest, "profile": "internal"}
    path = bundle["folder"] / "altered.tar.gz"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, content in members.items():
            if name == "manifest.json":
                content = orjson.dumps(altered, option=orjson.OPT_SORT_KEYS)
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    path.write_bytes(buf.getvalue())
    for file, trust, problem in (
        (bundle["out"], other_jwks, f"it names key {manifest['kid']!r}, which --trust does not"),
        (path, bundle["trust"], "the manifest was changed after signing"),
    ):
        code, _, err = await run_cli(other, "import", "bundle", str(file), "--trust", str(trust))
        assert code == 2 and problem in err and len(err.splitlines()) == 1, err
    assert await stored(other) == (0, 0, 0, 0)


async def test_a_public_export_reports_a_query_mistake_at_its_own_column(bundle, settings):
    out = str(bundle["folder"] / "public-query.tar.gz")
    for query, problem in (
        ('title:"chatbot', "column 7: unterminated phrase"),
        ("title:chatbot)", "column 14: unexpected ')'"),
    ):
        for profile in ("partner", "public"):  # the same column whatever the profile
            code, _, err = await run_cli(
                settings, "export", "bundle", "-q", query, "--profile", profile, "--out", out
            )
            assert code == 2 and err.startswith(f"failcat: query: {problem}"), (profile, err)
    # A blank query is no query, as an empty one is (the public profile wrapped it: "()").
    code, stdout, err = await run_cli(
        settings, "export", "bundle", "-q", "  ", "--profile", "public", "--out", out
    )
    assert code == 0, err
    assert orjson.loads(stdout)["counts"]["cases"] >= 0


async def test_a_bundle_no_trusted_key_signed_is_refused_before_its_files_are_read(bundle):
    """Its manifest and signature come first: the rest (here a cases.jsonl said to be 1 GiB,
    of which no byte follows) is never read."""
    members = bundle["members"]
    other = ECKey.generate_key("P-256")
    head = io.BytesIO()
    with tarfile.open(fileobj=head, mode="w") as tar:
        for name, content in (
            ("manifest.json", members["manifest.json"]),
            ("manifest.jws", sign(members["manifest.json"], "elsewhere", other).encode()),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    big = tarfile.TarInfo("cases.jsonl")
    big.size = 1024**3
    raw = head.getvalue().rstrip(b"\0")  # no end-of-archive: another member follows
    raw += b"\0" * (-len(raw) % tarfile.BLOCKSIZE) + big.tobuf(format=tarfile.PAX_FORMAT)
    path = bundle["folder"] / "untrusted-big.tar.gz"
    path.write_bytes(gzip.compress(raw))
    code, _, err = await run_cli(
        bundle["second"], "import", "bundle", str(path), "--trust", str(bundle["trust"])
    )
    assert code == 2 and "it names key 'elsewhere', which --trust does not hold" in err, err


async def test_a_group_counts_only_the_cases_its_exporter_may_see(bundle, app, settings):
    """Six AIID incidents of one team and six of another in one group: a bundle of the first
    team's reader says the group has six cases, not twelve."""
    salt = secrets.token_hex(3)
    cases = unique(aiid_cases(12))
    for i, case in enumerate(cases):
        case.update(team=f"mine-{salt}" if i % 2 else f"theirs-{salt}", fingerprint=salt)
    async with app.state.db.transaction() as session:
        await ingest(session, cases)
    reader = Principal(
        subject="reader", client_id="c", scopes=frozenset({"cases:read"}), team=f"mine-{salt}"
    )
    out = bundle["folder"] / f"mine-{salt}.tar.gz"
    query = f"data_source:{cases[0]['data_source']}"  # the twelve (no team's are everyone's)
    assert await indexed(app.state.search, query, 12) == 12
    await write_bundle(
        app.state.search, app.state.db, reader, query, "partner", out, issuer=settings.issuer,
        kid=bundle["kid"], key=bundle["key"], pseudonyms=Pseudonyms(b"k" * 32),
    )  # fmt: skip
    with tarfile.open(out, "r:gz") as tar:
        groups = [orjson.loads(line) for line in tar.extractfile("groups.jsonl").readlines()]
        cases_out = tar.extractfile("cases.jsonl").read().splitlines()
    assert len(cases_out) == 6
    assert [g["case_count"] for g in groups] == [6]


async def test_a_public_bundle_counts_only_the_public_cases_of_a_group(app, settings, bundle):
    """`failcat export bundle --profile public` (as SYSTEM, who sees everything): a group of
    four public and eight internal incidents is a group of four in the bundle."""
    salt = secrets.token_hex(3)
    cases = unique(aiid_cases(12))
    for i, case in enumerate(cases):
        case.update(sensitivity="public" if i < 4 else "internal", fingerprint=salt)
    async with app.state.db.transaction() as session:
        await ingest(session, cases)
    query = f"data_source:{cases[0]['data_source']}"
    assert await indexed(app.state.search, query, 12) == 12
    out = bundle["folder"] / f"public-{salt}.tar.gz"
    code, _, err = await run_cli(
        settings, "export", "bundle", "-q", query, "--profile", "public", "--out", str(out)
    )
    assert code == 0, err
    with tarfile.open(out, "r:gz") as tar:
        groups = [orjson.loads(line) for line in tar.extractfile("groups.jsonl").readlines()]
        assert len(tar.extractfile("cases.jsonl").read().splitlines()) == 4
    assert [g["case_count"] for g in groups] == [4]


async def test_a_bundle_unpacked_and_packed_again_with_tar_imports(bundle, backend):
    """`tar -xzf b.tar.gz -C dir && tar -czf again.tar.gz -C dir .`: the members are named
    ./cases.jsonl ... after a ./ directory entry; the files and their signature are the same."""
    unpacked = bundle["folder"] / "unpacked"
    unpacked.mkdir()
    for name, content in bundle["members"].items():
        (unpacked / name).write_bytes(content)
    path = bundle["folder"] / "repacked.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        tar.add(unpacked, arcname=".")
    target = await fresh_instance(backend, bundle["folder"] / "repacked")
    code, out, err = await run_cli(
        target, "import", "bundle", str(path), "--trust", str(bundle["trust"])
    )
    assert code == 0 and orjson.loads(out)["cases"] == {"created": N}, err


async def test_a_lesson_whose_title_is_too_long_is_left_out_and_named(bundle, backend):
    cases = bundle["members"]["cases.jsonl"]
    groups = sorted({orjson.loads(line)["_meta"]["group_id"] for line in cases.splitlines()})
    lesson = {"id": "l", "what_happened": "w", "why_it_matters": "w", "mitigation": "m",
              "cost": "c", "evidence_group_ids": groups[:2], "status": "draft"}  # fmt: skip
    lessons = b"".join(
        orjson.dumps({**lesson, "id": f"l{i}", "title": title}) + b"\n"
        for i, title in enumerate(["Lesson " * 50, "A short one"])
    )
    path = resigned(bundle, "long-title.tar.gz", **{"lessons.jsonl": lessons})
    target = await fresh_instance(backend, bundle["folder"] / "long-title")
    code, out, err = await run_cli(
        target, "import", "bundle", str(path), "--trust", str(bundle["trust"])
    )
    summary = orjson.loads(out)
    assert code == 0 and summary["lessons"] == 1, err
    assert summary["errors"] == ["lessons.jsonl:1: title: 1 to 300 characters"]


async def test_a_case_edited_at_its_source_and_shared_again_names_what_differs(bundle, backend):
    """The partner edits a case they shared (title and severity, revision 2 there) and shares
    it again: the copy here is kept, and the conflict says what differs and what to do, not to
    send a new external_id (the importer chose none)."""
    cases = bundle["members"]["cases.jsonl"]
    edited = orjson.loads(cases.splitlines()[2])
    edited["title"] = f"{edited['title']} (root cause found)"
    edited["severity"] = "S0" if edited.get("severity") != "S0" else "S1"
    edited["_meta"]["revision"] = 2
    path = resigned(
        bundle, "edited.tar.gz", **{"cases.jsonl": _lines(cases, 3, orjson.dumps(edited))}
    )
    target = await fresh_instance(backend, bundle["folder"] / "edited")
    for shared in (bundle["out"], path):
        code, out, err = await run_cli(
            target, "import", "bundle", str(shared), "--trust", str(bundle["trust"])
        )
    summary = orjson.loads(out)
    assert code == 0 and summary["cases"] == {"duplicate": N - 1, "conflict": 1}, (summary, err)
    [error] = summary["errors"]
    assert error.startswith("cases.jsonl:3: title: case "), error
    assert "this version (revision 2 at " in error and "differs from it in title, severity" in error
    assert "edit case " in error and "new external_id" not in error, error
    assert "edited here" not in error
    assert (await stored(target))[0] == N

    # The copy edited here as well (its impact): the conflict says so, and names that field.
    copy_id = error.split("case ", 1)[1].split(" ", 1)[0]
    db = Database(target.catalog_url)
    try:
        async with db.transaction() as s:
            patch = CasePatch(impact="Seen again by our own users")
            await catalog.update_case(s, copy_id, patch, 1, SYSTEM, reason="triage")
    finally:
        await db.dispose()
    code, out, err = await run_cli(
        target, "import", "bundle", str(path), "--trust", str(bundle["trust"])
    )
    [error] = orjson.loads(out)["errors"]
    assert "differs from it in title, severity, impact; the copy was edited here since " in error
    assert "(revision 2)" in error, error


async def test_a_decision_with_numbers_and_booleans_is_read(bundle, backend):
    """CSETv1's adjudicated values hold numbers and booleans ('Incident Number': 39, 'Quality
    Control': false): the NUL check walked into them and the import stopped with 'unexpected
    error: TypeError: 'int' object is not iterable' on every bundle holding one."""
    cases = bundle["members"]["cases.jsonl"]
    case_id = orjson.loads(cases.splitlines()[0])["_meta"]["id"]
    final = orjson.loads(
        (CORPORA / "aiid_classifications_CSETv1.jsonl").read_bytes().split(b"\n")[0]
    )
    values = {
        "Incident Number": int(final["Incident ID"]),
        "Quality Control": final["Quality Control"] == "True",
        "Harm Domain": final["Harm Domain"],
        "Physical Objects": [final["Physical Objects"], None, 1.5],
    }
    decision = {"case_id": case_id, "taxonomy": "CSETv1", "values": values}
    path = resigned(bundle, "numbers.tar.gz", **{"annotations.jsonl": orjson.dumps(decision)})
    target = await fresh_instance(backend, bundle["folder"] / "numbers")
    code, out, err = await run_cli(
        target, "import", "bundle", str(path), "--trust", str(bundle["trust"])
    )
    assert code == 0, err
    summary = orjson.loads(out)
    assert summary["cases"] == {"created": N} and summary["annotations_skipped"] == 1
    assert summary["errors"][0].startswith("annotations.jsonl:1: taxonomy: "), summary


async def test_every_skipped_decision_is_named_with_its_taxonomy(bundle, backend):
    """A decision whose case is not stored was counted as skipped and named nowhere; one of a
    taxonomy this instance lacks said only 'taxonomy: known taxonomies: failcat'."""
    cases = bundle["members"]["cases.jsonl"]
    case_id = orjson.loads(cases.splitlines()[0])["_meta"]["id"]
    decisions = [
        {"case_id": "not-in-the-bundle", "taxonomy": "failcat", "values": {}},
        {"case_id": case_id, "taxonomy": "GMF", "values": {}},
        {"case_id": case_id, "values": {}},
    ]
    path = resigned(
        bundle,
        "skipped-decisions.tar.gz",
        **{"annotations.jsonl": b"".join(orjson.dumps(d) + b"\n" for d in decisions)},
    )
    target = await fresh_instance(backend, bundle["folder"] / "skipped-decisions")
    code, out, err = await run_cli(
        target, "import", "bundle", str(path), "--trust", str(bundle["trust"])
    )
    summary = orjson.loads(out)
    assert code == 0 and summary["annotations_skipped"] == 3, err
    assert summary["errors"] == [
        "annotations.jsonl:1: case_id: not-in-the-bundle: no case of cases.jsonl was stored "
        "under it",
        "annotations.jsonl:2: taxonomy: unknown taxonomy GMF (known taxonomies: failcat)",
        "annotations.jsonl:3: taxonomy: missing",
    ]


async def test_a_file_missing_or_unlisted_is_named(bundle):
    """Both said only 'the files do not match the manifest'."""
    members = {k: v for k, v in bundle["members"].items() if k != "groups.jsonl"}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for member, content in members.items():
            info = tarfile.TarInfo(member)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    missing = bundle["folder"] / "missing-groups.tar.gz"
    missing.write_bytes(buf.getvalue())
    manifest = orjson.loads(bundle["members"]["manifest.json"])
    del manifest["files"]["lessons.jsonl"]
    unlisted = resigned(bundle, "unlisted.tar.gz", **{"manifest.json": orjson.dumps(manifest)})
    second = bundle["second"]
    before = await stored(second)
    for path, problem in (
        (missing, "groups.jsonl missing"),
        (unlisted, "the manifest does not list lessons.jsonl"),
    ):
        code, _, err = await run_cli(
            second, "import", "bundle", str(path), "--trust", str(bundle["trust"])
        )
        assert code == 2, err
        assert err == f"failcat: bundle: the files do not match the manifest: {problem}\n"
    assert await stored(second) == before
