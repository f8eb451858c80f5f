"""End to end: the official ``openai`` Python client (sync and async, streaming) against the REAL
daemon (``ollamalike serve`` in a subprocess), real runner processes and the tiny generated models.

One daemon serves the whole module (models are created once through ``/api/create``); each test
uses its own requests. Outputs of a random-weight model are meaningless, so the tests check
shapes, counts, constraints (JSON, schemas, tool calls) and equality with the native API.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import openai
import pytest

from tests.daemon import Daemon, start_daemon
from tests.helpers import assert_openai_error

pytestmark = pytest.mark.e2e

CHAT = "tiny"
TOOLS = "tiny-tools"
EMBED = "tiny-embed"
PLAIN = "tiny-plain"  # a Go template without .Tools: no "tools" capability

# A ChatML template in Ollama's Go syntax that offers tools and renders past calls as
# {"name": ..., "arguments": {...}}: the form the tool-call parser reads back from the output.
TOOLS_TEMPLATE = """{{- if .System }}<|im_start|>system
{{ .System }}<|im_end|>
{{ end }}
{{- if .Tools }}<|im_start|>system
You may call these functions:
{{- range .Tools }}
{"type": "function", "function": {{ .Function }}}
{{- end }}
To call one, answer with {"name": <function name>, "arguments": <arguments object>}<|im_end|>
{{ end }}
{{- range .Messages }}<|im_start|>{{ .Role }}
{{ if .ToolCalls }}{{ range .ToolCalls }}{"name": "{{ .Function.Name }}", "arguments": {{ .Function.Arguments }}}{{ end }}
{{- else }}{{ .Content }}{{ end }}<|im_end|>
{{ end }}<|im_start|>assistant
"""

WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "enum": ["Paris", "Rome", "Oslo"]}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}
TIME_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "Current time in a zone",
        "parameters": {
            "type": "object",
            "properties": {"utc": {"type": "boolean"}},
            "required": ["utc"],
            "additionalProperties": False,
        },
    },
}
USER: Any = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Why is the sky blue?"}]


def _upload(d: Daemon, path: Path) -> str:
    data = path.read_bytes()
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    req = urllib.request.Request(f"{d.base_url}/api/blobs/{digest}", data=data, method="POST")
    with urllib.request.urlopen(req, timeout=60) as resp:
        assert resp.status in (200, 201)
    return digest


def _create(d: Daemon, name: str, gguf: Path, **extra: Any) -> None:
    body = {"model": name, "files": {gguf.name: _upload(d, gguf)}, "stream": False, **extra}
    status, data = d.request("POST", "/api/create", body)
    assert status == 200, data


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, tiny_chat_gguf: Path, tiny_embed_gguf: Path) -> Iterator[Daemon]:
    d = start_daemon(tmp_path_factory.mktemp("openai-e2e"), extra_env={"OLLAMALIKE_NUM_PARALLEL": "2"})
    try:
        _create(d, CHAT, tiny_chat_gguf)
        _create(d, TOOLS, tiny_chat_gguf, template=TOOLS_TEMPLATE)
        _create(d, EMBED, tiny_embed_gguf)
        _create(d, PLAIN, tiny_chat_gguf, template="{{ if .System }}{{ .System }} {{ end }}{{ .Prompt }}")
        yield d
    except BaseException:
        print(d.logs())
        raise
    finally:
        d.stop()


@pytest.fixture(scope="module")
def client(daemon: Daemon) -> openai.OpenAI:
    # No retries: a 5xx must surface in the test, not be retried away.
    return openai.OpenAI(base_url=f"{daemon.base_url}/v1", api_key="ollamalike", max_retries=0, timeout=120)


@pytest.fixture
def aclient(daemon: Daemon) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{daemon.base_url}/v1", api_key="ollamalike", max_retries=0, timeout=120)


GREEDY: dict[str, Any] = {"temperature": 0, "seed": 7}


# --- models ---------------------------------------------------------------------------------------


def test_models_list_and_retrieve(client: Any) -> None:
    listed = {m.id: m for m in client.models.list()}
    assert {f"{CHAT}:latest", f"{TOOLS}:latest", f"{EMBED}:latest"} <= set(listed)
    model = listed[f"{CHAT}:latest"]
    assert model.object == "model" and model.owned_by == "library"
    assert abs(model.created - time.time()) < 3600
    got = client.models.retrieve(CHAT)
    assert got.id == CHAT and got.created == model.created and got.owned_by == "library"
    assert client.models.retrieve(f"{CHAT}:latest").id == f"{CHAT}:latest"
    with pytest.raises(openai.NotFoundError) as info:
        client.models.retrieve("no-such-model")
    assert info.value.status_code == 404 and info.value.code == "model_not_found"


def test_namespaced_model_is_owned_by_its_namespace(client: Any, daemon: Daemon) -> None:
    status, body = daemon.request("POST", "/api/copy", {"source": CHAT, "destination": "alice/tiny-copy:v1"})
    assert status == 200, body
    try:
        got = client.models.retrieve("alice/tiny-copy:v1")
        assert got.id == "alice/tiny-copy:v1" and got.owned_by == "alice"
        assert "alice/tiny-copy:v1" in {m.id for m in client.models.list()}
    finally:
        daemon.request("DELETE", "/api/delete", {"model": "alice/tiny-copy:v1"})
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("alice/tiny-copy:v1")


# --- chat -----------------------------------------------------------------------------------------


def test_chat_completion_matches_native_api(client: Any, daemon: Daemon) -> None:
    resp = client.chat.completions.create(model=CHAT, messages=USER, max_tokens=8, **GREEDY)
    assert resp.id.startswith("chatcmpl-") and resp.object == "chat.completion"
    assert resp.model == CHAT and resp.system_fingerprint and abs(resp.created - time.time()) < 600
    (choice,) = resp.choices
    assert choice.index == 0 and choice.message.role == "assistant"
    assert isinstance(choice.message.content, str) and choice.message.content
    assert choice.finish_reason in ("stop", "length")
    assert resp.usage is not None and resp.usage.prompt_tokens > 5
    assert 0 < resp.usage.completion_tokens <= 8
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens
    if choice.finish_reason == "length":
        assert resp.usage.completion_tokens == 8
    # The same request through the native API: one inference path, the same greedy answer and counts.
    status, native = daemon.request("POST", "/api/chat", {
        "model": CHAT, "messages": USER, "stream": False,
        "options": {"num_predict": 8, "temperature": 0, "seed": 7},
    })
    assert status == 200, native
    assert native["message"]["content"] == choice.message.content
    assert native["eval_count"] == resp.usage.completion_tokens
    # prompt_eval_count counts the whole prompt, cached or not (as Ollama).
    assert native["prompt_eval_count"] == resp.usage.prompt_tokens


@pytest.mark.parametrize("endpoint", ["chat", "completions"])
def test_repeated_request_reports_the_whole_prompt_and_the_cached_part(client: Any, daemon: Daemon,
                                                                       endpoint: str) -> None:
    def ask() -> Any:
        if endpoint == "chat":
            msgs = [{"role": "user", "content": "count the cached tokens of this prompt"}]
            return client.chat.completions.create(model=CHAT, messages=msgs, max_tokens=3, **GREEDY)
        return client.completions.create(model=CHAT, prompt="count the cached tokens, completions", max_tokens=3,
                                         **GREEDY)

    first, second = ask(), ask()
    assert first.usage.prompt_tokens == second.usage.prompt_tokens > 3
    assert first.usage.prompt_tokens_details is not None and second.usage.prompt_tokens_details is not None
    # The first time only a shared beginning (BOS, the template's start) can have been cached.
    assert first.usage.prompt_tokens_details.cached_tokens < first.usage.prompt_tokens - 3
    # Everything but the last token (evaluated again for its logits) came from the prefix cache.
    assert second.usage.prompt_tokens_details.cached_tokens == second.usage.prompt_tokens - 1
    if endpoint == "completions":
        # The native API says the same whole-prompt count, twice.
        body = {"model": CHAT, "prompt": "count the cached tokens, native", "stream": False,
                "options": {"num_predict": 2, "temperature": 0}}
        counts = []
        for _ in range(2):
            status, native = daemon.request("POST", "/api/generate", body)
            assert status == 200, native
            assert "cached_tokens" not in native
            counts.append(native["prompt_eval_count"])
        assert counts[0] == counts[1] > 3


def test_chat_stop_sequence_and_content_parts(client: Any) -> None:
    base = client.chat.completions.create(model=CHAT, messages=USER, max_tokens=12, **GREEDY)
    text = base.choices[0].message.content or ""
    assert len(text) > 4
    stop = text[2:4]
    cut = client.chat.completions.create(model=CHAT, messages=USER, max_tokens=12, stop=[stop], **GREEDY)
    assert cut.choices[0].finish_reason == "stop"
    assert stop not in (cut.choices[0].message.content or "")
    assert text.startswith(cut.choices[0].message.content or "")
    # Text content parts are joined into one message: same prompt, same answer.
    parts = [{"role": "system", "content": [{"type": "text", "text": "You are terse."}]},
             {"role": "user", "content": [{"type": "text", "text": "Why is the sky blue?"}]}]
    same = client.chat.completions.create(model=CHAT, messages=parts, max_tokens=12, **GREEDY)
    assert same.choices[0].message.content == text


async def test_async_streaming_chat_with_usage(aclient: Any, client: Any) -> None:
    stream = await aclient.chat.completions.create(
        model=CHAT, messages=USER, max_tokens=10, stream=True, stream_options={"include_usage": True}, **GREEDY,
    )
    chunks = [chunk async for chunk in stream]
    assert all(c.object == "chat.completion.chunk" and c.id == chunks[0].id for c in chunks)
    assert chunks[0].id.startswith("chatcmpl-")
    assert chunks[0].choices[0].delta.role == "assistant"
    usage_chunk = chunks[-1]
    assert usage_chunk.choices == [] and usage_chunk.usage is not None
    finals = [c for c in chunks[:-1] if c.choices[0].finish_reason is not None]
    assert len(finals) == 1 and finals[0] is chunks[-2]
    assert finals[0].choices[0].finish_reason in ("stop", "length")
    text = "".join(c.choices[0].delta.content or "" for c in chunks[:-1])
    assert 0 < usage_chunk.usage.completion_tokens <= 10
    # Streamed and non-streamed answers are the same greedy text.
    whole = client.chat.completions.create(model=CHAT, messages=USER, max_tokens=10, **GREEDY)
    assert whole.choices[0].message.content == text
    assert whole.usage is not None and whole.usage.completion_tokens == usage_chunk.usage.completion_tokens


def test_abandoned_streams_free_their_slots(client: Any) -> None:
    # The daemon has 2 parallel slots: closing streams mid-answer must not wedge it (the route-level
    # test checks deterministically that a disconnect closes the inference stream).
    for _ in range(3):
        stream = client.chat.completions.create(model=CHAT, messages=USER, max_tokens=100000, stream=True)
        first = next(iter(stream))
        assert first.choices[0].delta.role == "assistant"
        stream.close()
    quick = openai.OpenAI(base_url=client.base_url, api_key="x", max_retries=0, timeout=60)
    resp = quick.chat.completions.create(model=CHAT, messages=USER, max_tokens=3)
    assert resp.choices[0].finish_reason in ("stop", "length")


def test_sync_stream_without_usage(client: Any) -> None:
    with client.chat.completions.create(model=CHAT, messages=USER, max_tokens=4, stream=True) as stream:
        chunks = list(stream)
    assert chunks and all(c.usage is None for c in chunks)
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")


def test_json_mode_gives_parseable_json(client: Any) -> None:
    resp = client.chat.completions.create(
        model=CHAT, messages=[{"role": "user", "content": "Answer in JSON."}],
        response_format={"type": "json_object"}, max_tokens=300, **GREEDY,
    )
    assert resp.choices[0].finish_reason == "stop", resp.choices[0].message.content
    assert isinstance(json.loads(resp.choices[0].message.content or ""), dict)


def test_json_schema_output_validates(client: Any) -> None:
    schema = {
        "type": "object",
        "properties": {
            "answer": {"type": "string", "enum": ["yes", "no"]},
            "sure": {"type": "boolean"},
            "count": {"type": "integer"},
            "color": {"type": "string", "enum": ["red", "green", "blue"]},
        },
        "required": ["answer", "sure", "count", "color"],
        "additionalProperties": False,
    }
    resp = client.chat.completions.create(
        model=CHAT, messages=[{"role": "user", "content": "Is the sky blue?"}], max_tokens=200,
        response_format={"type": "json_schema", "json_schema": {"name": "verdict", "schema": schema, "strict": True}},
        **GREEDY,
    )
    assert resp.choices[0].finish_reason == "stop"
    jsonschema.validate(json.loads(resp.choices[0].message.content or ""), schema)


# --- tools ----------------------------------------------------------------------------------------


def _check_call(call: Any, name: str | None = None) -> dict[str, Any]:
    assert call.id.startswith("call_") and call.type == "function"
    assert call.function.name in ({name} if name else {"get_weather", "get_time"})
    assert isinstance(call.function.arguments, str)
    args = json.loads(call.function.arguments)
    tool = WEATHER_TOOL if call.function.name == "get_weather" else TIME_TOOL
    jsonschema.validate(args, tool["function"]["parameters"])
    return args  # type: ignore[no-any-return]


def test_tool_choice_required_gives_tool_calls(client: Any) -> None:
    resp = client.chat.completions.create(
        model=TOOLS, messages=[{"role": "user", "content": "Weather in Paris?"}], max_tokens=100,
        tools=[WEATHER_TOOL, TIME_TOOL], tool_choice="required", **GREEDY,
    )
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls and len(choice.message.tool_calls) == 1
    _check_call(choice.message.tool_calls[0])


def test_named_tool_choice_and_tool_result_round_trip(client: Any) -> None:
    messages: list[Any] = [{"role": "user", "content": "What time is it?"}]
    resp = client.chat.completions.create(
        model=TOOLS, messages=messages, max_tokens=100, tools=[WEATHER_TOOL, TIME_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_time"}}, **GREEDY,
    )
    assert resp.choices[0].finish_reason == "tool_calls"
    (call,) = resp.choices[0].message.tool_calls or []
    _check_call(call, "get_time")
    # Send the call and its result back, as an agent loop does: the model then answers in text.
    messages.append(resp.choices[0].message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": call.id, "content": "12:00"})
    answer = client.chat.completions.create(
        model=TOOLS, messages=messages, max_tokens=6, tools=[WEATHER_TOOL, TIME_TOOL], tool_choice="none", **GREEDY,
    )
    assert answer.choices[0].finish_reason in ("stop", "length")
    assert not answer.choices[0].message.tool_calls


async def test_streamed_tool_calls(aclient: Any) -> None:
    stream = await aclient.chat.completions.create(
        model=TOOLS, messages=[{"role": "user", "content": "Weather in Oslo?"}], max_tokens=100,
        tools=[WEATHER_TOOL], tool_choice="required", stream=True, **GREEDY,
    )
    chunks = [c async for c in stream]
    calls = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
    assert len(calls) == 1 and calls[0].index == 0
    _check_call(calls[0], "get_weather")
    # The id is the one the native API gives the call (Ollama's "call_" and 8 characters).
    assert re.fullmatch(r"call_[a-z0-9]{8}", calls[0].id or "")
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_a_json_answer_with_a_name_key_is_content_not_a_call(client: Any) -> None:
    # With tools offered, a structured answer that has a "name" key is not a call to a tool
    # "Alice" (none was offered): it is the answer.
    person = {"type": "object", "properties": {"name": {"const": "Alice"}, "age": {"const": 25}},
              "required": ["name", "age"], "additionalProperties": False}
    resp = client.chat.completions.create(
        model=TOOLS, messages=[{"role": "user", "content": "Describe Alice."}], max_tokens=64, tools=[WEATHER_TOOL],
        response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": person}}, **GREEDY,
    )
    choice = resp.choices[0]
    assert not choice.message.tool_calls and choice.finish_reason == "stop"
    assert json.loads(choice.message.content or "") == {"name": "Alice", "age": 25}


# --- completions and embeddings -------------------------------------------------------------------


def test_completions(client: Any, daemon: Daemon) -> None:
    resp = client.completions.create(model=CHAT, prompt="Once upon a time", max_tokens=6, **GREEDY)
    assert resp.id.startswith("cmpl-") and resp.object == "text_completion" and resp.model == CHAT
    (choice,) = resp.choices
    assert choice.text and choice.finish_reason in ("stop", "length")
    assert resp.usage is not None and 0 < resp.usage.completion_tokens <= 6
    stream = client.completions.create(model=CHAT, prompt="Once upon a time", max_tokens=6, stream=True,
                                       stream_options={"include_usage": True}, **GREEDY)
    chunks = list(stream)
    assert "".join(c.choices[0].text for c in chunks if c.choices) == choice.text
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == resp.usage.completion_tokens
    status, native = daemon.request("POST", "/api/generate", {
        "model": CHAT, "prompt": "Once upon a time", "stream": False,
        "options": {"num_predict": 6, "temperature": 0, "seed": 7},
    })
    assert status == 200 and native["response"] == choice.text
    with pytest.raises(openai.BadRequestError, match="echo"):
        client.completions.create(model=CHAT, prompt="x", echo=True)
    with pytest.raises(openai.BadRequestError, match="insert"):
        client.completions.create(model=CHAT, prompt="def f(", suffix="return 1", max_tokens=4)


def test_embeddings_float_and_base64_agree(client: Any, daemon: Daemon) -> None:
    texts = ["hello world", "the cat is on the tree"]
    floats = client.embeddings.create(model=EMBED, input=texts, encoding_format="float")
    assert [d.index for d in floats.data] == [0, 1] and floats.model == EMBED
    assert floats.usage.prompt_tokens > 0 and floats.usage.total_tokens == floats.usage.prompt_tokens
    # The client asks for base64 by default and decodes little-endian float32 itself.
    b64 = client.embeddings.create(model=EMBED, input=texts)
    for a, b in zip(floats.data, b64.data, strict=True):
        assert len(a.embedding) == len(b.embedding) > 0
        assert a.embedding == pytest.approx(b.embedding, rel=1e-6, abs=1e-7)
    assert floats.data[0].embedding != floats.data[1].embedding
    single = client.embeddings.create(model=EMBED, input="hello world", encoding_format="float")
    assert single.data[0].embedding == pytest.approx(floats.data[0].embedding, abs=1e-5)
    status, native = daemon.request("POST", "/api/embed", {"model": EMBED, "input": texts})
    assert status == 200
    assert native["embeddings"][1] == pytest.approx(floats.data[1].embedding, abs=1e-6)
    short = client.embeddings.create(model=EMBED, input="hello world", dimensions=4, encoding_format="float")
    assert len(short.data[0].embedding) == 4
    assert sum(v * v for v in short.data[0].embedding) == pytest.approx(1.0, abs=1e-5)
    # Over-long input: truncated to the context by default, refused with extra_body truncate=false.
    long_text = "hello world " * 2000
    cut = client.embeddings.create(model=EMBED, input=long_text, encoding_format="float")
    assert cut.usage.prompt_tokens > 0 and len(cut.data) == 1
    with pytest.raises(openai.BadRequestError, match="context length"):
        client.embeddings.create(model=EMBED, input=long_text, extra_body={"truncate": False})


# --- request-level context size and keep_alive (extra_body) -----------------------------------------


def _ps(daemon: Daemon) -> dict[str, dict[str, Any]]:
    status, data = daemon.request("GET", "/api/ps")
    assert status == 200
    return {m["name"]: m for m in data["models"]}


def test_num_ctx_and_keep_alive_via_extra_body(client: Any, daemon: Daemon) -> None:
    client.chat.completions.create(model=CHAT, messages=USER, max_tokens=2, extra_body={"options": {"num_ctx": 384}})
    assert _ps(daemon)[f"{CHAT}:latest"]["context_length"] == 384
    client.chat.completions.create(model=CHAT, messages=USER, max_tokens=2, extra_body={"num_ctx": 320})
    assert _ps(daemon)[f"{CHAT}:latest"]["context_length"] == 320
    client.completions.create(model=CHAT, prompt="hi", max_tokens=2, extra_body={"keep_alive": 0})
    deadline = time.monotonic() + 60
    while f"{CHAT}:latest" in _ps(daemon):
        assert time.monotonic() < deadline, "keep_alive 0 did not unload the model"
        time.sleep(0.05)


# --- errors ---------------------------------------------------------------------------------------


def test_error_cases(client: Any, daemon: Daemon) -> None:
    with pytest.raises(openai.NotFoundError) as nf:
        client.chat.completions.create(model="missing-model", messages=USER)
    err = nf.value
    assert err.status_code == 404 and err.code == "model_not_found" and err.type == "invalid_request_error"
    assert isinstance(err.body, dict) and "missing-model" in err.body["message"] and "param" in err.body
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="missing-model", input="x")
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="missing-model", messages=USER, stream=True)
    bad: list[tuple[dict[str, Any], str]] = [
        ({"n": 2}, "n"),
        ({"temperature": "warm"}, "temperature"),
        ({"extra_body": {"options": {"num_ctx": "large"}}}, "num_ctx"),
        ({"extra_body": {"num_ctx": [1]}}, "num_ctx"),
        ({"extra_body": {"keep_alive": "someday"}}, "keep_alive"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"response_format": {"type": "yaml"}}, "response_format"),
    ]
    for kwargs, text in bad:
        with pytest.raises(openai.BadRequestError) as info:
            client.chat.completions.create(model=CHAT, messages=USER, **kwargs)
        assert info.value.status_code == 400 and info.value.type == "invalid_request_error"
        assert text in info.value.message, (kwargs, info.value.message)
        if text in ("n", "temperature", "tool_choice", "response_format"):
            assert info.value.param == text  # the openai client exposes the field at fault
    image = [{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
    ]}]
    with pytest.raises(openai.BadRequestError, match="image"):
        client.chat.completions.create(model=CHAT, messages=image)
    with pytest.raises(openai.BadRequestError, match="does not support tools"):
        client.chat.completions.create(model=PLAIN, messages=USER, tools=[WEATHER_TOOL])
    # Raw HTTP: the exact error object.
    status, body = daemon.request("POST", "/v1/chat/completions", {"model": CHAT, "messages": "hi"})
    assert_openai_error(status, body, 400, "messages")
    assert body["error"]["type"] == "invalid_request_error" and body["error"]["code"] is None
    status, body = daemon.request("POST", "/v1/embeddings", {"model": "nope", "input": "x"})
    assert_openai_error(status, body, 404, "not found")
    assert body["error"]["code"] == "model_not_found"


async def test_full_queue_is_503(tmp_path_factory: pytest.TempPathFactory, tiny_chat_gguf: Path) -> None:
    """One slot, a queue of one: with a request running and one waiting, the next gets OpenAI's 503."""
    d = start_daemon(tmp_path_factory.mktemp("openai-busy"),
                     extra_env={"OLLAMALIKE_NUM_PARALLEL": "1", "OLLAMALIKE_MAX_QUEUE": "1"})
    try:
        _create(d, CHAT, tiny_chat_gguf)
        aclient: Any = openai.AsyncOpenAI(base_url=f"{d.base_url}/v1", api_key="x", max_retries=0, timeout=120)
        same_ctx = {"num_ctx": 8192}
        # A schema whose only valid answer is thousands of tokens long: the slot stays busy until closed.
        long_answer: Any = {"type": "json_schema", "json_schema": {
            "name": "long", "schema": {"type": "string", "enum": ["hello world " * 1500]}}}
        running = await aclient.chat.completions.create(
            model=CHAT, messages=USER, stream=True, response_format=long_answer, extra_body=same_ctx)
        assert (await running.__anext__()).choices[0].delta.role == "assistant"

        async def short() -> Any:
            return await aclient.chat.completions.create(model=CHAT, messages=USER, max_tokens=2, extra_body=same_ctx)

        tasks = [asyncio.create_task(short()), asyncio.create_task(short())]
        done, pending = await asyncio.wait(tasks, timeout=60, return_when=asyncio.FIRST_COMPLETED)
        assert len(done) == 1 and len(pending) == 1
        refused = done.pop().exception()
        assert isinstance(refused, openai.InternalServerError) and refused.status_code == 503, refused
        assert refused.type == "server_error" and "busy" in refused.message
        await running.close()
        # Closing the running stream frees the slot for the queued request.
        answer = await asyncio.wait_for(pending.pop(), timeout=60)
        assert answer.choices[0].finish_reason in ("stop", "length")
        await aclient.close()
    finally:
        d.stop()
