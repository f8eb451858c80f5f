"""Issue 21 item 13: a runner that dies just as a request arrives, against the real daemon.

A request whose runner turns out to be dead before anything was sent to the client (connection
refused or reset, the process gone) is retried once on a fresh runner: kill -9 of an idle runner
followed at once by a request is a reload, never a 500. A runner that dies again on the retry
gives a clear 5xx error body, never a hang.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.daemon import Daemon, pid_alive
from tests.dying_runner import write_wrapper
from tests.helpers import assert_api_error, assert_openai_error
from tests.infer_helpers import runner_pids, start_serving_daemon

pytestmark = pytest.mark.e2e

ROUNDS = 8
GENERATE = {"model": "tiny", "prompt": "hi", "stream": False, "options": {"num_predict": 2, "num_ctx": 512}}
CHAT = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "stream": False,
        "options": {"num_predict": 2, "num_ctx": 512}}
EMBED = {"model": "emb", "input": ["hello world"]}


@pytest.fixture(scope="module")
def d(tmp_path_factory: pytest.TempPathFactory, tiny_chat_gguf: Path, tiny_embed_gguf: Path) -> Iterator[Daemon]:
    daemon = start_serving_daemon(tmp_path_factory.mktemp("death"), tiny_chat_gguf, tiny_embed_gguf,
                                  env={"OLLAMALIKE_NUM_PARALLEL": "1", "OLLAMALIKE_MAX_LOADED_MODELS": "1"})
    yield daemon
    print(daemon.logs())
    daemon.stop()


def _kill_runners(d: Daemon) -> list[int]:
    pids = runner_pids(d)
    assert pids, "no runner to kill"
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    return pids


@pytest.mark.parametrize(("path", "body"), [("/api/generate", GENERATE), ("/api/chat", CHAT), ("/api/embed", EMBED)],
                         ids=["generate", "chat", "embed"])
def test_request_right_after_an_idle_runner_is_killed_reloads(d: Daemon, path: str, body: dict[str, Any]) -> None:
    status, first = d.request("POST", path, body)
    assert status == 200, first
    killed: set[int] = set()
    for _ in range(ROUNDS):
        killed.update(_kill_runners(d))
        status, answer = d.request("POST", path, body, timeout=60)  # no wait: it lands in the dying window
        assert status == 200, answer
        assert answer.get("done", True) is True
    assert not any(pid_alive(p) for p in killed)
    assert set(runner_pids(d)).isdisjoint(killed)


def test_openai_request_right_after_the_kill_reloads(d: Daemon) -> None:
    body = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    assert d.request("POST", "/v1/chat/completions", body)[0] == 200
    for _ in range(3):
        _kill_runners(d)
        status, answer = d.request("POST", "/v1/chat/completions", body, timeout=60)
        assert status == 200, answer
        assert answer["object"] == "chat.completion"


@pytest.fixture
def dying(daemon_factory: Any, tmp_path: Path, tiny_chat_gguf: Path, tiny_embed_gguf: Path) -> Daemon:
    """A daemon whose every runner loads, then dies on its first request (tests/dying_runner.py)."""
    wrapper = write_wrapper(tmp_path / "dying-python")
    d: Daemon = daemon_factory({"OLLAMALIKE_RUNNER_PYTHON": str(wrapper), "OLLAMALIKE_NUM_PARALLEL": "1"})
    for name, gguf in (("tiny", tiny_chat_gguf), ("emb", tiny_embed_gguf)):
        modelfile = tmp_path / f"{name}.Modelfile"
        modelfile.write_text(f"FROM {gguf}\n")
        result = d.cli("create", name, "-f", str(modelfile))
        assert result.returncode == 0, result.stderr
    return d


@pytest.mark.parametrize(("path", "body"), [("/api/generate", GENERATE), ("/api/chat", CHAT), ("/api/embed", EMBED)],
                         ids=["generate", "chat", "embed"])
def test_a_runner_dying_again_on_the_retry_is_a_clear_500(dying: Daemon, path: str, body: dict[str, Any]) -> None:
    started = time.monotonic()
    status, answer = dying.request("POST", path, body, timeout=90)
    assert_api_error(status, answer, 500, "runner process exited unexpectedly")
    assert "signal SIGKILL" in answer["error"]
    assert time.monotonic() - started < 60
    # Tried twice: the first runner and one fresh one, no more.
    assert dying.logs().count("retrying on a fresh runner") == 1, dying.logs()
    # The daemon stays usable: a request that needs no runner still answers.
    assert dying.request("GET", "/api/tags")[0] == 200


def test_openai_runner_dying_twice_is_an_openai_500(dying: Daemon) -> None:
    body = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    status, answer = dying.request("POST", "/v1/chat/completions", body, timeout=90)
    assert_openai_error(status, answer, 500, "runner")


def test_a_streamed_request_whose_runners_die_ends_with_an_error(dying: Daemon) -> None:
    status, answer = dying.request("POST", "/api/generate", {**GENERATE, "stream": True}, timeout=90)
    # Nothing was sent before the runners died, so it is a real HTTP error, not a 200 with an error line.
    assert_api_error(status, answer, 500, "runner process exited unexpectedly")
