"""The pytest plugin: a failcat regression suite as tests, one per case, in your own CI.

    pytest --failcat-suite fraud-regressions@3 --failcat-model fraud.model:predict \\
           --failcat-version 3.3.0 --failcat-report

Registered through the `pytest11` entry point of failcat-client; it does nothing unless
`--failcat-suite` or `--failcat-suite-file` is given. Each case becomes a test named
`<case id>[<failure mode>]`: `predict(case["input"])` is called, its latency measured, and
the prediction compared with `case["expected"]` (--failcat-compare). With --failcat-report
the outcomes are recorded on the server as an evaluation run of the suite's model at
--failcat-version. Bad options, an unknown suite, an unreachable server or refused
credentials stop pytest at once with one line saying so (exit code 4).
"""

from __future__ import annotations

import importlib
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

from failcat_client.compare import NAMES, Comparator, ComparatorError, as_json, comparator
from failcat_client.suites import Suite, SuiteError, SuiteServer, parse_ref, read_file

PROPERTY = "failcat_outcome"  # user_properties key: travels with the report (pytest-xdist too)
SHOWN = 400  # characters of a value shown in a failure


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("failcat", "failcat regression suites")
    group.addoption(
        "--failcat-suite",
        metavar="NAME[@VERSION]",
        help="run this suite of the failcat server (default version: the latest)",
    )
    group.addoption(
        "--failcat-suite-file",
        metavar="FILE",
        help="run a suite exported as JSONL instead (no server needed unless reporting)",
    )
    group.addoption(
        "--failcat-model",
        metavar="MODULE:FUNCTION",
        help="the predict function, e.g. package.module:predict; called with each case's input",
    )
    group.addoption(
        "--failcat-version",
        metavar="V",
        help="the model version under test (required with --failcat-report)",
    )
    group.addoption(
        "--failcat-url",
        metavar="URL",
        help="the failcat server (default: $FAILCAT_URL); credentials from "
        "$FAILCAT_CLIENT_ID and $FAILCAT_CLIENT_SECRET",
    )
    group.addoption(
        "--failcat-compare",
        metavar="HOW",
        default="exact",
        help=f"how a prediction is compared with the expected output: {NAMES} "
        "(default: exact, JSON equality)",
    )
    group.addoption(
        "--failcat-report",
        action="store_true",
        help="record the outcomes on the server as an evaluation run of --failcat-version",
    )


def pytest_configure(config: pytest.Config) -> None:
    options = _Options.of(config)
    if options is not None:
        config.pluginmanager.register(FailcatSuitePlugin(config, options), "failcat-suite")


class _Options:
    """The --failcat-* options, checked before anything is fetched or run."""

    def __init__(self, config: pytest.Config) -> None:
        get = config.getoption
        self.ref: Optional[str] = get("failcat_suite")
        self.file: Optional[str] = get("failcat_suite_file")
        self.model: Optional[str] = get("failcat_model")
        self.version: Optional[str] = get("failcat_version")
        self.url: Optional[str] = get("failcat_url")
        self.compare_spec: str = get("failcat_compare")
        self.report: bool = get("failcat_report")

    @classmethod
    def of(cls, config: pytest.Config) -> Optional[_Options]:
        options = cls(config)
        if not options.ref and not options.file:
            stray = [
                flag
                for flag, value in (
                    ("--failcat-model", options.model),
                    ("--failcat-version", options.version),
                    ("--failcat-report", options.report),
                )
                if value
            ]
            if stray:
                raise pytest.UsageError(
                    f"failcat: {stray[0]} needs --failcat-suite NAME[@VERSION] "
                    "or --failcat-suite-file FILE"
                )
            return None
        if options.ref and options.file:
            raise pytest.UsageError(
                "failcat: give --failcat-suite or --failcat-suite-file, not both"
            )
        if not options.model:
            raise pytest.UsageError(
                "failcat: --failcat-model package.module:predict is required with a suite"
            )
        if options.report and not (options.version and options.version.strip()):
            raise pytest.UsageError("failcat: --failcat-report needs --failcat-version V")
        return options


def load_predict(spec: str, invocation_dir: Path) -> Callable[[Any], Any]:
    """`package.module:function` (or `module:object.method`), imported as `python -m pytest`
    would find it: the directory pytest was started from is tried last."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise pytest.UsageError(
            f"failcat: --failcat-model {spec!r}: expected package.module:function"
        )
    try:
        target: Any = _import(module_name, invocation_dir)
    except Exception as exc:
        raise pytest.UsageError(
            f"failcat: --failcat-model {spec!r}: cannot import {module_name}: "
            f"{type(exc).__name__}: {exc}"
        ) from None
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise pytest.UsageError(f"failcat: --failcat-model {spec!r}: no {attribute}")
        target = getattr(target, part)
    if not callable(target):
        raise pytest.UsageError(f"failcat: --failcat-model {spec!r}: {attribute} is not callable")
    return target  # type: ignore[no-any-return]


def _import(module_name: str, invocation_dir: Path) -> Any:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        root = module_name.split(".")[0]
        where = str(invocation_dir)
        if exc.name != root or where in sys.path:
            raise
        sys.path.append(where)
        return importlib.import_module(module_name)


class CaseMismatch(AssertionError):
    """The prediction is not the expected output (by the comparator)."""


def _shown(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, sort_keys=True, default=repr)
    return text if len(text) <= SHOWN else text[:SHOWN] + f"... ({len(text)} characters)"


class FailcatSuitePlugin:
    """One suite, its cases as items, their outcomes, the run report."""

    def __init__(self, config: pytest.Config, options: _Options) -> None:
        self.config = config
        self.options = options
        self.is_worker = hasattr(config, "workerinput")  # pytest-xdist: the controller reports
        try:
            self.compare: Comparator = comparator(options.compare_spec)
        except ComparatorError as exc:
            raise pytest.UsageError(f"failcat: --failcat-compare {exc}") from None
        self.predict = load_predict(options.model or "", config.invocation_params.dir)
        self.suite: Optional[Suite] = None
        self.outcomes: dict[str, dict[str, Any]] = {}
        self.run: Optional[dict[str, Any]] = None
        self.report_error: Optional[str] = None

    # ---- the suite ------------------------------------------------------------------------
    def _server(self) -> SuiteServer:
        try:
            return SuiteServer(self.options.url)
        except SuiteError as exc:
            raise pytest.UsageError(f"failcat: {exc}") from None

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        if self.options.report and not self.is_worker:
            self._server().close()  # no server or no credentials to report to: say so now
        try:
            if self.options.file:
                self.suite = read_file(Path(self.options.file))
            else:
                name, version = parse_ref(self.options.ref or "")
                with self._server() as server:
                    self.suite = server.fetch(name, version)
        except SuiteError as exc:
            raise pytest.UsageError(f"failcat: {exc}") from None

    def pytest_report_header(self, config: pytest.Config) -> Optional[str]:
        if self.suite is None:
            return None
        return (
            f"failcat: suite {self.suite.name} v{self.suite.version}, "
            f"{len(self.suite.cases)} cases from {self.suite.source}; "
            f"model {self.options.model}, compare {self.options.compare_spec}"
        )

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection_modifyitems(
        self, session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        # tryfirst: -k, -m and --deselect (pytest's own hooks) then apply to the cases too.
        if self.suite is None:
            return
        node = SuiteNode.from_parent(
            session,
            name=f"failcat:{self.suite.name}@{self.suite.version}",
            nodeid=f"failcat:{self.suite.name}@{self.suite.version}",
        )
        node.suite, node.plugin = self.suite, self
        # Collected through the public collection hooks, so the terminal counts the cases
        # ("collected N items") and a collection error is reported like any other.
        session.ihook.pytest_collectstart(collector=node)
        report = session.ihook.pytest_make_collect_report(collector=node)
        session.ihook.pytest_collectreport(report=report)
        if report.failed:
            raise pytest.UsageError(f"failcat: cannot collect the suite: {report.longreprtext}")
        items.extend(item for item in report.result if isinstance(item, pytest.Item))

    # ---- outcomes and the run -------------------------------------------------------------
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when != "call":
            return
        for key, value in report.user_properties:
            if key == PROPERTY:
                self.outcomes[value["caseId"]] = value

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if not self.options.report or self.is_worker or self.suite is None:
            return
        if session.config.option.collectonly or exitstatus == pytest.ExitCode.INTERRUPTED:
            return
        if exitstatus not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
            return
        ran = self.outcomes
        outcomes = [ran[str(c["case_id"])] for c in self.suite.cases if str(c["case_id"]) in ran]
        try:
            with self._server() as server:
                self.run = server.report(self.suite, self.options.version or "", outcomes)
        except (SuiteError, pytest.UsageError) as exc:
            self.report_error = str(exc).removeprefix("failcat: ")
            # A CI job whose run was not recorded must not look green.
            session.exitstatus = pytest.ExitCode.USAGE_ERROR

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.suite is None or self.is_worker:
            return
        tally = {"PASS": 0, "FAIL": 0, "ERROR": 0}
        for outcome in self.outcomes.values():
            tally[outcome["outcome"]] += 1
        write = terminalreporter.write_line
        terminalreporter.section("failcat")
        write(
            f"suite {self.suite.name} v{self.suite.version}: {tally['PASS']} passed, "
            f"{tally['FAIL']} failed, {tally['ERROR']} errors of {len(self.suite.cases)} cases "
            f"(model {self.options.model}, compare {self.options.compare_spec})"
        )
        if self.run is not None:
            rate = self.run.get("passRate")
            shown_rate = "n/a" if rate is None else f"{rate:.1%}"
            write(
                f"run {self.run['id']} recorded: {self.run['model']} {self.options.version}, "
                f"pass rate {shown_rate}; {len(self.run.get('proposals') or [])} failure groups "
                "proposed for resolution"
            )
        if self.report_error is not None:
            write(f"the run was NOT recorded: {self.report_error}", red=True, bold=True)


class SuiteNode(pytest.Collector):
    """The suite, parent of its cases (it is collected by the plugin, not from a file)."""

    suite: Suite
    plugin: FailcatSuitePlugin

    def collect(self) -> list[pytest.Item]:
        items: list[pytest.Item] = []
        seen: set[str] = set()
        for case in self.suite.cases:
            case_id = str(case["case_id"])
            if case_id in seen:
                continue  # a hand-edited file: one test per case
            seen.add(case_id)
            mode = case.get("failure_mode") or "unclassified"
            items.append(CaseItem.from_parent(self, name=f"{case_id}[{mode}]", case=case))
        return items


class CaseItem(pytest.Item):
    """One case: predict its input, compare with its expected output."""

    def __init__(self, *, case: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.case = case
        # -k can select by severity, failure mode or "synthetic" as well as by case id.
        self.extra_keyword_matches.update(
            str(v)
            for v in (
                case.get("severity"),
                case.get("failure_mode"),
                "synthetic" if case.get("synthetic") else None,
            )
            if v
        )

    @property
    def plugin(self) -> FailcatSuitePlugin:
        parent = self.parent
        assert isinstance(parent, SuiteNode)
        return parent.plugin

    def _record(
        self,
        outcome: str,
        latency_ms: Optional[float],
        prediction: Any = None,
        error: Optional[str] = None,
    ) -> None:
        self.user_properties.append(
            (
                PROPERTY,
                {
                    "caseId": str(self.case["case_id"]),
                    "outcome": outcome,
                    "latencyMs": latency_ms,
                    "prediction": prediction,
                    "error": error[:2000] if error else None,
                },
            )
        )

    def runtest(self) -> None:
        plugin = self.plugin
        started = time.perf_counter()
        try:
            raw = plugin.predict(self.case["input"])
        except Exception as exc:
            latency = (time.perf_counter() - started) * 1000
            self._record("ERROR", latency, error=f"{type(exc).__name__}: {exc}")
            raise
        latency = (time.perf_counter() - started) * 1000
        try:
            prediction = as_json(raw)
            passed = bool(plugin.compare(prediction, self.case["expected"]))
        except Exception as exc:
            self._record("ERROR", latency, error=f"comparator: {type(exc).__name__}: {exc}")
            raise
        self._record("PASS" if passed else "FAIL", latency, prediction)
        if not passed:
            raise CaseMismatch(prediction)

    def repr_failure(self, excinfo: Any, style: Any = None) -> Any:
        if isinstance(excinfo.value, CaseMismatch):
            case = self.case
            lines = [
                f"case {case['case_id']} ({case.get('failure_mode') or 'unclassified'}, "
                f"severity {case.get('severity') or '-'}"
                + (
                    f", synthetic variant of {case.get('parent_case_id')}"
                    if case.get("synthetic")
                    else ""
                )
                + f") does not match by {self.plugin.options.compare_spec}",
                f"  expected:   {_shown(case['expected'])}",
                f"  prediction: {_shown(excinfo.value.args[0])}",
                f"  input:      {_shown(case['input'])}",
            ]
            return "\n".join(lines)
        return super().repr_failure(excinfo, style="short")

    def _cut(self, traceback: Any) -> Any:
        """The traceback from your predict function on (the plugin's frames say nothing)."""
        for index, entry in enumerate(traceback):
            if entry.frame.code.name == "runtest" and str(entry.path) == __file__:
                return traceback[index + 1 :] or traceback
        return traceback

    def _traceback_filter(self, excinfo: Any) -> Any:  # pytest >= 8
        return self._cut(excinfo.traceback)

    def _prunetraceback(self, excinfo: Any) -> None:  # pytest 7
        excinfo.traceback = self._cut(excinfo.traceback)

    def reportinfo(self) -> tuple[Any, Optional[int], str]:
        return self.path, None, f"failcat case {self.case['case_id']}"
