"""Long-running processes log JSON lines carrying the request's correlation id."""

from __future__ import annotations

import gc
import json
import logging
import os

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

    import services.gateway.app as gateway_app
    from services.gateway.cli import main

    served, built_with = [], []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: served.append(app))
    create_app = gateway_app.create_app
    monkeypatch.setattr(
        gateway_app,
        "create_app",
        lambda settings, **kw: built_with.append(settings) or create_app(settings, **kw),
    )
    monkeypatch.setenv("FAILCAT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("FAILCAT_LOG_LEVEL", "INFO")
    monkeypatch.delenv("FAILCAT_ISSUER", raising=False)
    assert main(["serve", "--port", "0"]) == 0
    assert served and gc.get_threshold() == GC_THRESHOLDS
    # The default issuer is this server's address, given to the app, not left in the
    # environment for whatever reads settings next in this process.
    assert [s.issuer for s in built_with] == ["http://127.0.0.1:0"]
    assert "FAILCAT_ISSUER" not in os.environ
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
