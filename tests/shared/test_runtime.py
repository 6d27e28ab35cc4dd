"""Long-running processes log JSON lines carrying the request's correlation id."""

from __future__ import annotations

import gc
import json
import logging

import pytest

from shared.logging import JsonFormatter, correlation_id
from shared.runtime import GC_THRESHOLDS


@pytest.fixture
def restore_process_state():
    root = logging.getLogger()
    handlers, level, thresholds = root.handlers[:], root.level, gc.get_threshold()
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    gc.set_threshold(*thresholds)


def test_serve_sets_up_json_logs_and_gc_before_serving(
    monkeypatch, tmp_path, capsys, restore_process_state
):
    import uvicorn

    from services.gateway.cli import main

    served = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: served.append(app))
    monkeypatch.setenv("FAILCAT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("FAILCAT_LOG_LEVEL", "INFO")
    assert main(["serve", "--port", "0"]) == 0
    assert served and gc.get_threshold() == GC_THRESHOLDS
    [handler] = logging.getLogger().handlers
    assert isinstance(handler.formatter, JsonFormatter)

    token = correlation_id.set("c0ffee")
    try:
        logging.getLogger("failcat.test").warning("case %s stored", "x1")
    finally:
        correlation_id.reset(token)
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["msg"] == "case x1 stored" and line["correlation_id"] == "c0ffee"
    assert line["level"] == "WARNING" and line["logger"] == "failcat.test"
