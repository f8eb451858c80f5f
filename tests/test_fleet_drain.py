"""Graceful drain of a REAL daemon (issue 18): SIGTERM with streams in flight on the tiny model.

The stream in flight finishes and the daemon exits 0 with no runner left; a new request during the
drain gets 503 with Retry-After in its API's error shape while read-only routes still answer; a
stream that outlives OLLAMALIKE_DRAIN_TIMEOUT is cut with an error line naming the drain timeout.
"""

from __future__ import annotations

import http.client
import json
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.daemon import Daemon
from tests.helpers import assert_api_error, assert_openai_error
from tests.infer_helpers import create_model

pytestmark = pytest.mark.e2e


def _post(d: Daemon, path: str, body: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
    conn = http.client.HTTPConnection("127.0.0.1", d.port, timeout=30)
    try:
        conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        resp = conn.getresponse()
        raw = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, json.loads(raw)
    finally:
        conn.close()


class StreamReader(threading.Thread):
    """Reads a streamed response line by line in the background; ``started`` is set at the first line."""

    def __init__(self, d: Daemon, path: str, body: dict[str, Any]) -> None:
        super().__init__(daemon=True)
        self.d, self.path, self.body = d, path, body
        self.lines: list[bytes] = []
        self.status = 0
        self.error: BaseException | None = None
        self.started = threading.Event()

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.d.port, timeout=120)
        try:
            conn.request("POST", self.path, json.dumps(self.body), {"Content-Type": "application/json"})
            resp = conn.getresponse()
            self.status = resp.status
            while line := resp.readline():
                if line.strip():
                    self.lines.append(line.rstrip(b"\n"))
                    self.started.set()
        except BaseException as e:
            self.error = e
        finally:
            self.started.set()
            conn.close()


def _wait_draining(d: Daemon, timeout: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, body = d.request("GET", "/api/health", timeout=5)
        if status == 503:
            return body  # type: ignore[no-any-return]
        time.sleep(0.02)
    raise AssertionError(f"the daemon never reported draining\n{d.logs()}")


def _serving(daemon_factory: Callable[..., Daemon], tiny_chat_gguf: Path, tmp_path: Path, drain: str) -> Daemon:
    d = daemon_factory({"OLLAMALIKE_DRAIN_TIMEOUT": drain})
    create_model(d, "tiny", f"FROM {tiny_chat_gguf}\n", tmp_path)
    return d


def test_sigterm_lets_the_stream_in_flight_finish_and_refuses_new_work(
    daemon_factory: Callable[..., Daemon], tiny_chat_gguf: Path, tmp_path: Path
) -> None:
    d = _serving(daemon_factory, tiny_chat_gguf, tmp_path, "90s")
    # Long enough to be running through the checks below (about 10 s on this machine unloaded).
    reader = StreamReader(d, "/api/generate", {"model": "tiny", "prompt": "hi",
                                               "options": {"num_predict": 1200, "temperature": 0}})
    reader.start()
    assert reader.started.wait(60) and reader.status == 200, (reader.status, reader.error, d.logs())
    d.note_children()
    assert d.children_seen, "a runner should be serving the stream"
    d.proc.send_signal(signal.SIGTERM)

    health = _wait_draining(d)
    assert health["draining"] is True and health["ready"] is False and health["status"] == "draining"
    assert health["in_flight"] == 1
    status, headers, body = _post(d, "/api/generate", {"model": "tiny", "prompt": "new", "stream": False})
    assert_api_error(status, body, 503, "shutting down")
    assert int(headers["retry-after"]) >= 1
    status, headers, body = _post(d, "/v1/chat/completions",
                                  {"model": "tiny", "messages": [{"role": "user", "content": "new"}]})
    assert_openai_error(status, body, 503, "shutting down")
    assert body["error"]["type"] == "server_error" and int(headers["retry-after"]) >= 1
    # Read-only routes and the liveness probe still answer while draining.
    assert d.request("GET", "/api/tags", timeout=5)[0] == 200
    assert d.request("GET", "/api/health/live", timeout=5) == (200, {"status": "alive"})
    assert reader.is_alive(), "the stream should still be running during these checks"

    reader.join(120)
    assert not reader.is_alive() and reader.error is None, reader.error
    last = json.loads(reader.lines[-1])
    assert last["done"] is True and last["eval_count"] == 1200, last
    assert not any(b'"error"' in line for line in reader.lines)
    d.proc.wait(60)
    assert d.stop() == 0  # exit 0, no runner left (checked by Daemon.stop)
    logs = d.logs()
    assert "drained: 1 request(s) finished, 0 cut" in logs and "ollamalike stopped" in logs


def test_a_stream_longer_than_the_drain_timeout_is_cut_with_an_error_line(
    daemon_factory: Callable[..., Daemon], tiny_chat_gguf: Path, tmp_path: Path
) -> None:
    d = _serving(daemon_factory, tiny_chat_gguf, tmp_path, "1s")
    long = {"num_predict": 1900, "temperature": 0}
    native = StreamReader(d, "/api/chat", {"model": "tiny", "messages": [{"role": "user", "content": "hi"}],
                                           "options": long})
    sse = StreamReader(d, "/v1/completions", {"model": "tiny", "prompt": "hi", "stream": True,
                                              "max_tokens": 1900, "temperature": 0})
    whole = StreamReader(d, "/api/generate", {"model": "tiny", "prompt": "hi", "stream": False, "options": long})
    native.start()
    sse.start()
    assert native.started.wait(60) and sse.started.wait(60), d.logs()
    whole.start()
    deadline = time.monotonic() + 30
    while d.request("GET", "/api/health", timeout=5)[1]["in_flight"] < 3:
        assert time.monotonic() < deadline, "the non-streamed request never started"
        time.sleep(0.02)
    d.note_children()
    signalled = time.monotonic()
    d.proc.send_signal(signal.SIGTERM)
    for reader in (native, sse, whole):
        reader.join(60)
    cut_after = time.monotonic() - signalled
    assert native.error is None and sse.error is None, (native.error, sse.error)

    last = json.loads(native.lines[-1])
    assert set(last) == {"error"} and "drain timeout (1s, OLLAMALIKE_DRAIN_TIMEOUT)" in last["error"], last
    assert not any(json.loads(line).get("done") for line in native.lines)
    assert sse.lines[-1].startswith(b"data: ") and sse.lines[-1] != b"data: [DONE]"
    event = json.loads(sse.lines[-1][len(b"data: "):])
    assert "drain timeout" in event["error"]["message"] and event["error"]["type"] == "server_error", event
    # A non-streamed request still running is answered with the 503 (nothing was sent yet).
    assert_api_error(whole.status, whole.lines[0].decode(), 503, "drain timeout")
    assert cut_after < 15, f"the streams were cut {cut_after:.1f}s after SIGTERM (drain timeout 1s)"

    d.proc.wait(60)
    assert d.stop() == 0
    assert "drain timeout: cutting 3 request(s) still running" in d.logs()
