"""The pytest plugin in a separate pytest process: one test per case, the comparators, what it
imports, and the one-line refusals (exit code 4) for bad options, unknown suites, an
unreachable server and refused credentials. The end-to-end proof with a served app and
reports is tests/safeguards/test_plugin_proof.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from failcat_client import suites

from benchmarks.common import free_port
from tests.gateway.helpers import INGEST, case_input
from tests.safeguards.builders import (
    CREATE_SUITE,
    a_name,
    model_cases,
    plugin_outcomes,
    run_plugin,
)
from tests.sdk.conftest import FailcatServer

USAGE_ERROR, TESTS_FAILED = 4, 1
OFFLINE = ("--failcat-suite-file", "suite.jsonl", "--failcat-model", "fraud_model:predict")

MODEL = textwrap.dedent(
    """
    def predict(features):
        return {"label": "fraud" if features["amount"] > 100 else "legit", "score": 0.9}

    def noisy(features):
        return {"score": features["amount"] / 1000 + 0.004}

    def broken(features):
        raise RuntimeError("model weights not loaded")

    def first_class(prediction, expected):
        return prediction["label"][0] == expected["label"][0]
    """
)


def _line(case_id: str, amount: float, expected: object, mode: str, severity: str, **extra):
    return {
        "case_id": case_id,
        "input": {"amount": amount},
        "expected": expected,
        "failure_mode": mode,
        "severity": severity,
        "synthetic": False,
        "parent_case_id": None,
        "suite": "fraud-regressions",
        "suite_version": 3,
        "position": 0,
        **extra,
    }


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """Another team's repository: its model module and an exported suite, nothing of ours."""
    (tmp_path / "fraud_model.py").write_text(MODEL)
    lines = [
        _line("c-refund", 129.5, {"label": "legit"}, "label_noise.mislabeled_target", "S1"),
        _line("c-small", 12.0, {"label": "legit"}, "robustness.input_noise", "S3"),
        _line("c-big", 900.0, {"label": "fraud", "score": 0.9}, "distribution_shift.new", "S2"),
        _line(
            "c-small-typo",
            12.0,
            {"label": "legit"},
            "robustness.input_noise",
            "S3",
            synthetic=True,
            parent_case_id="c-small",
        ),
    ]
    (tmp_path / "suite.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return tmp_path


def test_an_exported_suite_runs_offline_one_test_per_case(workdir: Path) -> None:
    done = run_plugin(
        "--failcat-suite-file",
        "suite.jsonl",
        "--failcat-model",
        "fraud_model:predict",
        cwd=workdir,
    )
    assert done.returncode == TESTS_FAILED, done.stdout + done.stderr
    outcomes = plugin_outcomes(done.stdout)
    # exact: c-small's prediction carries a score its expected output does not have.
    assert outcomes == {
        "c-refund": ("label_noise.mislabeled_target", "FAILED"),
        "c-small": ("robustness.input_noise", "FAILED"),
        "c-big": ("distribution_shift.new", "PASSED"),
        "c-small-typo": ("robustness.input_noise", "FAILED"),
    }
    assert "collected 4 items" in done.stdout
    assert "case c-refund (label_noise.mislabeled_target, severity S1) does not match" in (
        done.stdout
    )
    assert 'expected:   {"label": "legit"}' in done.stdout
    assert 'prediction: {"label": "fraud", "score": 0.9}' in done.stdout
    assert "synthetic variant of c-small" in done.stdout
    assert "suite fraud-regressions v3: 1 passed, 3 failed, 0 errors of 4 cases" in done.stdout

    # label: only the labels count; -k selects by severity like any keyword.
    by_label = run_plugin(
        "--failcat-suite-file",
        "suite.jsonl",
        "--failcat-model",
        "fraud_model:predict",
        "--failcat-compare",
        "label",
        "-k",
        "S3 or S2",
        cwd=workdir,
    )
    assert by_label.returncode == 0, by_label.stdout
    assert {k: v[1] for k, v in plugin_outcomes(by_label.stdout).items()} == {
        "c-small": "PASSED",
        "c-big": "PASSED",
        "c-small-typo": "PASSED",
    }
    assert "1 deselected" in by_label.stdout

    # A custom comparator, imported by name from the team's own module.
    custom = run_plugin(
        "--failcat-suite-file",
        "suite.jsonl",
        "--failcat-model",
        "fraud_model:predict",
        "--failcat-compare",
        "fraud_model:first_class",
        cwd=workdir,
    )
    assert {k: v[1] for k, v in plugin_outcomes(custom.stdout).items()} == {
        "c-refund": "FAILED",
        "c-small": "PASSED",
        "c-big": "PASSED",
        "c-small-typo": "PASSED",
    }


def test_tolerance_and_a_failing_predict(workdir: Path) -> None:
    scores = [
        _line("s-1", 500.0, {"score": 0.5}, "calibration.drift", "S2"),
        _line("s-2", 100.0, {"score": 0.2}, "calibration.drift", "S2"),
    ]
    (workdir / "scores.jsonl").write_text("".join(json.dumps(x) + "\n" for x in scores))
    common = ("--failcat-suite-file", "scores.jsonl", "--failcat-model", "fraud_model:noisy")
    exact = run_plugin(*common, cwd=workdir)
    assert {v[1] for v in plugin_outcomes(exact.stdout).values()} == {"FAILED"}
    loose = run_plugin(*common, "--failcat-compare", "tolerance:0.01", cwd=workdir)
    # 0.504 is within 0.01 of 0.5; 0.104 is not within 0.01 of 0.2.
    assert {k: v[1] for k, v in plugin_outcomes(loose.stdout).items()} == {
        "s-1": "PASSED",
        "s-2": "FAILED",
    }

    broken = run_plugin(
        "--failcat-suite-file",
        "scores.jsonl",
        "--failcat-model",
        "fraud_model:broken",
        cwd=workdir,
    )
    assert broken.returncode == TESTS_FAILED
    assert "RuntimeError: model weights not loaded" in broken.stdout
    assert "fraud_model.py" in broken.stdout  # the traceback starts in the team's code
    assert "pytest_plugin.py" not in broken.stdout
    assert "0 passed, 0 failed, 2 errors of 2 cases" in broken.stdout


ISOLATED = textwrap.dedent(
    """
    import sys
    from importlib.metadata import entry_points

    SERVER_SIDE = {"services", "shared", "pydantic", "fastapi", "sqlalchemy", "orjson",
                   "authlib", "strawberry", "opensearchpy", "alembic", "yaml"}

    class Refuse:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in SERVER_SIDE:
                raise ImportError(f"the plugin must not import {name}")
            return None

    sys.meta_path.insert(0, Refuse())
    import pytest

    # The plugin as its pytest11 entry point names it (other plugins of this venv are off).
    (plugin,) = [e.value for e in entry_points(group="pytest11") if e.name == "failcat"]
    code = pytest.main(["-p", plugin, *sys.argv[1:]])
    leaked = sorted(m for m in sys.modules if m.split(".")[0] in SERVER_SIDE)
    print("LEAKED", leaked)
    sys.exit(int(code))
    """
)


def test_the_plugin_imports_nothing_of_the_server(workdir: Path) -> None:
    """The venv has the server installed too, so its packages are importable here: a meta
    path hook refuses them, and the plugin still loads and runs a suite."""
    (workdir / "isolated.py").write_text(ISOLATED)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FAILCAT_", "PYTEST_"))}
    done = subprocess.run(
        [sys.executable, "isolated.py", "-p", "no:cacheprovider", "-v", *OFFLINE],
        cwd=workdir,
        env={**env, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == TESTS_FAILED, done.stdout + done.stderr
    assert "failcat: suite fraud-regressions v3, 4 cases" in done.stdout
    assert len(plugin_outcomes(done.stdout)) == 4
    assert "LEAKED []" in done.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--failcat-model", "fraud_model:predict"], "--failcat-model needs --failcat-suite"),
        (["--failcat-report"], "--failcat-report needs --failcat-suite"),
        (["--failcat-suite-file", "suite.jsonl"], "--failcat-model package.module:predict is"),
        (
            [
                "--failcat-suite",
                "s",
                "--failcat-suite-file",
                "suite.jsonl",
                "--failcat-model",
                "m:f",
            ],
            "not both",
        ),
        (
            [*OFFLINE, "--failcat-report"],
            "--failcat-report needs --failcat-version V",
        ),
        (
            [*OFFLINE, "--failcat-compare", "fuzzy"],
            "--failcat-compare 'fuzzy': expected exact, label, tolerance:T",
        ),
        (
            [*OFFLINE, "--failcat-compare", "tolerance:wide"],
            "tolerance:wide: expected a number",
        ),
        (["--failcat-suite-file", "suite.jsonl", "--failcat-model", "fraud_model"], "expected"),
        (
            ["--failcat-suite-file", "suite.jsonl", "--failcat-model", "no_such_model:predict"],
            "cannot import no_such_model",
        ),
        (
            ["--failcat-suite-file", "suite.jsonl", "--failcat-model", "fraud_model:nope"],
            "--failcat-model 'fraud_model:nope': no nope",
        ),
        (
            ["--failcat-suite-file", "missing.jsonl", "--failcat-model", "fraud_model:predict"],
            "--failcat-suite-file missing.jsonl: No such file",
        ),
        (
            ["--failcat-suite-file", "bad.jsonl", "--failcat-model", "fraud_model:predict"],
            "bad.jsonl, line 2: no input",
        ),
        (
            ["--failcat-suite", "bad name", "--failcat-model", "fraud_model:predict"],
            "a suite name is letters",
        ),
        (
            ["--failcat-suite", "s@v2", "--failcat-model", "fraud_model:predict"],
            "the version is a number from 1, or latest",
        ),
        # '²' passed str.isdigit() and int() raised: pytest's INTERNALERROR traceback
        (
            ["--failcat-suite", "s@²", "--failcat-model", "fraud_model:predict"],
            "the version is a number from 1, or latest",
        ),
        # '..' is dropped from the export's URL: a 404 that named no cause
        (
            ["--failcat-suite", "..", "--failcat-model", "fraud_model:predict"],
            "(not '.' or '..')",
        ),
        # a file that is not UTF-8 was a UnicodeDecodeError traceback
        (
            ["--failcat-suite-file", "binary.jsonl", "--failcat-model", "fraud_model:predict"],
            "binary.jsonl, line 1: not UTF-8 text",
        ),
        (
            ["--failcat-suite", "s@latest", "--failcat-model", "fraud_model:predict"],
            "pass --failcat-url URL or set FAILCAT_URL",
        ),
        (
            [
                "--failcat-suite",
                "s",
                "--failcat-model",
                "fraud_model:predict",
                "--failcat-url",
                "ftp://x",
            ],
            "expected an http(s):// URL",
        ),
    ],
)
def test_bad_options_stop_pytest_with_one_line(workdir: Path, args: list[str], message: str):
    (workdir / "binary.jsonl").write_bytes(b"\xff\xfe\x00{}\n")
    (workdir / "bad.jsonl").write_text(
        json.dumps({"case_id": "a", "input": {}, "expected": 1})
        + "\n"
        + json.dumps({"case_id": "b", "expected": 1})
        + "\n"
    )
    done = run_plugin(*args, cwd=workdir)
    assert done.returncode == USAGE_ERROR, done.stdout + done.stderr
    assert message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_server_refusals_are_usage_errors(server: FailcatServer, workdir: Path) -> None:
    base, client_id, secret = server.client_args()
    model = ("--failcat-model", "fraud_model:predict")
    creds = {"FAILCAT_CLIENT_ID": client_id, "FAILCAT_CLIENT_SECRET": secret}

    def refused(*args: str, env: dict[str, str]) -> str:
        done = run_plugin(*args, *model, cwd=workdir, env=env)
        assert done.returncode == USAGE_ERROR, done.stdout + done.stderr
        assert "Traceback" not in done.stderr
        return done.stderr

    assert "suite no-such-suite@latest not found" in refused(
        "--failcat-suite", "no-such-suite", env={"FAILCAT_URL": base, **creds}
    )
    assert "FAILCAT_CLIENT_ID/FAILCAT_CLIENT_SECRET refused by" in refused(
        "--failcat-suite",
        "any",
        "--failcat-url",
        base,
        env={"FAILCAT_CLIENT_ID": client_id, "FAILCAT_CLIENT_SECRET": "wrong"},
    )
    assert "no credentials: set FAILCAT_CLIENT_ID and FAILCAT_CLIENT_SECRET" in refused(
        "--failcat-suite", "any", "--failcat-url", base, env={}
    )
    nobody = f"http://127.0.0.1:{free_port()}"
    assert f"cannot reach {nobody}" in refused(
        "--failcat-suite", "any", "--failcat-url", nobody, env=creds
    )


def test_a_run_that_cannot_be_recorded_fails_the_session(
    server: FailcatServer, workdir: Path
) -> None:
    base, client_id, secret = server.client_args()
    creds = {"FAILCAT_CLIENT_ID": client_id, "FAILCAT_CLIENT_SECRET": secret}
    report = (*OFFLINE, "--failcat-version", "2", "--failcat-report")
    # No server to report to: refused before any test runs.
    early = run_plugin(*report, cwd=workdir, env=creds)
    assert early.returncode == USAGE_ERROR and "pass --failcat-url URL" in early.stderr
    assert plugin_outcomes(early.stdout) == {}
    # The file's suite is unknown to this server: the tests run, the run is not recorded.
    late = run_plugin(
        *report, "--failcat-compare", "label", cwd=workdir, env={"FAILCAT_URL": base, **creds}
    )
    assert len(plugin_outcomes(late.stdout)) == 4
    assert late.returncode == USAGE_ERROR, late.stdout
    assert "the run was NOT recorded: NOT_FOUND" in late.stdout


def test_suite_server_fetches_and_reports_a_large_run_over_rest(
    server: FailcatServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the plugin calls, in process: a run above the GraphQL body limit goes to
    POST /safeguards/v1/runs and is recorded the same way."""
    model, name = a_name("large-run"), a_name("large-suite")
    results = server.graphql(INGEST, cases=[case_input(c) for c in model_cases(model, 5)])
    ids = [r["id"] for r in results["ingestCases"]]
    server.graphql(CREATE_SUITE, name=name, model=model, ids=ids)
    base, client_id, secret = server.client_args()
    with suites.SuiteServer(base, client_id, secret) as remote:
        suite = remote.fetch(name)
        assert (suite.name, suite.version) == (name, 1)
        assert [c["case_id"] for c in suite.cases] == ids
        outcomes = [
            {"caseId": c["case_id"], "outcome": "PASS" if n else "FAIL", "latencyMs": 3.0}
            for n, c in enumerate(suite.cases)
        ]
        monkeypatch.setattr(suites, "GRAPHQL_MAX_BYTES", 10)
        run = remote.report(suite, "7", outcomes)
        assert (run["model"], run["passed"], run["failed"], run["passRate"]) == (model, 4, 1, 0.8)
        with pytest.raises(suites.SuiteError, match="not found"):
            remote.fetch(name, 2)
    stored = server.graphql(
        "query($id: ID!) { evaluationRun(id: $id) { version passed failed latencyP50Ms } }",
        id=run["id"],
    )["evaluationRun"]
    assert stored == {"version": "7", "passed": 4, "failed": 1, "latencyP50Ms": 3.0}
