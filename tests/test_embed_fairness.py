"""Issue 21 item 3: inputs per embed request, abandoned embeds and fair scheduling, against the real daemon.

- More than ``OLLAMALIKE_MAX_EMBED_INPUTS`` inputs is a 400 (native and OpenAI shapes) before any runner starts.
- A big embed in flight on a runner does not starve a one-word embed or a short generation on the same
  runner: the runner serves embeds in chunks, round robin, between generation steps.
- A big embed whose client hangs up stops: the runner's pending inputs drop to zero long before the job
  could have finished, and it answers the next embed at once.
- Chunked, interleaved jobs still give each request its own vectors, in order.
The runner's own ``/health`` (on its Unix socket) says how many embed inputs it has pending and done.
"""

from __future__ import annotations

import http.client
import json
import math
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ollamalike.config import load_config
from ollamalike.errors import BadRequest
from tests.daemon import Daemon
from tests.helpers import assert_api_error, assert_openai_error
from tests.infer_helpers import runner_pids, start_serving_daemon

pytestmark = pytest.mark.e2e

BIG = 2000  # inputs of ~100 tokens: tens of seconds of work for either tiny model on this machine
BIG_TEXT = " ".join(["the story of a little cat"] * 17)
QUICK_BOUND = 15.0  # seconds for the short generation; a request behind the whole big embed waits far longer
SMALL_BOUND = 5.0  # seconds for a one-word embed: about one chunk of the big one here


@pytest.fixture(scope="module")
def d(tmp_path_factory: pytest.TempPathFactory, tiny_chat_gguf: Path, tiny_embed_gguf: Path) -> Iterator[Daemon]:
    daemon = start_serving_daemon(tmp_path_factory.mktemp("embedfair"), tiny_chat_gguf, tiny_embed_gguf,
                                  env={"OLLAMALIKE_NUM_PARALLEL": "2"})
    yield daemon
    print(daemon.logs())
    daemon.stop()


# -- the runner's own health, over its socket ------------------------------------------------------------
class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path) -> None:
        super().__init__("runner", timeout=10)
        self._path = str(path)

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(10)
        sock.connect(self._path)
        self.sock = sock


def runner_health(d: Daemon, embedding: bool) -> dict[str, Any]:
    """/health of the loaded runner of an embedding model (``embedding``) or of the chat model."""
    for path in sorted((d.home / "run").glob("runner-*.sock")):
        conn = _UnixConnection(path)
        try:
            conn.request("GET", "/health")
            body = json.loads(conn.getresponse().read())
        except OSError:
            continue  # a socket left by a runner that is gone
        finally:
            conn.close()
        if body.get("status") == "ok" and body.get("embedding") is embedding:
            return dict(body)
    raise AssertionError(f"no loaded {'embedding' if embedding else 'chat'} runner")


def wait_for(check: Any, timeout: float, what: str) -> float:
    """Poll ``check()`` until it is true; the seconds it took."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout, f"timed out after {timeout:.0f}s waiting for {what}"
        time.sleep(0.02)
    return time.monotonic() - started


class BigEmbed:
    """A big /api/embed sent on a raw connection; ``abandon`` hangs up without reading the answer."""

    def __init__(self, d: Daemon, model: str, n: int = BIG) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", d.port, timeout=600)
        body = json.dumps({"model": model, "input": [f"{i} {BIG_TEXT}" for i in range(n)]})
        self.conn.request("POST", "/api/embed", body, {"Content-Type": "application/json"})

    def abandon(self) -> None:
        self.conn.close()


def _timed(d: Daemon, path: str, body: dict[str, Any]) -> tuple[int, Any, float]:
    started = time.monotonic()
    status, answer = d.request("POST", path, body, timeout=300)
    return status, answer, time.monotonic() - started


# -- the cap ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("env", "expected"), [({}, 2048), ({"OLLAMALIKE_MAX_EMBED_INPUTS": "10"}, 10),
                                               ({"OLLAMA_MAX_EMBED_INPUTS": "7"}, 7)])
def test_max_embed_inputs_setting(env: dict[str, str], expected: int) -> None:
    assert load_config(env).max_embed_inputs == expected


@pytest.mark.parametrize("value", ["0", "-1", "many", "1.5"])
def test_bad_max_embed_inputs_is_refused(value: str) -> None:
    with pytest.raises(BadRequest, match="OLLAMALIKE_MAX_EMBED_INPUTS"):
        load_config({"OLLAMALIKE_MAX_EMBED_INPUTS": value})


def test_too_many_inputs_is_400_before_any_runner_starts(daemon_factory: Any, tmp_path: Path,
                                                          tiny_embed_gguf: Path) -> None:
    small: Daemon = daemon_factory({"OLLAMALIKE_MAX_EMBED_INPUTS": "3"})
    modelfile = tmp_path / "emb.Modelfile"
    modelfile.write_text(f"FROM {tiny_embed_gguf}\n")
    assert small.cli("create", "emb", "-f", str(modelfile)).returncode == 0
    four = ["a", "b", "c", "d"]
    status, body = small.request("POST", "/api/embed", {"model": "emb", "input": four})
    assert_api_error(status, body, 400, "too many inputs: 4 in one embed request, at most 3")
    status, body = small.request("POST", "/v1/embeddings", {"model": "emb", "input": four})
    assert_openai_error(status, body, 400, "at most 3")
    # Refused before the model was resolved or loaded: an unknown model gets the same 400.
    status, body = small.request("POST", "/api/embed", {"model": "no-such-model", "input": four})
    assert_api_error(status, body, 400, "too many inputs")
    assert runner_pids(small) == [] and small.request("GET", "/api/ps")[1]["models"] == []
    status, body = small.request("POST", "/api/embed", {"model": "emb", "input": four[:3]})
    assert status == 200 and len(body["embeddings"]) == 3, body


def test_default_cap_takes_2048_and_refuses_2049(d: Daemon) -> None:
    status, body = d.request("POST", "/api/embed", {"model": "emb", "input": ["x"] * 2049})
    assert_api_error(status, body, 400, "at most 2048")
    status, body = d.request("POST", "/api/embed", {"model": "emb", "input": ["x"] * 2048})
    assert status == 200 and len(body["embeddings"]) == 2048


# -- fairness and cancellation --------------------------------------------------------------------------------
def test_big_embed_on_a_chat_runner_starves_neither_a_small_embed_nor_a_generation(d: Daemon) -> None:
    gen = {"model": "tiny", "prompt": "hi", "stream": False, "options": {"num_predict": 8}}
    assert d.request("POST", "/api/generate", gen)[0] == 200  # loaded
    done_before = runner_health(d, embedding=False)["embed_inputs_done"]
    big = BigEmbed(d, "tiny")
    try:
        wait_for(lambda: runner_health(d, False)["embed_inputs_pending"] > 0, 60, "the big embed to reach the runner")
        status, small, small_s = _timed(d, "/api/embed", {"model": "tiny", "input": "cat"})
        assert status == 200 and len(small["embeddings"]) == 1, small
        status, answer, gen_s = _timed(d, "/api/generate", gen)
        assert status == 200 and answer["done"] is True and answer["eval_count"] > 0, answer
        health = runner_health(d, False)
        assert health["embed_inputs_pending"] > 0, "the big embed finished first: the test proves nothing"
        assert small_s < SMALL_BOUND and gen_s < QUICK_BOUND, (small_s, gen_s)
    finally:
        big.abandon()
    # Abandoned: the runner drops the rest of the job at its next chunk.
    idle_s = wait_for(lambda: runner_health(d, False)["embed_inputs_pending"] == 0, 15, "the runner to go idle")
    embedded = runner_health(d, False)["embed_inputs_done"] - done_before
    assert embedded < BIG - 100, f"the abandoned embed ran on ({embedded} of {BIG} inputs embedded)"
    status, small, small_s = _timed(d, "/api/embed", {"model": "tiny", "input": "cat"})
    assert status == 200 and small_s < 5, small_s
    print(f"small embed {small_s:.2f}s, generation {gen_s:.2f}s, {health['embed_inputs_pending']} inputs pending; "
          f"idle {idle_s:.2f}s after the hang-up, {embedded} of {BIG} embedded")


def test_big_embed_on_an_embedding_runner_does_not_starve_a_small_one_and_stops_when_abandoned(d: Daemon) -> None:
    assert d.request("POST", "/api/embed", {"model": "emb", "input": "x"})[0] == 200
    done_before = runner_health(d, embedding=True)["embed_inputs_done"]
    pids = runner_pids(d)
    big = BigEmbed(d, "emb")
    try:
        wait_for(lambda: runner_health(d, True)["embed_inputs_pending"] > 0, 60, "the big embed to reach the runner")
        status, small, small_s = _timed(d, "/api/embed", {"model": "emb", "input": ["dog"]})
        assert status == 200 and len(small["embeddings"]) == 1, small
        assert runner_health(d, True)["embed_inputs_pending"] > 0, "the big embed finished first"
        assert small_s < SMALL_BOUND, small_s
    finally:
        big.abandon()
    wait_for(lambda: runner_health(d, True)["embed_inputs_pending"] == 0, 15, "the runner to go idle")
    embedded = runner_health(d, True)["embed_inputs_done"] - done_before
    assert embedded < BIG - 100, f"the abandoned embed ran on ({embedded} of {BIG} inputs embedded)"
    assert runner_pids(d) == pids  # the same runner: nothing was killed to stop the work


@pytest.mark.parametrize("model", ["tiny", "emb"])
def test_interleaved_embeds_each_get_their_own_vectors_in_order(d: Daemon, model: str) -> None:
    texts_a = [" ".join(["cat"] * (1 + i % 37)) + f" {i}" for i in range(120)]
    texts_b = ["dog", "the sky is blue", "hello world"]
    solo_a = d.request("POST", "/api/embed", {"model": model, "input": texts_a})[1]["embeddings"]
    solo_b = [d.request("POST", "/api/embed", {"model": model, "input": t})[1]["embeddings"][0] for t in texts_b]
    results: dict[str, Any] = {}

    def run(name: str, texts: list[str]) -> None:
        results[name] = d.request("POST", "/api/embed", {"model": model, "input": texts}, timeout=300)

    threads = [threading.Thread(target=run, args=("a", texts_a))] + [
        threading.Thread(target=run, args=(f"b{i}", [t])) for i, t in enumerate(texts_b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    status, got_a = results["a"]
    assert status == 200 and len(got_a["embeddings"]) == len(texts_a)
    for want, got in zip(solo_a, got_a["embeddings"], strict=True):
        assert max(abs(x - y) for x, y in zip(want, got, strict=True)) < 1e-4
    for i, want in enumerate(solo_b):
        status, got = results[f"b{i}"]
        assert status == 200, got
        assert max(abs(x - y) for x, y in zip(want, got["embeddings"][0], strict=True)) < 1e-4
        assert abs(math.sqrt(sum(x * x for x in got["embeddings"][0])) - 1) < 1e-4


# -- chunking (runner/embed.py), table-driven -----------------------------------------------------------------
@pytest.mark.parametrize(("lengths", "start", "n_batch", "n_seq_max", "end"), [
    ([3, 3, 3], 0, 8, 4, 2),    # the batch is full after two
    ([3, 3, 3], 0, 9, 4, 3),    # exactly fits
    ([3, 3, 3], 0, 100, 2, 2),  # sequence ids run out first
    ([3, 3, 3], 2, 100, 4, 3),  # from the middle
    ([8, 1], 0, 8, 4, 1),       # one input filling the batch is a chunk of its own
    ([1] * 10, 0, 100, 1, 1),   # a side context: one input per chunk
])
def test_embed_chunks_are_bounded(lengths: list[int], start: int, n_batch: int, n_seq_max: int, end: int) -> None:
    from ollamalike.runner.embed import _group_end

    assert _group_end([[1] * n for n in lengths], start, n_batch, n_seq_max) == end


@pytest.mark.parametrize(("inputs", "message"), [([[]], "empty input"), ([[1] * 9], "exceeds the batch size 8")])
def test_embed_chunking_refuses_bad_inputs(inputs: list[list[int]], message: str) -> None:
    from ollamalike.runner.embed import _group_end

    with pytest.raises(ValueError, match=message):
        _group_end(inputs, 0, 8, 4)
