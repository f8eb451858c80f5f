"""logprobs/top_logprobs, truncate: false and shift: false through the REAL daemon, real runners and
the tiny model: the native API (raw HTTP and the official ``ollama`` client, streamed and not), the
``/v1`` translations through the official ``openai`` client, and every new field's bad values."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ollama
import openai
import pytest

from tests.daemon import Daemon
from tests.helpers import assert_api_error, assert_openai_error
from tests.infer_helpers import start_serving_daemon, stream_lines

pytestmark = pytest.mark.e2e

GREEDY = {"temperature": 0, "num_predict": 10}
MESSAGES = [{"role": "user", "content": "Name three colours"}]
LONG = " ".join(f"word{i}" for i in range(400))


@pytest.fixture(scope="module")
def d(tmp_path_factory: pytest.TempPathFactory, tiny_chat_gguf: Path) -> Iterator[Daemon]:
    daemon = start_serving_daemon(tmp_path_factory.mktemp("logprobs"), tiny_chat_gguf, tools=True)
    yield daemon
    print(daemon.logs())
    daemon.stop()


@pytest.fixture(scope="module")
def oai(d: Daemon) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{d.base_url}/v1", api_key="x", max_retries=0, timeout=120)


def streamed(d: Daemon, path: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream_lines(d, path, {**body, "stream": True})]


def check_entries(entries: list[dict[str, Any]], top: int) -> None:
    """Greedy decoding: each chosen token is its position's top entry; Ollama's field shapes."""
    assert entries
    for e in entries:
        assert set(e) <= {"token", "logprob", "bytes", "top_logprobs"} and e["logprob"] <= 0
        if "\ufffd" not in e["token"]:
            assert e.get("bytes", []) == list(e["token"].encode())
        if top == 0:
            assert "top_logprobs" not in e  # omitted when empty, as Ollama's omitempty
            continue
        tops = e["top_logprobs"]
        assert len(tops) == top and (tops[0]["token"], tops[0]["logprob"]) == (e["token"], e["logprob"])
        assert sum(math.exp(t["logprob"]) for t in tops) <= 1 + 1e-9


# -- native API ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("top", [0, 3])
def test_generate_streamed_and_not_agree(d: Daemon, top: int) -> None:
    body = {"model": "tiny", "prompt": "Why is the sky blue?", "options": GREEDY, "logprobs": True, "top_logprobs": top}
    chunks = streamed(d, "/api/generate", body)
    streamed_entries = [e for c in chunks for e in c.get("logprobs", [])]
    assert "logprobs" not in chunks[-1] or chunks[-1]["logprobs"]
    status, whole = d.request("POST", "/api/generate", {**body, "stream": False})
    assert status == 200, whole
    check_entries(whole["logprobs"], top)
    assert whole["logprobs"] == streamed_entries and list(whole)[-1] == "logprobs"  # Ollama puts it last
    assert len(whole["logprobs"]) == whole["eval_count"]
    assert "".join(e["token"] for e in whole["logprobs"]) == whole["response"]
    for c in chunks[:-1]:  # each chunk carries the entries of the tokens whose text it carries
        assert "".join(e["token"] for e in c.get("logprobs", [])) == c["response"]


def test_chat_streamed_and_not_agree_and_nothing_when_not_asked(d: Daemon) -> None:
    body = {"model": "tiny", "messages": MESSAGES, "options": GREEDY, "logprobs": True, "top_logprobs": 2}
    chunks = streamed(d, "/api/chat", body)
    status, whole = d.request("POST", "/api/chat", {**body, "stream": False})
    assert status == 200, whole
    check_entries(whole["logprobs"], 2)
    assert whole["logprobs"] == [e for c in chunks for e in c.get("logprobs", [])]
    # Ollama's ChatResponse order: ..., done, done_reason, logprobs, then the metrics.
    keys = list(whole)
    assert keys.index("done_reason") < keys.index("logprobs") < keys.index("total_duration")
    plain = streamed(d, "/api/chat", {**body, "logprobs": False, "top_logprobs": 5})
    assert all("logprobs" not in c for c in plain)  # top_logprobs alone asks for nothing (as Ollama)
    assert "".join(c["message"]["content"] for c in plain) == whole["message"]["content"]


WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
CALL = {"type": "object", "required": ["name", "arguments"], "properties": {
    "name": {"const": "get_weather"},
    "arguments": {"type": "object", "properties": {"city": {"enum": ["Paris", "Oslo"]}}, "required": ["city"]}}}


def test_entries_survive_the_tool_parser_and_the_grammar(d: Daemon) -> None:
    """A grammar-constrained tool call: the parser holds the call's text back, its tokens' entries still come
    (in chunks of their own), and asking for logprobs changes nothing in the constrained output."""
    body = {"model": "tools", "messages": [{"role": "user", "content": "Weather in Paris?"}], "tools": [WEATHER],
            "format": CALL, "options": {"temperature": 0, "num_predict": 64}}
    chunks = streamed(d, "/api/chat", {**body, "logprobs": True, "top_logprobs": 1})
    calls = [c for ch in chunks for c in ch["message"].get("tool_calls", [])]
    assert [c["function"]["name"] for c in calls] == ["get_weather"]
    entries = [e for ch in chunks for e in ch.get("logprobs", [])]
    assert len(entries) == chunks[-1]["eval_count"]
    assert json.loads("".join(e["token"] for e in entries))["name"] == "get_weather"
    assert any(ch.get("logprobs") and not ch["message"]["content"] and not ch["message"].get("tool_calls")
               for ch in chunks)  # entries alone, while the parser buffered the call
    plain = streamed(d, "/api/chat", body)
    assert [c["function"] for ch in plain for c in ch["message"].get("tool_calls", [])] == [c["function"] for c in calls]


def test_official_ollama_client_reads_logprobs(d: Daemon) -> None:
    client = ollama.Client(host=d.base_url)
    resp = client.chat(model="tiny", messages=MESSAGES, options=GREEDY, logprobs=True, top_logprobs=3)
    assert resp.logprobs and len(resp.logprobs) == resp.eval_count
    for lp in resp.logprobs:
        assert lp.top_logprobs is not None and len(lp.top_logprobs) == 3
        assert lp.top_logprobs[0].token == lp.token and lp.top_logprobs[0].logprob == lp.logprob
    parts = list(client.generate(model="tiny", prompt="Hello", options=GREEDY, logprobs=True, stream=True))
    entries = [lp for p in parts for lp in (p.logprobs or [])]
    assert len(entries) == parts[-1].eval_count and all(lp.top_logprobs is None for lp in entries)
    assert "".join(lp.token for lp in entries) == "".join(p.response or "" for p in parts)


def test_truncate_false_refuses_a_prompt_longer_than_num_ctx(d: Daemon) -> None:
    opts = {"num_ctx": 64, "num_predict": 2, "temperature": 0}
    for path, body in (("/api/generate", {"prompt": LONG}), ("/api/chat", {"messages": [{"role": "user", "content": LONG}]})):
        status, err = d.request("POST", path, {"model": "tiny", "stream": False, "options": opts, "truncate": False, **body})
        assert_api_error(status, err, 400, "the input length exceeds the context length")
        assert "num_ctx 64" in err["error"]
        status, ok = d.request("POST", path, {"model": "tiny", "stream": False, "options": opts, **body})
        assert status == 200 and ok["prompt_eval_count"] <= 63, ok  # the default still cuts it
        fits = {"prompt": "short"} if "prompt" in body else {"messages": [{"role": "user", "content": "short"}]}
        status, ok = d.request("POST", path, {"model": "tiny", "stream": False, "options": opts, "truncate": False, **fits})
        assert status == 200, ok


def test_shift_false_stops_with_length_at_a_full_context(d: Daemon) -> None:
    opts = {"num_ctx": 64, "num_predict": 500, "temperature": 0, "repeat_penalty": 1.0}
    body = {"model": "tiny", "prompt": "Tell me a very long story", "options": opts, "stream": False}
    status, shifted = d.request("POST", "/api/generate", body)
    assert status == 200 and shifted["eval_count"] > 64  # by default the context shifts and it goes on
    status, full = d.request("POST", "/api/generate", {**body, "shift": False})
    assert status == 200 and full["done_reason"] == "length", full
    # The whole context is used and nothing beyond: the slot's 64 cells, plus the token sampled from the last.
    assert full["prompt_eval_count"] + full["eval_count"] == 64 + 1
    assert len(full["context"]) == full["prompt_eval_count"] + full["eval_count"]
    chunks = streamed(d, "/api/chat", {"model": "tiny", "messages": MESSAGES, "options": opts, "shift": False})
    assert chunks[-1]["done_reason"] == "length"
    assert chunks[-1]["prompt_eval_count"] + chunks[-1]["eval_count"] == 64 + 1


@pytest.mark.parametrize(("field", "value", "message"), [
    ("top_logprobs", 21, "top_logprobs must be between 0 and 20"),
    ("top_logprobs", -1, "top_logprobs must be between 0 and 20"),
    ("top_logprobs", 2.5, "invalid value for 'top_logprobs': expected an integer"),
    ("top_logprobs", "3", "invalid value for 'top_logprobs': expected an integer"),
    ("top_logprobs", True, "invalid value for 'top_logprobs': expected an integer"),
    ("logprobs", "yes", "invalid value for 'logprobs': expected a boolean"),
    ("logprobs", 1, "invalid value for 'logprobs': expected a boolean"),
    ("truncate", "no", "invalid value for 'truncate': expected a boolean"),
    ("shift", 0, "invalid value for 'shift': expected a boolean"),
])
@pytest.mark.parametrize("path", ["/api/generate", "/api/chat"])
def test_bad_values_of_the_new_fields_are_400(d: Daemon, path: str, field: str, value: Any, message: str) -> None:
    body = {"model": "tiny", "prompt": "hi", "messages": MESSAGES, "logprobs": True, field: value}
    status, err = d.request("POST", path, body)
    assert_api_error(status, err, 400, message)


# -- /v1 through the official openai client -------------------------------------------------------------
def test_openai_chat_logprobs_streamed_and_not(d: Daemon, oai: openai.OpenAI) -> None:
    resp = oai.chat.completions.create(model="tiny", messages=MESSAGES, temperature=0, max_tokens=10,
                                       logprobs=True, top_logprobs=3)
    content = resp.choices[0].logprobs.content
    assert content is not None and len(content) == resp.usage.completion_tokens
    assert "".join(t.token for t in content) == resp.choices[0].message.content
    for t in content:
        assert len(t.top_logprobs) == 3 and t.top_logprobs[0].token == t.token and t.logprob <= 0
        assert t.top_logprobs[0].logprob == t.logprob
        if "\ufffd" not in t.token:
            assert bytes(t.bytes or []) == t.token.encode()
    # The same numbers as the native API: one inference path.
    status, native = d.request("POST", "/api/chat", {"model": "tiny", "messages": MESSAGES, "stream": False,
                                                      "options": {"temperature": 0, "num_predict": 10},
                                                      "logprobs": True, "top_logprobs": 3})
    assert status == 200 and [e["logprob"] for e in native["logprobs"]] == [t.logprob for t in content]
    stream = oai.chat.completions.create(model="tiny", messages=MESSAGES, temperature=0, max_tokens=10,
                                         logprobs=True, top_logprobs=3, stream=True)
    streamed_tokens = [t for ch in stream if ch.choices and ch.choices[0].logprobs
                       for t in ch.choices[0].logprobs.content or []]
    assert [(t.token, t.logprob) for t in streamed_tokens] == [(t.token, t.logprob) for t in content]
    plain = oai.chat.completions.create(model="tiny", messages=MESSAGES, temperature=0, max_tokens=4)
    assert plain.choices[0].logprobs is None


def test_openai_completions_legacy_logprobs(oai: openai.OpenAI) -> None:
    resp = oai.completions.create(model="tiny", prompt="Once upon a time", temperature=0, max_tokens=8, logprobs=2)
    lp = resp.choices[0].logprobs
    assert lp is not None and lp.tokens and lp.token_logprobs and lp.top_logprobs and lp.text_offset is not None
    assert "".join(lp.tokens) == resp.choices[0].text and len(lp.tokens) == resp.usage.completion_tokens
    assert lp.text_offset == [len("".join(lp.tokens[:i])) for i in range(len(lp.tokens))]
    for token, logprob, tops in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs, strict=True):
        assert 1 <= len(tops) <= 2 and max(tops.values()) == logprob and tops.get(token) == logprob
    parts = list(oai.completions.create(model="tiny", prompt="Once upon a time", temperature=0, max_tokens=8,
                                        logprobs=2, stream=True))
    tokens = [t for p in parts if p.choices and p.choices[0].logprobs for t in p.choices[0].logprobs.tokens or []]
    offsets = [o for p in parts if p.choices and p.choices[0].logprobs for o in p.choices[0].logprobs.text_offset or []]
    assert tokens == lp.tokens and offsets == lp.text_offset
    zero = oai.completions.create(model="tiny", prompt="Once upon a time", temperature=0, max_tokens=3, logprobs=0)
    assert zero.choices[0].logprobs is not None and zero.choices[0].logprobs.top_logprobs == [{}, {}, {}]


@pytest.mark.parametrize(("path", "extra", "param", "message"), [
    ("/v1/chat/completions", {"logprobs": True, "top_logprobs": 21}, "top_logprobs", "between 0 and 20"),
    ("/v1/chat/completions", {"logprobs": True, "top_logprobs": -2}, "top_logprobs", "between 0 and 20"),
    ("/v1/chat/completions", {"logprobs": True, "top_logprobs": "1"}, "top_logprobs", "expected an integer"),
    ("/v1/chat/completions", {"top_logprobs": 2}, "top_logprobs", "requires 'logprobs' to be true"),
    ("/v1/chat/completions", {"logprobs": "true"}, "logprobs", "expected a boolean"),
    ("/v1/completions", {"logprobs": 30}, "logprobs", "between 0 and 20"),
    ("/v1/completions", {"logprobs": True}, "logprobs", "expected an integer"),
    ("/v1/completions", {"logprobs": 1.5}, "logprobs", "expected an integer"),
])
def test_openai_bad_logprobs_values_are_400(d: Daemon, path: str, extra: dict[str, Any], param: str,
                                            message: str) -> None:
    body = {"model": "tiny", "messages": MESSAGES, "prompt": "x", "max_tokens": 1, **extra}
    if path.endswith("/completions") and "chat" not in path:
        body.pop("messages")
    else:
        body.pop("prompt")
    status, err = d.request("POST", path, body)
    assert_openai_error(status, err, 400, message, param=param)
