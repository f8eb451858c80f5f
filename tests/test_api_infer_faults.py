"""Serving under faults, against the real daemon: client disconnects, killed runners, a full
queue, and concurrent first requests. The daemon runs with one slot per model and a queue of one."""

from __future__ import annotations

import http.client
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.daemon import Daemon, pid_alive
from tests.helpers import assert_api_error
from tests.infer_helpers import runner_pids, start_serving_daemon

pytestmark = pytest.mark.e2e

# Greedy decoding of this raw prompt runs thousands of tokens without an end-of-sequence token
# (checked against the tiny model), so these requests are still generating when a test acts.
LONG = {"num_predict": 100000, "temperature": 0, "num_ctx": 2048}
LONG_REQUEST = {"model": "tiny", "prompt": "tell me a long story", "raw": True, "options": LONG}


@pytest.fixture(scope="module")
def d(tmp_path_factory: pytest.TempPathFactory, tiny_chat_gguf: Path) -> Iterator[Daemon]:
    env = {"OLLAMALIKE_NUM_PARALLEL": "1", "OLLAMALIKE_MAX_QUEUE": "1"}
    daemon = start_serving_daemon(tmp_path_factory.mktemp("faults"), tiny_chat_gguf, env=env)
    yield daemon
    print(daemon.logs())
    daemon.stop()


class OpenStream:
    """A streaming generate whose first line has been read; ``close`` drops the connection."""

    def __init__(self, d: Daemon, body: dict[str, Any]) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", d.port, timeout=120)
        self.conn.request("POST", "/api/generate", json.dumps(body), {"Content-Type": "application/json"})
        self.resp = self.conn.getresponse()
        assert self.resp.status == 200
        self.first = json.loads(self.resp.readline())

    def rest(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.resp.read().splitlines() if line.strip()]

    def close(self) -> None:
        self.conn.close()


def cpu_ticks(pid: int) -> int:
    """User + system CPU time of a process in clock ticks (0 once it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    fields = stat[stat.rfind(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])


def quick(d: Daemon, timeout: float = 60) -> tuple[int, Any]:
    return d.request("POST", "/api/generate", {"model": "tiny", "prompt": "hi", "stream": False,
                                               "options": {"num_predict": 4, "num_ctx": 2048}}, timeout=timeout)


def test_client_disconnect_frees_the_slot(d: Daemon) -> None:
    stream = OpenStream(d, LONG_REQUEST)
    assert stream.first["done"] is False
    stream.close()
    # With one slot, this request can only run once the abandoned sequence has been cancelled.
    started = time.monotonic()
    status, body = quick(d, timeout=30)
    assert status == 200 and body["done"] is True, body
    assert time.monotonic() - started < 20


def test_abandoned_non_streamed_request_frees_the_slot(d: Daemon) -> None:
    quick(d)  # loaded
    pids = runner_pids(d)
    before = sum(cpu_ticks(p) for p in pids)
    conn = http.client.HTTPConnection("127.0.0.1", d.port, timeout=120)
    conn.request("POST", "/api/generate", json.dumps({**LONG_REQUEST, "stream": False}), {"Content-Type": "application/json"})
    # Nothing is written until the end for stream: false; the daemon must still notice the hang-up.
    deadline = time.monotonic() + 30
    while sum(cpu_ticks(p) for p in pids) < before + 20 and time.monotonic() < deadline:
        time.sleep(0.02)
    conn.close()
    status, body = quick(d, timeout=30)
    assert status == 200 and body["done"] is True, body


def test_full_queue_answers_503_and_queued_request_completes(d: Daemon) -> None:
    stream = OpenStream(d, LONG_REQUEST)  # holds the only slot
    results: list[tuple[int, Any]] = []
    threads = [threading.Thread(target=lambda: results.append(quick(d))) for _ in range(2)]
    try:
        for t in threads:
            t.start()
        # One of the two fits in the queue (size 1) and waits; the other is refused at once.
        deadline = time.monotonic() + 30
        while not results and time.monotonic() < deadline:
            time.sleep(0.01)
        assert results, "neither request was answered while the slot was busy"
        assert_api_error(results[0][0], results[0][1], 503, "maximum pending requests")
    finally:
        stream.close()
    for t in threads:
        t.join(60)
    assert len(results) == 2 and results[1][0] == 200 and results[1][1]["done"] is True, results


def test_killed_runner_errors_mid_stream_and_next_request_reloads(d: Daemon) -> None:
    stream = OpenStream(d, LONG_REQUEST)
    pids = runner_pids(d)
    assert pids, "no runner process found"
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    rest = stream.rest()
    stream.close()
    assert rest, "the stream ended without a final line"
    last = rest[-1]
    assert set(last) == {"error"} and "runner" in last["error"], last
    assert not any(pid_alive(p) for p in pids)
    status, body = quick(d)
    assert status == 200 and body["done"] is True and body["load_duration"] > 0, body
    assert set(runner_pids(d)).isdisjoint(pids)


def test_killed_runner_fails_a_non_streamed_request_with_500(d: Daemon) -> None:
    quick(d)  # loaded
    results: list[tuple[int, Any]] = []
    body = {**LONG_REQUEST, "stream": False}
    worker = threading.Thread(target=lambda: results.append(d.request("POST", "/api/generate", body)))
    pids = runner_pids(d)
    assert pids
    before = sum(cpu_ticks(p) for p in pids)
    worker.start()
    # Kill only once the runner is generating for this request (it burns CPU; idle, it does not).
    deadline = time.monotonic() + 30
    while sum(cpu_ticks(p) for p in pids) < before + 20 and time.monotonic() < deadline:
        time.sleep(0.02)
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    worker.join(60)
    assert results, "the request did not finish after its runner was killed"
    assert_api_error(results[0][0], results[0][1], 500, "runner")
    status, again = quick(d)
    assert status == 200 and again["load_duration"] > 0


def test_killed_idle_runner_is_noticed(d: Daemon) -> None:
    quick(d)
    pids = runner_pids(d)
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    # The daemon reaps the process and stops listing it.
    deadline = time.monotonic() + 10
    while d.request("GET", "/api/ps")[1]["models"] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert d.request("GET", "/api/ps")[1]["models"] == []
    status, body = quick(d)
    assert status == 200 and body["load_duration"] > 0


def test_concurrent_first_requests_start_one_runner(d: Daemon) -> None:
    d.request("POST", "/api/generate", {"model": "tiny", "keep_alive": 0})
    deadline = time.monotonic() + 10
    while runner_pids(d) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert runner_pids(d) == []
    results: list[tuple[int, Any]] = []
    seen: set[int] = set()
    threads = [threading.Thread(target=lambda: results.append(quick(d))) for _ in range(2)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        seen.update(runner_pids(d))
        time.sleep(0.01)
    assert [r[0] for r in results] == [200, 200]
    assert len(seen) == 1, seen
    assert sum(1 for _, body in results if body["load_duration"] > 0) == 1
