"""Remote engines, the parts without a network: the Modelfile ENGINE line (parse, write-back, bad
syntax), the engine layer, the SSE reader and tool-call joining, options onto sampling fields, and
Ollama messages as OpenAI's."""

from __future__ import annotations

import pytest

from ollamalike import modelfile
from ollamalike.errors import BadRequest, EngineError
from ollamalike.options import Options
from ollamalike.remote.engine import Engine
from ollamalike.remote.messages import openai_messages
from ollamalike.remote.sampling import done_reason, response_format, sampling_fields
from ollamalike.remote.sse import ToolCalls, data_lines, delta_of


def test_engine_line_parses_and_writes_back() -> None:
    text = ("# served by vLLM\nENGINE openai http://gpu:8000/v1/ model=Qwen/Qwen2.5-7B api_key_env=VLLM_KEY "
            "num_parallel=16\nSYSTEM be brief\nPARAMETER temperature 0.2\n")
    mf = modelfile.parse(text)
    assert mf.from_ == ""
    assert mf.engine == Engine("openai", "http://gpu:8000/v1", "Qwen/Qwen2.5-7B", "VLLM_KEY", 16)
    assert mf.engine.host == "gpu:8000"
    out = modelfile.format(mf)
    assert out.splitlines()[0] == "ENGINE openai http://gpu:8000/v1 model=Qwen/Qwen2.5-7B api_key_env=VLLM_KEY num_parallel=16"
    assert modelfile.parse(out) == mf
    # Options in any order and case give the same engine, so the same layer bytes.
    again = modelfile.parse("engine OPENAI http://gpu:8000/v1 num_parallel=16 API_KEY_ENV=VLLM_KEY model=Qwen/Qwen2.5-7B")
    assert again.engine == mf.engine and again.engine is not None
    assert again.engine.to_layer() == mf.engine.to_layer()
    assert Engine.from_layer(mf.engine.to_layer()) == mf.engine


@pytest.mark.parametrize("text, expected", [
    ("ENGINE openai", "ENGINE needs the engine API, its URL and model="),
    ("ENGINE openai http://h:1/v1", "model=<the engine's model id> is required"),
    ("ENGINE grpc http://h:1/v1 model=m", "unknown engine API 'grpc'"),
    ("ENGINE openai ftp://h/v1 model=m", "must be http:// or https://"),
    ("ENGINE openai http://user:pw@h:1/v1 model=m", "must not hold credentials"),
    ("ENGINE openai http://h:1/v1?x=1 model=m", "must not have a query"),
    ("ENGINE openai http://h:99999/v1 model=m", "invalid port"),
    ("ENGINE openai http://h:1/v1 model=m key=abc", "unknown option 'key=abc'"),
    ("ENGINE openai http://h:1/v1 model=m model=n", "model= is given twice"),
    ("ENGINE openai http://h:1/v1 model=", "model= needs a value"),
    ("ENGINE openai http://h:1/v1 model=m api_key_env=1BAD", "must be an environment variable name"),
    ("ENGINE openai http://h:1/v1 model=m num_parallel=0", "num_parallel must be a positive integer"),
    ("ENGINE openai http://h:1/v1 model=m num_parallel=x", "num_parallel must be a positive integer"),
    ("ENGINE openai http://h:1/v1 model=m\nENGINE openai http://h:2/v1 model=m", "line 2: more than one ENGINE"),
    ("FROM qwen\nENGINE openai http://h:1/v1 model=m", "line 2: a Modelfile has FROM or ENGINE, not both"),
    ("ENGINE openai http://h:1/v1 model=m\nADAPTER ./a.gguf", "ADAPTER cannot be used with ENGINE"),
    ("ENGINEX openai http://h:1/v1 model=m", 'unknown instruction "ENGINEX'),
])
def test_bad_engine_lines_name_the_line(text: str, expected: str) -> None:
    with pytest.raises(BadRequest) as e:
        modelfile.parse(text)
    assert expected in e.value.message
    assert e.value.message.startswith("Modelfile line ")


@pytest.mark.parametrize("layer", [b"not json", b"[]", b'{"kind":"openai","url":"http://h/v1"}',
                                   b'{"kind":"openai","url":"file:///x","model":"m"}'])
def test_a_bad_engine_layer_is_a_clear_error(layer: bytes) -> None:
    with pytest.raises(BadRequest, match="engine"):
        Engine.from_layer(layer)


async def _lines(*chunks: bytes):  # type: ignore[no-untyped-def]
    for chunk in chunks:
        yield chunk


async def test_sse_reader_joins_events_and_stops_at_done() -> None:
    stream = _lines(b": ping\n", b"event: message\n", b'data: {"a": 1}\n', b"\n",
                    b'data: {"b":\n', b"data: 2}\n", b"\n", b"data: [DONE]\n", b"\n", b'data: {"late": 1}\n\n')
    got = [obj async for obj in data_lines(stream, "engine X")]
    assert got == [{"a": 1}, {"b": 2}]


async def test_sse_error_event_and_garbage_are_engine_errors() -> None:
    with pytest.raises(EngineError, match="engine X failed mid-stream: out of memory"):
        [obj async for obj in data_lines(_lines(b'data: {"error": {"message": "out of memory"}}\n\n'), "engine X")]
    with pytest.raises(EngineError, match="not JSON"):
        [obj async for obj in data_lines(_lines(b"data: {nope\n\n"), "engine X")]


def test_delta_reads_chat_completion_and_usage_shapes() -> None:
    chat = delta_of({"choices": [{"delta": {"content": "hi", "reasoning_content": "hmm"}, "finish_reason": None}]})
    assert (chat.content, chat.thinking, chat.finish_reason) == ("hi", "hmm", None)
    text = delta_of({"choices": [{"text": "yo", "finish_reason": "length"}]})
    assert (text.content, text.finish_reason) == ("yo", "length")
    usage = delta_of({"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 3,
                                               "prompt_tokens_details": {"cached_tokens": 2}}}).usage
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens) == (5, 3, 2)


def test_tool_call_fragments_join_per_index() -> None:
    calls = ToolCalls("engine X")
    calls.feed(delta_of({"choices": [{"delta": {"tool_calls": [
        {"index": 0, "id": "call_a", "function": {"name": "get_weather", "arguments": '{"ci'}}]}}]}).tool_calls)
    calls.feed(delta_of({"choices": [{"delta": {"tool_calls": [
        {"index": 0, "function": {"arguments": 'ty": "Paris"}'}},
        {"index": 1, "id": "call_b", "function": {"name": "now", "arguments": ""}}]}}]}).tool_calls)
    assert calls.calls() == [
        {"id": "call_a", "function": {"index": 0, "name": "get_weather", "arguments": {"city": "Paris"}}},
        {"id": "call_b", "function": {"index": 1, "name": "now", "arguments": {}}},
    ]
    bad = ToolCalls("engine X")
    bad.feed(delta_of({"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"name": "f",
                                                                                         "arguments": "{x"}}]}}]}).tool_calls)
    with pytest.raises(EngineError, match="not JSON"):
        bad.calls()


def test_only_set_options_reach_the_engine() -> None:
    assert sampling_fields(Options()) == {}
    opts = Options.from_request({"temperature": 0.5, "num_predict": 7, "stop": ["\n"], "top_k": 3,
                                 "repeat_penalty": 1.1, "num_ctx": 4096, "seed": 1})
    assert sampling_fields(opts) == {"temperature": 0.5, "seed": 1, "top_k": 3, "max_tokens": 7,
                                     "repeat_penalty": 1.1, "repetition_penalty": 1.1, "stop": ["\n"]}
    assert "max_tokens" not in sampling_fields(Options.from_request({"num_predict": -1}))
    assert response_format("json") == {"type": "json_object"}
    assert response_format({"type": "object"})["type"] == "json_schema"  # type: ignore[index]
    assert response_format(None) is None
    assert [done_reason(r) for r in ("stop", "length", "tool_calls", None)] == ["stop", "length", "stop", "stop"]


def test_messages_become_openai_messages() -> None:
    history = [{"role": "user", "content": "earlier"}, {"role": "assistant", "content": "ok"}]
    messages = [
        {"role": "user", "content": "weather?", "images": ["aGk="]},
        {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "get_weather",
                                                                          "arguments": {"city": "Paris"}}}]},
        {"role": "tool", "content": "sunny", "tool_name": "get_weather"},
    ]
    out = openai_messages("be brief", history, messages)
    assert out[0] == {"role": "system", "content": "be brief"}
    assert out[1:3] == history
    assert out[3]["content"][1] == {"type": "image_url", "image_url": {"url": "data:image/png;base64,aGk="}}  # type: ignore[index,call-overload]
    call = out[4]["tool_calls"][0]  # type: ignore[index,call-overload]
    assert call["type"] == "function" and call["function"] == {"name": "get_weather", "arguments": '{"city": "Paris"}'}
    assert out[5] == {"role": "tool", "content": "sunny", "tool_call_id": call["id"], "name": "get_weather"}
    # A request's own system message wins over the model's SYSTEM.
    assert openai_messages("model's", [], [{"role": "system", "content": "mine"}]) == [{"role": "system", "content": "mine"}]


def test_engine_timeouts_come_from_the_environment() -> None:
    from ollamalike.config import load_config

    assert (load_config({}).engine_connect_timeout, load_config({}).engine_read_timeout) == (10.0, 300.0)
    config = load_config({"OLLAMALIKE_ENGINE_CONNECT_TIMEOUT": "3", "OLLAMA_ENGINE_READ_TIMEOUT": "1m30s"})
    assert (config.engine_connect_timeout, config.engine_read_timeout) == (3.0, 90.0)
    for bad in ("0", "-1", "soon"):
        with pytest.raises(BadRequest, match="OLLAMALIKE_ENGINE_READ_TIMEOUT must be a positive duration"):
            load_config({"OLLAMALIKE_ENGINE_READ_TIMEOUT": bad})


def test_the_engine_key_is_read_from_the_environment_when_used(monkeypatch: pytest.MonkeyPatch) -> None:
    from ollamalike.config import env_secret

    monkeypatch.delenv("REMOTE_UNIT_KEY", raising=False)
    assert env_secret("REMOTE_UNIT_KEY") is None
    monkeypatch.setenv("REMOTE_UNIT_KEY", "")
    assert env_secret("REMOTE_UNIT_KEY") is None
    monkeypatch.setenv("REMOTE_UNIT_KEY", "k-123")
    assert env_secret("REMOTE_UNIT_KEY") == "k-123"


def test_a_manifest_has_weights_or_one_engine_layer() -> None:
    from ollamalike.store.manifest import MEDIA_ENGINE, MEDIA_MODEL, validate_manifest

    def manifest(*media: str) -> dict[str, object]:
        config = {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": "sha256:" + "0" * 64, "size": 1}
        layers = [{"mediaType": m, "digest": "sha256:" + str(i) * 64, "size": 1} for i, m in enumerate(media)]
        return {"schemaVersion": 2, "config": config, "layers": layers}

    validate_manifest(manifest(MEDIA_ENGINE))
    validate_manifest(manifest(MEDIA_MODEL))
    with pytest.raises(BadRequest, match="not both"):
        validate_manifest(manifest(MEDIA_MODEL, MEDIA_ENGINE))
    with pytest.raises(BadRequest, match="not both"):
        validate_manifest(manifest(MEDIA_ENGINE, MEDIA_ENGINE))
