"""The disk spool: what the server could not take survives a client restart, comes back in
capture order, and a full spool loses its oldest cases with an exact count."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

from failcat_client import Client
from failcat_client._spool import Spool

from tests.sdk.conftest import FailcatServer, unique_source

MODEL = {"name": "spool-model", "version": "1.0.0"}


def received_order(server: FailcatServer, source: str, ids: list[str]) -> list[datetime]:
    stored = {c["externalId"]: c for c in server.cases(source)}
    assert set(stored) == set(ids), f"{len(stored)} stored of {len(ids)}"
    return [datetime.fromisoformat(stored[i]["receivedAt"].replace("Z", "+00:00")) for i in ids]


def test_spool_survives_a_client_restart_and_replays_in_order(
    own_server: FailcatServer, tmp_path: Path
) -> None:
    source = unique_source("restart")
    spool = tmp_path / "spool"
    own_server.start()
    args = own_server.client_args()
    own_server.stop()  # the server is down for the whole life of the first client

    first = Client(*args, spool_dir=str(spool), batch_size=40, flush_interval_s=0.02,
                   max_retries=1, backoff_base_s=0.01, timeout_s=2)  # fmt: skip
    ids = [first.capture(model=MODEL, data_source=source, input={"i": i}) for i in range(200)]
    assert not first.flush(0.5)
    assert not first.close(timeout=0.5)  # a process exit: the rest is spooled, nothing lost
    stats = first.stats()
    assert stats["spooled"] == 200 and stats["sent"] == 0 and stats["dropped"] == 0
    assert stats["pending"] == 200
    assert sum(1 for _ in spool.glob("*.ndjson")) >= 1

    # The next process: same spool, server back. Old cases first, then the new ones.
    own_server.start()
    second = Client(*args, spool_dir=str(spool), batch_size=40, flush_interval_s=0.02)
    ids += [
        second.capture(model=MODEL, data_source=source, input={"i": i}) for i in range(200, 300)
    ]
    assert second.flush(60), second.stats()
    stats = second.stats()
    second.close()
    assert stats["sent"] == 300 and stats["dropped"] == 0 and stats["pending"] == 0
    times = received_order(own_server, source, ids)
    assert times == sorted(times), "replayed out of capture order"
    assert times[0] < times[-1]  # several requests, not one
    assert not list(spool.glob("*.ndjson"))


def test_full_spool_drops_the_oldest_with_an_exact_counter(
    own_server: FailcatServer, tmp_path: Path
) -> None:
    source = unique_source("full")
    spool = tmp_path / "spool"
    own_server.start()
    args = own_server.client_args()
    own_server.stop()

    client = Client(*args, spool_dir=str(spool), spool_max_bytes=40_000,
                    spool_segment_bytes=4_000, batch_size=25, flush_interval_s=0.01,
                    max_retries=0, timeout_s=2)  # fmt: skip
    n = 1000
    ids = []
    costs = []
    for i in range(n):
        started = time.perf_counter()
        ids.append(
            client.capture(model=MODEL, data_source=source, input={"i": i, "pad": "x" * 100})
        )
        costs.append(time.perf_counter() - started)
        if i % 50 == 0:
            time.sleep(0.01)  # let the sender spool as it goes, as in production
    client.close(timeout=0.5)
    stats = client.stats()
    dropped = stats["dropped"]
    assert 0 < dropped < n
    assert stats["spooled"] == n and stats["pending"] == n - dropped
    assert sum(p.stat().st_size for p in spool.glob("*.ndjson")) <= 40_000
    # The caller paid nothing for the full spool: the spool is the sender's work.
    costs.sort()
    assert costs[len(costs) // 2] < 0.001

    own_server.start()
    replay = Client(*args, spool_dir=str(spool), flush_interval_s=0.01)
    assert replay.flush(60), replay.stats()
    assert replay.stats()["sent"] == n - dropped
    replay.close()
    stored = {c["externalId"] for c in own_server.cases(source)}
    # Exactly the newest n - dropped arrived: the counter says precisely what was lost.
    assert stored == set(ids[dropped:])


def test_a_torn_last_line_is_cut_and_the_cursor_survives_reopening(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=10_000, segment_bytes=100)
    lines = [b'{"n":%d,"pad":"%s"}' % (i, b"y" * 20) for i in range(10)]
    assert spool.append(lines[:5]) == 0
    assert spool.append(lines[5:]) == 0
    got, position = spool.peek(3, 10_000)
    assert got == lines[:3]
    spool.commit(position, 3)
    spool.close()
    tail = sorted(tmp_path.glob("*.ndjson"))[-1]
    with tail.open("ab") as fh:
        fh.write(b'{"n":99,"torn')  # a crash in the middle of an append

    reopened = Spool(tmp_path, max_bytes=10_000, segment_bytes=100)
    assert reopened.pending == 7
    seen = []
    while True:
        got, position = reopened.peek(4, 10_000)
        if not got:
            break
        seen += got
        reopened.commit(position, len(got))
    assert seen == lines[3:]
    assert reopened.pending == 0
    reopened.close()


def test_one_spool_directory_serves_one_live_client(tmp_path: Path, caplog) -> None:
    first = Spool(tmp_path, max_bytes=1000)
    second = Client("http://127.0.0.1:9", "id", "secret", spool_dir=str(tmp_path))
    assert "spool disabled" in caplog.text
    second.close(timeout=0.1)
    first.close()
