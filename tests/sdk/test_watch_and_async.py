"""`watch()` (decorator and context manager) and `AsyncClient`, against the real server."""

from __future__ import annotations

import pytest
from failcat_client import AsyncClient, Client

from tests.sdk.conftest import FailcatServer, unique_source
from tests.sdk.test_capture import corpus_inputs

MODEL = {"name": "watched-model", "version": "4.1.0"}


class ModelDown(RuntimeError):
    pass


def test_watch_captures_exceptions_and_low_confidence_and_reraises(server: FailcatServer):
    source = unique_source("watch")
    client = Client(*server.client_args(), flush_interval_s=0.05)

    @client.watch(model=MODEL, data_source=source, min_confidence=0.5, tags=["watched"])
    def classify(features: dict, threshold: float = 0.5) -> dict:
        if features.get("broken"):
            raise ModelDown("feature store timed out")
        return {"label": "fraud", "confidence": features["p"]}

    assert classify({"p": 0.9}) == {"label": "fraud", "confidence": 0.9}  # confident: nothing
    assert classify({"p": 0.2}, threshold=0.7)["confidence"] == 0.2
    with pytest.raises(ModelDown, match="feature store timed out"):
        classify({"broken": True})

    with client.watch(model=MODEL, data_source=source, input={"text": "x"},
                      min_confidence=0.5) as watched:  # fmt: skip
        watched.result({"label": "spam"}, confidence=0.1)
    low_block = watched.captured
    with pytest.raises(KeyError), client.watch(model=MODEL, data_source=source, input={"k": 1}):
        {}["missing"]

    assert client.flush(30)
    client.close()
    cases = server.cases(source)
    assert len(cases) == 4
    low = next(c for c in cases if c["input"] == {"features": {"p": 0.2}, "threshold": 0.7})
    assert low["confidence"] == 0.2 and low["prediction"] == {"label": "fraud", "confidence": 0.2}
    assert low["signals"]["low_confidence"]["threshold"] == 0.5
    raised = next(c for c in cases if c["input"] == {"features": {"broken": True}})
    assert raised["signals"]["exception"]["type"].endswith("ModelDown")
    assert "feature store timed out" in raised["signals"]["exception"]["traceback"]
    assert raised["title"].startswith("ModelDown raised by")
    assert {c["externalId"] for c in cases} >= {low_block}
    keyerror = next(c for c in cases if c["input"] == {"k": 1})
    assert keyerror["signals"]["exception"]["type"] == "builtins.KeyError"


async def test_async_client_delivers_and_watches_coroutines(server: FailcatServer) -> None:
    source = unique_source("async")
    records = corpus_inputs(60)
    async with AsyncClient(*server.client_args(), batch_size=20, flush_interval_s=0.05) as client:
        ids = [
            client.capture(model=MODEL, data_source=source, input=rec, confidence=0.3)
            for rec in records
        ]

        @client.watch(model=MODEL, data_source=source)
        async def generate(prompt: str) -> str:
            raise TimeoutError(f"no answer for {prompt!r}")

        with pytest.raises(TimeoutError):
            await generate("hello")
        assert await client.flush(60)
        stats = client.stats()
    assert stats["sent"] == 61 and stats["dropped"] == 0 and stats["pending"] == 0
    stored = {c["externalId"]: c for c in server.cases(source)}
    assert set(ids) <= set(stored) and len(stored) == 61
    assert [stored[i]["input"] for i in ids] == records
    timeout_case = next(c for c in stored.values() if c["input"] == {"prompt": "hello"})
    assert timeout_case["signals"]["exception"]["type"] == "builtins.TimeoutError"


async def test_async_client_spools_when_down_and_replays(own_server: FailcatServer, tmp_path):
    source = unique_source("async-spool")
    own_server.start()
    args = own_server.client_args()
    own_server.stop()
    client = AsyncClient(*args, spool_dir=str(tmp_path / "spool"), max_retries=0,
                         flush_interval_s=0.02, timeout_s=2)  # fmt: skip
    ids = [client.capture(model=MODEL, data_source=source, input={"i": i}) for i in range(50)]
    assert not await client.flush(0.5)
    await client.close(timeout=0.1)
    assert client.stats()["spooled"] == 50

    own_server.start()
    async with AsyncClient(*args, spool_dir=str(tmp_path / "spool")) as replay:
        assert await replay.flush(60)
        assert replay.stats()["sent"] == 50
    assert {c["externalId"] for c in own_server.cases(source)} == set(ids)
