"""A bounded, fixed-seed fuzz of every POST route of the real daemon: never a 5xx, never slow.

Bodies mix the fields each route knows (with plausible and random values) with random JSON, wrong
top-level types and bytes that are not JSON. Every answer must come within ``LIMIT_S`` seconds with a
status below 500; an error is the API's own error shape. Generation is bounded by clamping the token
budget, so "slow" means the daemon stalled, not that a valid request asked for many tokens. Loopback
only; the number of requests is fixed (``EXAMPLES``).
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.daemon import Daemon
from tests.infer_helpers import start_serving_daemon

pytestmark = pytest.mark.e2e

EXAMPLES = 300
LIMIT_S = 5.0
MODELS = ["tiny", "emb", "tiny:latest", "fuzz-a", "nope", "", "hf.co/x/y", "127.0.0.1:9/x/y", "a/b/c/d", "x" * 300]
SAFE_TARGETS = ["fuzz-a", "fuzz-b:v1", "fuzz/c", "", "bad name!", "x" * 300]

LEAF = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20),
    st.sampled_from(["", "-1", "5m", "json", "high", "\ud800", "\x00", "sha256:" + "0" * 64, "../../etc/passwd"]),
)
JSON = st.recursive(LEAF, lambda kids: st.one_of(st.lists(kids, max_size=4),
                                                 st.dictionaries(st.text(max_size=8), kids, max_size=4)),
                    max_leaves=12)
MODEL = st.one_of(st.sampled_from(MODELS), JSON)
ROLE = st.sampled_from(["system", "user", "assistant", "tool", "developer", "USER", ""])
MESSAGE = st.one_of(st.fixed_dictionaries(
    {"role": ROLE, "content": st.one_of(st.text(max_size=40), JSON)},
    optional={"images": JSON, "tool_calls": JSON, "tool_name": JSON, "thinking": JSON, "tool_call_id": JSON}), JSON)
MESSAGES = st.one_of(st.lists(MESSAGE, max_size=3), JSON)
OPTIONS = st.one_of(st.dictionaries(st.sampled_from(
    ["temperature", "top_k", "top_p", "seed", "stop", "num_ctx", "num_batch", "repeat_penalty", "num_gpu",
     "num_thread", "mirostat", "min_p", "typical_p", "num_keep", "penalize_newline", "bogus"]), JSON, max_size=4), JSON)
TOOL = st.one_of(st.fixed_dictionaries({"type": st.just("function"), "function": st.fixed_dictionaries(
    {"name": st.one_of(st.just("get_weather"), JSON)}, optional={"parameters": JSON, "description": JSON})}), JSON)
INFER = {"model": MODEL, "options": OPTIONS, "stream": JSON, "keep_alive": JSON, "format": JSON, "think": JSON}

FIELDS: dict[str, dict[str, st.SearchStrategy[Any]]] = {
    "/api/generate": {**INFER, "prompt": JSON, "suffix": JSON, "system": JSON, "template": JSON, "context": JSON,
                      "raw": JSON, "images": JSON},
    "/api/chat": {**INFER, "messages": MESSAGES, "tools": st.one_of(st.lists(TOOL, max_size=2), JSON)},
    "/api/embed": {"model": MODEL, "input": JSON, "truncate": JSON, "dimensions": JSON, "options": OPTIONS,
                   "keep_alive": JSON},
    "/api/embeddings": {"model": MODEL, "prompt": JSON, "options": OPTIONS},
    "/api/show": {"model": MODEL, "name": MODEL, "verbose": JSON},
    "/api/create": {"model": st.sampled_from(SAFE_TARGETS), "from": MODEL, "files": JSON, "adapters": JSON,
                    "template": JSON, "system": JSON, "parameters": JSON, "messages": MESSAGES, "license": JSON,
                    "quantize": JSON, "modelfile": st.one_of(st.just("FROM tiny\n"), JSON), "stream": JSON},
    "/api/copy": {"source": MODEL, "destination": st.sampled_from(SAFE_TARGETS)},
    "/api/delete": {"model": st.sampled_from(SAFE_TARGETS)},
    "/api/pull": {"model": MODEL, "insecure": JSON, "stream": JSON},
    "/api/push": {"model": MODEL, "insecure": JSON, "stream": JSON},
    "/api/render": {"model": MODEL, "messages": MESSAGES, "prompt": JSON, "tools": JSON, "system": JSON,
                    "think": JSON, "raw": JSON},
    "/api/import": {"path": JSON, "stream": JSON},
    "/v1/chat/completions": {"model": MODEL, "messages": MESSAGES, "tools": JSON, "tool_choice": JSON,
                             "max_tokens": JSON, "temperature": JSON, "stream": JSON, "response_format": JSON,
                             "stop": JSON, "seed": JSON, "n": JSON, "stream_options": JSON, "logprobs": JSON},
    "/v1/completions": {"model": MODEL, "prompt": JSON, "max_tokens": JSON, "suffix": JSON, "stream": JSON,
                        "echo": JSON, "temperature": JSON, "stop": JSON},
    "/v1/embeddings": {"model": MODEL, "input": JSON, "dimensions": JSON, "encoding_format": JSON},
}
ROUTES = [*sorted(FIELDS), "/api/blobs/sha256:" + "0" * 64]


def _bounded(path: str, body: Any) -> Any:
    """Clamp the token budget of inference bodies (see the module docstring)."""
    if not isinstance(body, dict):
        return body
    if path in ("/api/generate", "/api/chat"):
        opts = body.get("options")
        if opts is None or isinstance(opts, dict):
            opts = dict(opts or {})
            n = opts.get("num_predict")
            opts["num_predict"] = n if isinstance(n, int) and not isinstance(n, bool) and 0 <= n <= 16 else 8
            body["options"] = opts
    elif path.startswith("/v1/") and "embeddings" not in path:
        n = body.get("max_tokens")
        body["max_tokens"] = n if isinstance(n, int) and not isinstance(n, bool) and 0 < n <= 16 else 8
    return body


def _bodies(path: str) -> st.SearchStrategy[bytes]:
    fields = FIELDS.get(path, {"x": JSON})
    as_dict = st.fixed_dictionaries({}, optional=fields).map(lambda b: _bounded(path, b))
    top = st.one_of(as_dict, as_dict, as_dict, JSON)
    encoded = top.map(lambda v: json.dumps(v).encode("utf-8", "surrogatepass"))
    raw = st.sampled_from([b"", b"{", b"[]", b"null", b'{"model": "tiny", "prompt": "a"', b"\xff\xfe{}",
                           b'{"model": "\\ud800"}', b"[" * 5000 + b"]" * 5000, b'{"a": ' + b"9" * 5000 + b"}",
                           b'{"model": "tiny", "prompt": "hi", "options": {"num_predict": 4}}'])
    return st.one_of(encoded, encoded, encoded, raw)


REQUESTS = st.sampled_from(ROUTES).flatmap(lambda p: st.tuples(st.just(p), _bodies(p)))


@pytest.fixture(scope="module")
def fuzz_daemon(tmp_path_factory: pytest.TempPathFactory, tiny_chat_gguf: Path, tiny_embed_gguf: Path
                ) -> Iterator[Daemon]:
    d = start_serving_daemon(tmp_path_factory.mktemp("fuzz-home"), tiny_chat_gguf, tiny_embed_gguf,
                             env={"OLLAMALIKE_MAX_BODY_BYTES": str(1 << 20)})
    try:
        yield d
    finally:
        print(d.logs()[-20000:])
        d.stop()


def _post(d: Daemon, path: str, body: bytes) -> tuple[int, str, bytes, float]:
    start = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", d.port, timeout=LIMIT_S * 4)
    try:
        conn.request("POST", path, body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, resp.getheader("Content-Type", ""), data, time.monotonic() - start
    finally:
        conn.close()


def _check_error_shape(path: str, status: int, data: bytes) -> None:
    obj = json.loads(data)
    assert isinstance(obj, dict) and set(obj) == {"error"}, obj
    if path.startswith("/v1/"):
        assert isinstance(obj["error"], dict) and obj["error"].get("message"), obj
    else:
        assert isinstance(obj["error"], str) and obj["error"].strip(), obj


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                 HealthCheck.data_too_large])
@given(REQUESTS)
def test_no_route_answers_5xx_or_stalls(fuzz_daemon: Daemon, request_: tuple[str, bytes]) -> None:
    path, body = request_
    status, ctype, data, elapsed = _post(fuzz_daemon, path, body)
    shown = body[:300]
    assert status < 500, f"POST {path} {shown!r} -> {status}: {data[:500]!r}"
    assert elapsed < LIMIT_S, f"POST {path} {shown!r} took {elapsed:.1f}s"
    if status >= 400:
        _check_error_shape(path, status, data)
    elif "ndjson" in ctype:
        for line in data.splitlines():
            if line.strip():
                chunk = json.loads(line)
                assert "error" not in chunk or isinstance(chunk["error"], str), chunk
    # Not a 5xx and still serving: the next request is answered too.
    assert _post(fuzz_daemon, "/api/show", b'{"model": "tiny"}')[0] == 200
