"""A bounded load test on loopback against the real daemon with the tiny model: 200 requests from
32 client threads with a queue of 8 and 2 parallel slots. Every request either completes or gets
the queue-full 503; nothing else. Afterwards no runner process and no file descriptor is leaked."""

from __future__ import annotations

import http.client
import json
import os
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.daemon import Daemon, runner_descendants, start_daemon
from tests.helpers import assert_api_error, assert_openai_error
from tests.infer_helpers import create_model

pytestmark = pytest.mark.e2e

REQUESTS = 200
CLIENTS = 32
FD_TOLERANCE = 4


@pytest.fixture
def d(tmp_path: Path, tiny_chat_gguf: Path) -> Iterator[Daemon]:
    daemon = start_daemon(tmp_path / "home", {"OLLAMALIKE_MAX_QUEUE": "8", "OLLAMALIKE_NUM_PARALLEL": "2",
                                              "OLLAMALIKE_KEEP_ALIVE": "10m"})
    try:
        create_model(daemon, "tiny", f"FROM {tiny_chat_gguf}\n", tmp_path)
        yield daemon
    finally:
        print(daemon.logs()[-5000:])
        daemon.stop()


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def one_request(d: Daemon, i: int, start: threading.Barrier | None) -> tuple[str, int, str]:
    """One of three request kinds; returns (kind, status, problem or "")."""
    kind = ("generate", "chat-stream", "openai")[i % 3]
    options = {"num_predict": 4, "temperature": 0}
    if kind == "generate":
        path, body = "/api/generate", {"model": "tiny", "prompt": f"count {i}", "stream": False, "options": options}
    elif kind == "chat-stream":
        path, body = "/api/chat", {"model": "tiny", "messages": [{"role": "user", "content": f"hi {i}"}],
                                   "options": options}
    else:
        path, body = "/v1/chat/completions", {"model": "tiny", "max_tokens": 4,
                                              "messages": [{"role": "user", "content": f"hello {i}"}]}
    if start is not None:
        start.wait(timeout=30)
    conn = http.client.HTTPConnection("127.0.0.1", d.port, timeout=60)
    try:
        conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        resp = conn.getresponse()
        raw = resp.read()
        status = resp.status
    finally:
        conn.close()
    try:
        if status == 503:
            check = assert_openai_error if kind == "openai" else assert_api_error
            check(status, raw, 503, "server busy")
        elif status != 200:
            return kind, status, raw.decode(errors="replace")
        elif kind == "generate":
            assert json.loads(raw)["done"] is True
        elif kind == "chat-stream":
            lines = [json.loads(x) for x in raw.splitlines() if x.strip()]
            assert lines[-1]["done"] is True and not any("error" in x for x in lines)
        else:
            assert json.loads(raw)["choices"][0]["finish_reason"] in ("stop", "length")
    except AssertionError as e:
        return kind, status, f"bad body: {e}: {raw[:300]!r}"
    return kind, status, ""


def test_bounded_load_completes_or_503s_without_leaks(d: Daemon) -> None:
    # Warm: the runner is loaded, so the fd baseline includes its connection.
    status, _ = d.request("POST", "/api/generate", {"model": "tiny", "prompt": "warm", "stream": False,
                                                    "options": {"num_predict": 1}})
    assert status == 200
    d.note_children()
    runners = runner_descendants(d.proc.pid)
    assert runners, "the model should be loaded in a runner process"
    baseline = fd_count(d.proc.pid)

    started = time.monotonic()
    # The first wave starts together (a burst well past 2 slots + 8 queued); the rest follow as threads free up.
    barrier = threading.Barrier(CLIENTS)
    with ThreadPoolExecutor(CLIENTS) as pool:
        results = list(pool.map(lambda i: one_request(d, i, barrier if i < CLIENTS else None), range(REQUESTS)))
    elapsed = time.monotonic() - started

    problems = [r for r in results if r[2]]
    assert not problems, problems[:5]
    statuses = Counter(status for _, status, _ in results)
    assert statuses[200] + statuses[503] == REQUESTS, statuses
    assert statuses[200] >= 2 + 8, statuses  # at least the first burst's 2 running + 8 queued are served
    assert statuses[503] >= 1, statuses  # and the burst really overflowed it
    assert elapsed < 60, f"{REQUESTS} requests took {elapsed:.1f}s"
    print(f"load: {dict(statuses)} in {elapsed:.1f}s ({REQUESTS / elapsed:.1f} req/s)")

    # Same runner, nothing queued, no stray processes.
    assert runner_descendants(d.proc.pid) == runners
    status, metrics = d.request("GET", "/metrics")
    assert status == 200 and "ollamalike_queue_depth 0.0" in metrics
    # Closed connections release their descriptors (the server closes its side asynchronously).
    deadline = time.monotonic() + 10
    while fd_count(d.proc.pid) > baseline + FD_TOLERANCE and time.monotonic() < deadline:
        time.sleep(0.05)
    assert fd_count(d.proc.pid) <= baseline + FD_TOLERANCE, (baseline, fd_count(d.proc.pid))

    # Unloading stops the runner; nothing survives it.
    status, body = d.request("POST", "/api/generate", {"model": "tiny", "keep_alive": 0})
    assert status == 200 and body["done_reason"] == "unload"
    deadline = time.monotonic() + 20
    while runner_descendants(d.proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert runner_descendants(d.proc.pid) == []
    assert d.request("GET", "/api/ps")[1] == {"models": []}
    assert fd_count(d.proc.pid) <= baseline + FD_TOLERANCE
