"""/api/generate, /api/chat, /api/embed, /api/embeddings and /api/ps against the REAL daemon,
real runner processes and tiny generated models."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.daemon import Daemon
from tests.helpers import assert_api_error
from tests.infer_helpers import check_embed_beside_chat, create_model, start_serving_daemon, stream_lines

pytestmark = pytest.mark.e2e

FAST = {"num_predict": 8, "seed": 42, "temperature": 0}
# A template that opens a think block when thinking is on: the model's output starts inside it.
THINK_TEMPLATE = ("{{ range .Messages }}{{ .Role }}: {{ .Content }}\n{{ end }}assistant: "
                  "{{ if .Think }}<think>{{ end }}")
TIMINGS = ("total_duration", "load_duration", "prompt_eval_count", "prompt_eval_duration", "eval_count", "eval_duration")


@pytest.fixture(scope="module")
def d(tmp_path_factory: pytest.TempPathFactory, tiny_chat_gguf: Path, tiny_embed_gguf: Path) -> Iterator[Daemon]:
    daemon = start_serving_daemon(tmp_path_factory.mktemp("serve"), tiny_chat_gguf, tiny_embed_gguf, tools=True)
    create_model(daemon, "fim", f'FROM {tiny_chat_gguf}\nTEMPLATE """<PRE> {{{{ .Prompt }}}} <SUF>{{{{ .Suffix }}}} <MID>"""\n',
                 daemon.home)
    create_model(daemon, "thinker", f'FROM {tiny_chat_gguf}\nTEMPLATE """{THINK_TEMPLATE}"""\n', daemon.home)
    yield daemon
    print(daemon.logs())
    daemon.stop()


def post(d: Daemon, path: str, body: Any) -> tuple[int, Any]:
    return d.request("POST", path, body)


def streamed(d: Daemon, path: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    objects = []
    for line in stream_lines(d, path, body):
        assert line.strip(), "blank line in NDJSON stream"
        assert b"\n" not in line and b": " not in line[:20], f"not compact JSON: {line[:80]!r}"
        objects.append(json.loads(line))
    return objects


def check_final(final: dict[str, Any]) -> None:
    assert final["done"] is True and final["done_reason"] in ("stop", "length")
    for key in TIMINGS:
        assert isinstance(final[key], int), key
    assert final["total_duration"] > 0 and final["prompt_eval_count"] > 0 and final["eval_count"] > 0
    assert final["eval_duration"] > 0 and final["prompt_eval_duration"] > 0
    assert final["total_duration"] >= final["eval_duration"]


def test_generate_streams_ndjson_with_measured_final_object(d: Daemon) -> None:
    chunks = streamed(d, "/api/generate", {"model": "tiny", "prompt": "Why is the sky blue?", "options": FAST})
    *parts, final = chunks
    assert parts and all(c["done"] is False and c["model"] == "tiny" and "created_at" in c for c in parts)
    check_final(final)
    assert final["done_reason"] == "length" and final["eval_count"] == 8
    assert final["response"] == ""
    assert isinstance(final["context"], list) and all(isinstance(t, int) for t in final["context"])
    assert len(final["context"]) == final["prompt_eval_count"] + final["eval_count"]
    # Same seed, temperature 0: the non-streamed answer is the joined stream.
    status, one = post(d, "/api/generate", {"model": "tiny", "prompt": "Why is the sky blue?", "options": FAST,
                                            "stream": False})
    assert status == 200 and one["response"] == "".join(c["response"] for c in parts)
    assert one["context"] == final["context"]
    check_final(one)


def test_generate_context_continues_a_conversation(d: Daemon) -> None:
    _, first = post(d, "/api/generate", {"model": "tiny", "prompt": "hello", "options": FAST, "stream": False})
    _, second = post(d, "/api/generate", {"model": "tiny", "prompt": "more", "context": first["context"],
                                          "options": FAST, "stream": False})
    # The new prompt continues the old context token for token (no second BOS); prompt_eval_count is
    # the whole prompt, the cached old context included (as Ollama).
    assert second["context"][: len(first["context"])] == first["context"]
    new_tokens = len(second["context"]) - len(first["context"]) - second["eval_count"]
    assert new_tokens > 0
    assert second["prompt_eval_count"] == len(second["context"]) - second["eval_count"]


def test_generate_raw_and_system_and_template(d: Daemon) -> None:
    for extra in ({"raw": True}, {"system": "You are terse."}, {"template": "Q: {{ .Prompt }}\nA:"}):
        status, body = post(d, "/api/generate", {"model": "tiny", "prompt": "hi", "options": FAST, "stream": False,
                                                 **extra})
        assert status == 200, body
        check_final(body)
    _, raw = post(d, "/api/generate", {"model": "tiny", "prompt": "hi", "raw": True, "options": FAST, "stream": False})
    _, templated = post(d, "/api/generate", {"model": "tiny", "prompt": "hi", "options": FAST, "stream": False})
    assert raw["prompt_eval_count"] < templated["prompt_eval_count"]


def test_chat_stream_and_non_stream(d: Daemon) -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"},
                {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "How are you?"}]
    chunks = streamed(d, "/api/chat", {"model": "tiny", "messages": messages, "options": FAST})
    *parts, final = chunks
    assert all(c["message"]["role"] == "assistant" for c in chunks)
    check_final(final)
    assert final["message"] == {"role": "assistant", "content": ""}
    status, one = post(d, "/api/chat", {"model": "tiny", "messages": messages, "options": FAST, "stream": False})
    assert status == 200
    assert one["message"]["content"] == "".join(c["message"]["content"] for c in parts)
    check_final(one)


def test_format_json_and_schema(d: Daemon) -> None:
    opts = {"num_predict": 48, "seed": 1, "temperature": 0}
    schema = {"type": "object", "properties": {"n": {"type": "integer"}, "ok": {"type": "boolean"}},
              "required": ["n", "ok"]}
    _, body = post(d, "/api/chat", {"model": "tiny", "messages": [{"role": "user", "content": "json"}],
                                    "format": schema, "options": opts, "stream": False})
    assert body["done_reason"] == "stop", body
    jsonschema.validate(json.loads(body["message"]["content"]), schema)
    _, body = post(d, "/api/generate", {"model": "tiny", "prompt": "json", "format": "json",
                                        "options": {"num_predict": 64, "seed": 3, "temperature": 0}, "stream": False})
    if body["done_reason"] == "stop":
        assert isinstance(json.loads(body["response"]), (dict, list))
    else:
        assert body["response"].lstrip().startswith(("{", "["))


def test_chat_tool_calls_are_parsed_into_objects(d: Daemon) -> None:
    tools = [{"type": "function", "function": {
        "name": "get_weather", "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
    # The tiny random model will not choose to call a tool: a grammar makes its output a tool call.
    call_schema = {"type": "object", "properties": {"name": {"const": "get_weather"},
                                                    "arguments": {"type": "object", "properties": {
                                                        "city": {"enum": ["Paris", "Rome"]}},
                                                        "required": ["city"]}},
                   "required": ["name", "arguments"]}
    body = {"model": "tools", "messages": [{"role": "user", "content": "Weather in Paris?"}], "tools": tools,
            "format": call_schema, "options": {"num_predict": 64, "seed": 1, "temperature": 0}}
    for stream in (False, True):
        if stream:
            chunks = streamed(d, "/api/chat", body)
            calls = [c for ch in chunks for c in ch["message"].get("tool_calls", [])]
            content = "".join(ch["message"]["content"] for ch in chunks)
        else:
            status, out = post(d, "/api/chat", {**body, "stream": False})
            assert status == 200, out
            calls, content = out["message"].get("tool_calls", []), out["message"]["content"]
        assert content == ""
        assert len(calls) == 1
        assert calls[0]["function"]["name"] == "get_weather"
        assert calls[0]["function"]["arguments"]["city"] in ("Paris", "Rome")
        assert re.fullmatch(r"call_[a-z0-9]{8}", calls[0]["id"]), calls[0]  # as Ollama's ids
    # A tool result in the history renders and answers.
    history = [{"role": "user", "content": "Weather in Paris?"},
               {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "get_weather",
                                                                                 "arguments": {"city": "Paris"}}}]},
               {"role": "tool", "content": "sunny", "tool_name": "get_weather"}]
    status, out = post(d, "/api/chat", {"model": "tools", "messages": history, "tools": tools, "options": FAST,
                                        "stream": False})
    assert status == 200 and out["done"] is True


def test_a_json_answer_with_a_name_key_stays_content_when_no_such_tool_is_offered(d: Daemon) -> None:
    # A structured answer (format) that merely has a "name" key used to come back as a call to a
    # tool "Alice" that was never offered, and the answer was lost.
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
    person = {"type": "object", "properties": {"name": {"const": "Alice"}, "age": {"const": 25}},
              "required": ["name", "age"]}
    body = {"model": "tools", "messages": [{"role": "user", "content": "Describe Alice."}], "tools": tools,
            "format": person, "options": {"num_predict": 64, "seed": 1, "temperature": 0}}
    status, out = post(d, "/api/chat", {**body, "stream": False})
    assert status == 200, out
    assert "tool_calls" not in out["message"], out
    assert json.loads(out["message"]["content"]) == {"name": "Alice", "age": 25}
    chunks = streamed(d, "/api/chat", body)
    assert not [c for ch in chunks for c in ch["message"].get("tool_calls", [])]
    assert "".join(ch["message"]["content"] for ch in chunks) == out["message"]["content"]


def test_tools_and_think_need_model_support(d: Daemon) -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    status, body = post(d, "/api/chat", {"model": "emb", "messages": [{"role": "user", "content": "x"}]})
    assert_api_error(status, body, 400, "does not support")
    status, body = post(d, "/api/generate", {"model": "tiny", "prompt": "x", "think": True})
    assert_api_error(status, body, 400, "does not support thinking")
    status, body = post(d, "/api/generate", {"model": "tiny", "prompt": "x", "suffix": "y"})
    assert_api_error(status, body, 400, "insert")
    status, caps = post(d, "/api/show", {"model": "tiny"})
    if "tools" not in caps.get("capabilities", []):
        status, body = post(d, "/api/chat", {"model": "tiny", "messages": [{"role": "user", "content": "x"}],
                                             "tools": tools})
        assert_api_error(status, body, 400, "does not support tools")


def test_long_prompt_is_truncated_to_the_context(d: Daemon) -> None:
    long_prompt = " ".join(f"word{i}" for i in range(600))
    _, body = post(d, "/api/generate", {"model": "tiny", "prompt": long_prompt, "stream": False,
                                        "options": {"num_ctx": 128, "num_predict": 4, "num_keep": 5}})
    assert body["done"] is True and 0 < body["prompt_eval_count"] <= 128, body
    history = []
    for i in range(40):
        history += [{"role": "user", "content": f"question {i} " * 8}, {"role": "assistant", "content": f"answer {i} " * 8}]
    messages = [{"role": "system", "content": "You are a test."}, *history, {"role": "user", "content": "last"}]
    _, body = post(d, "/api/chat", {"model": "tiny", "messages": messages, "stream": False,
                                    "options": {"num_ctx": 128, "num_predict": 4}})
    assert body["done"] is True and 0 < body["prompt_eval_count"] <= 128, body


def test_generate_context_is_exactly_what_the_model_saw(d: Daemon, tiny_chat_gguf: Path) -> None:
    # Issue 19: num_ctx 128 and a long prompt reported prompt_eval_count 127 but returned a context
    # of 132 tokens (the daemon cut to 128, the runner cut again to 127 with its own rule).
    from llama_cpp import Llama

    long_prompt = " ".join(f"word{i}" for i in range(600))
    options = {"num_ctx": 128, "num_predict": 4, "num_keep": 5, "temperature": 0}
    _, body = post(d, "/api/generate", {"model": "tiny", "prompt": long_prompt, "stream": False, "options": options})
    assert body["done"] is True, body
    context = body["context"]
    assert len(context) == body["prompt_eval_count"] + body["eval_count"], body
    assert body["prompt_eval_count"] == 127  # one cell of the slot stays free to generate into
    # The prefix is the rendered prompt's tokens with the service's rule: the first num_keep, then the tail.
    _, rendered = post(d, "/api/render", {"model": "tiny", "prompt": long_prompt})
    vocab = Llama(str(tiny_chat_gguf), vocab_only=True, verbose=False)
    full = vocab.tokenize(rendered["prompt"].encode(), add_bos=True, special=True)
    assert len(full) > 128
    assert context[:127] == full[:5] + full[len(full) - 122:]
    # The context continues: sent back with a short prompt, it is accepted and again exact.
    _, again = post(d, "/api/generate", {"model": "tiny", "prompt": "more", "context": context, "stream": False,
                                         "options": options})
    assert len(again["context"]) == again["prompt_eval_count"] + again["eval_count"] <= 127 + 4, again


def test_empty_prompt_loads_and_keep_alive_zero_unloads(d: Daemon) -> None:
    status, body = post(d, "/api/generate", {"model": "tiny", "stream": False})
    assert status == 200 and body["done"] is True and body["done_reason"] == "load" and body["response"] == ""
    _, ps = d.request("GET", "/api/ps")
    entry = next(m for m in ps["models"] if m["name"] == "tiny:latest")
    assert set(entry) >= {"name", "model", "size", "size_vram", "digest", "details", "expires_at", "context_length"}
    assert entry["size"] > 0 and len(entry["digest"]) == 64 and entry["details"]["family"] == "llama"
    status, body = post(d, "/api/chat", {"model": "tiny", "messages": [], "keep_alive": 0})
    assert status == 200 and body["done_reason"] == "unload" and body["message"]["content"] == ""
    _, ps = d.request("GET", "/api/ps")
    assert "tiny:latest" not in [m["name"] for m in ps["models"]]
    # Forever: keep_alive -1 shows a far-future expiry.
    post(d, "/api/generate", {"model": "tiny", "keep_alive": -1, "stream": False})
    _, ps = d.request("GET", "/api/ps")
    entry = next(m for m in ps["models"] if m["name"] == "tiny:latest")
    assert entry["expires_at"] > "2200"
    post(d, "/api/generate", {"model": "tiny", "keep_alive": "5m", "stream": False})


def test_options_needing_another_runner_reload(d: Daemon) -> None:
    post(d, "/api/generate", {"model": "tiny", "options": {"num_ctx": 256}, "stream": False})
    _, ps = d.request("GET", "/api/ps")
    assert next(m for m in ps["models"] if m["name"] == "tiny:latest")["context_length"] == 256
    _, body = post(d, "/api/generate", {"model": "tiny", "prompt": "x", "options": {**FAST, "num_ctx": 512},
                                        "stream": False})
    assert body["load_duration"] > 0
    _, ps = d.request("GET", "/api/ps")
    assert next(m for m in ps["models"] if m["name"] == "tiny:latest")["context_length"] == 512


def test_embed_and_legacy_embeddings(d: Daemon) -> None:
    status, body = post(d, "/api/embed", {"model": "emb", "input": ["hello world", "good morning"]})
    assert status == 200, body
    assert body["model"] == "emb" and len(body["embeddings"]) == 2
    width = len(body["embeddings"][0])
    assert width > 8 and all(len(v) == width for v in body["embeddings"])
    assert all(math.isclose(math.sqrt(sum(x * x for x in v)), 1.0, rel_tol=1e-3) for v in body["embeddings"])
    assert body["prompt_eval_count"] > 0 and body["total_duration"] > 0
    _, single = post(d, "/api/embed", {"model": "emb", "input": "hello world"})
    assert single["embeddings"][0] == pytest.approx(body["embeddings"][0], abs=1e-5)
    _, short = post(d, "/api/embed", {"model": "emb", "input": "hello world", "dimensions": 8})
    assert len(short["embeddings"][0]) == 8
    assert math.isclose(math.sqrt(sum(x * x for x in short["embeddings"][0])), 1.0, rel_tol=1e-3)
    _, empty = post(d, "/api/embed", {"model": "emb", "input": []})
    assert empty["embeddings"] == []
    status, legacy = post(d, "/api/embeddings", {"model": "emb", "prompt": "hello world"})
    assert status == 200 and set(legacy) == {"embedding"} and len(legacy["embedding"]) == width
    _, legacy_empty = post(d, "/api/embeddings", {"model": "emb", "prompt": ""})
    assert legacy_empty == {"embedding": []}
    status, err = post(d, "/api/embed", {"model": "emb", "input": "x", "dimensions": 100000})
    assert_api_error(status, err, 400, "dimensions")
    too_long = " ".join(["hello world"] * 600)  # past the model's 512-token context
    status, body = post(d, "/api/embed", {"model": "emb", "input": too_long})
    assert status == 200 and len(body["embeddings"][0]) == width and body["prompt_eval_count"] <= 512
    status, err = post(d, "/api/embed", {"model": "emb", "input": too_long, "truncate": False})
    assert_api_error(status, err, 400)


@pytest.mark.parametrize(
    "path, body, status, message",
    [
        ("/api/generate", {"model": "nosuch", "prompt": "x"}, 404, "model 'nosuch' not found"),
        ("/api/chat", {"model": "nosuch", "messages": [{"role": "user", "content": "x"}]}, 404,
         "model 'nosuch' not found"),
        ("/api/embed", {"model": "nosuch", "input": "x"}, 404, "model 'nosuch' not found"),
        ("/api/embeddings", {"model": "nosuch", "prompt": "x"}, 404, "not found"),
        ("/api/generate", {"prompt": "x"}, 400, "model is required"),
        ("/api/generate", {"model": "tiny", "prompt": ["x"]}, 400, "prompt"),
        ("/api/generate", {"model": "tiny", "prompt": "x", "options": {"num_ctx": -4}}, 400, "num_ctx"),
        ("/api/generate", {"model": "tiny", "prompt": "x", "options": {"temperature": "hot"}}, 400, "temperature"),
        ("/api/generate", {"model": "tiny", "prompt": "x", "options": "fast"}, 400, "options"),
        ("/api/generate", {"model": "tiny", "prompt": "x", "keep_alive": "later"}, 400, "keep_alive"),
        ("/api/chat", {"model": "tiny", "messages": [{"role": "robot", "content": "x"}]}, 400, "role"),
        ("/api/chat", {"model": "tiny", "messages": {"role": "user"}}, 400, "messages"),
        ("/api/chat", {"model": "tiny", "messages": [], "format": "yaml"}, 400, "format"),
        ("/api/embed", {"model": "emb", "input": 42}, 400, "input"),
        ("/api/generate", {"model": "tiny", "prompt": "x", "images": ["aGk="]}, 400, "image"),
        ("/api/chat", {"model": "tiny", "messages": [{"role": "user", "content": "x", "images": ["aGk="]}]}, 400,
         "image"),
    ],
)
def test_bad_requests(d: Daemon, path: str, body: dict[str, Any], status: int, message: str) -> None:
    got, data = post(d, path, body)
    assert_api_error(got, data, status, message)


def test_malformed_json_body(d: Daemon) -> None:
    import urllib.error
    import urllib.request

    for path in ("/api/generate", "/api/chat", "/api/embed", "/api/embeddings"):
        req = urllib.request.Request(d.base_url + path, data=b'{"model": "tiny",', method="POST",
                                     headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=30)
        assert_api_error(e.value.code, e.value.read(), 400, "invalid JSON")


def test_suffix_fills_in_the_middle(d: Daemon) -> None:
    status, body = post(d, "/api/generate", {"model": "fim", "prompt": "def add(a, b):", "suffix": "    return c",
                                             "options": FAST, "stream": False})
    assert status == 200, body
    check_final(body)
    _, plain = post(d, "/api/generate", {"model": "fim", "prompt": "def add(a, b):", "options": FAST,
                                         "stream": False})
    assert body["prompt_eval_count"] > plain["prompt_eval_count"]  # the suffix is part of the prompt


def test_think_splits_thinking_from_content(d: Daemon) -> None:
    msgs = [{"role": "user", "content": "think about it"}]
    # The template opens <think>; the tiny model never closes it, so everything is thinking.
    chunks = streamed(d, "/api/chat", {"model": "thinker", "messages": msgs, "think": True, "options": FAST})
    thinking = "".join(c["message"].get("thinking", "") for c in chunks)
    assert thinking and all(c["message"]["content"] == "" for c in chunks)
    check_final(chunks[-1])
    _, one = post(d, "/api/generate", {"model": "thinker", "prompt": "x", "think": True, "options": FAST,
                                       "stream": False})
    assert one["thinking"] and one["response"] == ""
    _, off = post(d, "/api/chat", {"model": "thinker", "messages": msgs, "think": False, "options": {**FAST, "temperature": 1},
                                   "stream": False})
    assert off["eval_count"] > 0 and "thinking" not in off["message"], off


def test_parallel_requests_share_one_runner(d: Daemon) -> None:
    import threading

    from tests.infer_helpers import runner_pids

    post(d, "/api/generate", {"model": "tiny", "keep_alive": "5m", "stream": False})
    before = set(runner_pids(d))
    results: list[Any] = []

    def one(i: int) -> None:
        results.append(streamed(d, "/api/generate", {"model": "tiny", "prompt": f"request {i}",
                                                     "options": {"num_predict": 8, "seed": i}}))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(results) == 6
    for chunks in results:
        final = chunks[-1]
        check_final(final)
        assert final["eval_count"] == 8 or final["done_reason"] == "stop"
    assert set(runner_pids(d)) <= before  # no new runner: the loaded one served them all


def test_embed_on_a_loaded_chat_model_runs_beside_a_chat(d: Daemon) -> None:
    # Issue 13: it reloaded the model in embedding mode, waiting for every generation.
    check_embed_beside_chat(d, "tiny", [{"role": "user", "content": "tell me a long story about embeddings"}],
                            num_predict=400)
