"""Remote engines end to end, all on 127.0.0.1: a front daemon whose models are ENGINE lines, served by

- another ollamalike daemon (the real-model daemon: Qwen, tool calls, embeddings, TEMPLATE rendering);
- llama-cpp-python's own server (``python -m llama_cpp.server``) with an API key, killed mid-stream
  and started again;
- ``StubEngine`` (aiohttp) for what needs exact timing: a stall past the read timeout, Retry-After,
  a dropped connection, in-flight counting.

The clients are the official ``ollama`` and ``openai`` packages.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import ollama
import openai
import pytest

from tests.daemon import Daemon, free_port, start_daemon
from tests.helpers import assert_api_error, assert_openai_error
from tests.realmodels import QWEN
from tests.remote_engines import LlamaServer, StubEngine

pytestmark = pytest.mark.timeout(900)

ENGINE_KEY = "engine-secret-3f9a"
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
GREEDY = {"temperature": 0, "seed": 1}
CHATML = ('{{- if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}'
          '{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}'
          '<|im_start|>assistant\n')


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory, qwen_gguf: Path) -> Iterator[LlamaServer]:
    server = LlamaServer(qwen_gguf, "qwen-lcpp", api_key=ENGINE_KEY,
                         log_path=tmp_path_factory.mktemp("lcpp") / "server.log").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def stub() -> Iterator[StubEngine]:
    engine = StubEngine().start()
    yield engine
    engine.stop()


@pytest.fixture(scope="module")
def front(tmp_path_factory: pytest.TempPathFactory, real_daemon: Daemon) -> Iterator[Daemon]:
    """The daemon clients talk to; its remote models' ENGINE lines point at the engines above."""
    daemon = start_daemon(tmp_path_factory.mktemp("front"), {"LCPP_KEY": ENGINE_KEY, "WRONG_KEY": "not-the-key"})
    yield daemon
    print(f"--- front daemon log ---\n{daemon.logs()}")
    daemon.stop()


@pytest.fixture(scope="module")
def strict_front(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """A front daemon with short engine timeouts (2 s), for the stub engine's stalls."""
    daemon = start_daemon(tmp_path_factory.mktemp("strict"), {"OLLAMALIKE_ENGINE_READ_TIMEOUT": "2s",
                                                              "OLLAMALIKE_ENGINE_CONNECT_TIMEOUT": "2s"})
    yield daemon
    print(f"--- strict front daemon log ---\n{daemon.logs()}")
    daemon.stop()


def create(daemon: Daemon, name: str, modelfile: str) -> tuple[int, object]:
    return daemon.request("POST", "/api/create", {"model": name, "modelfile": modelfile, "stream": False})


def create_ok(daemon: Daemon, name: str, modelfile: str) -> None:
    status, body = create(daemon, name, modelfile)
    assert status == 200, body


# -- another ollamalike as the engine --------------------------------------------------------------
def test_chat_generate_and_streaming_through_another_ollamalike(front: Daemon, real_daemon: Daemon) -> None:
    create_ok(front, "far-qwen", f"ENGINE openai {real_daemon.base_url}/v1 model={QWEN}\nSYSTEM Answer in one word.\n")
    client = ollama.Client(host=front.base_url)
    msgs = [{"role": "user", "content": "What is the capital of France?"}]
    reply = client.chat(model="far-qwen", messages=msgs, options={**GREEDY, "num_predict": 16})
    # The same request straight to the engine: the front adds the Modelfile's SYSTEM, the engine's
    # chat template renders it, and the counts are the engine's own.
    direct = ollama.Client(host=real_daemon.base_url).chat(
        model=QWEN, messages=[{"role": "system", "content": "Answer in one word."}, *msgs],
        options={**GREEDY, "num_predict": 16})
    assert "Paris" in reply.message.content
    assert reply.message.content == direct.message.content
    assert reply.prompt_eval_count == direct.prompt_eval_count and reply.eval_count == direct.eval_count
    assert reply.done_reason == "stop" and reply.eval_duration > 0 and reply.total_duration > 0

    chunks = list(client.chat(model="far-qwen", messages=msgs, stream=True, options={**GREEDY, "num_predict": 16}))
    assert chunks[-1].done and not any(c.done for c in chunks[:-1])
    assert "".join(c.message.content for c in chunks) == direct.message.content
    assert chunks[-1].eval_count == direct.eval_count

    # Generate: the prompt goes as a user message; streamed piece by piece, cut at num_predict.
    pieces = list(client.generate(model="far-qwen", prompt="Count from 1 to 50, comma separated.", stream=True,
                                  system="You count.", options={**GREEDY, "num_predict": 8}))
    assert len(pieces) > 4 and pieces[-1].done and pieces[-1].done_reason == "length"
    assert pieces[-1].eval_count == 8 and "1" in "".join(p.response for p in pieces)

    ps = front.request("GET", "/api/ps")[1]
    entry = next(m for m in ps["models"] if m["name"] == "far-qwen:latest")  # type: ignore[index]
    assert entry["processor"] == f"127.0.0.1:{real_daemon.port}" and entry["size_vram"] == 0
    out = front.cli("ps")
    assert f"127.0.0.1:{real_daemon.port}" in out.stdout, out.stdout


def test_tools_and_the_openai_client_through_a_remote_model(front: Daemon, real_daemon: Daemon) -> None:
    create_ok(front, "far-tools", f"ENGINE openai {real_daemon.base_url}/v1 model={QWEN}\n")
    ask = [{"role": "user", "content": "What is the weather in Paris? Use the tool."}]
    reply = ollama.Client(host=front.base_url).chat(model="far-tools", messages=ask, tools=[WEATHER_TOOL],
                                                    options={**GREEDY, "num_predict": 64})
    calls = reply.message.tool_calls or []
    assert [c.function.name for c in calls] == ["get_weather"], reply
    assert calls[0].function.arguments == {"city": "Paris"}

    client = openai.OpenAI(base_url=front.base_url + "/v1", api_key="unused")
    stream = client.chat.completions.create(model="far-tools", messages=ask, tools=[WEATHER_TOOL],  # type: ignore[list-item]
                                            stream=True, stream_options={"include_usage": True}, temperature=0,
                                            seed=1, max_tokens=64)
    pieces = list(stream)
    tool_deltas = [tc for p in pieces if p.choices for tc in (p.choices[0].delta.tool_calls or [])]
    assert tool_deltas and tool_deltas[0].function and tool_deltas[0].function.name == "get_weather"
    assert json.loads("".join(t.function.arguments or "" for t in tool_deltas if t.function)) == {"city": "Paris"}
    assert [p.choices[0].finish_reason for p in pieces if p.choices and p.choices[0].finish_reason] == ["tool_calls"]
    usage = pieces[-1].usage
    assert usage is not None and usage.completion_tokens > 0 and usage.prompt_tokens > 20


def test_a_template_renders_here_and_goes_to_completions(front: Daemon, real_daemon: Daemon) -> None:
    modelfile = (f'ENGINE openai {real_daemon.base_url}/v1 model={QWEN}\nTEMPLATE """{CHATML}"""\n'
                 'PARAMETER stop <|im_end|>\nSYSTEM Answer in one word.\n')
    create_ok(front, "far-templated", modelfile)
    msgs = [{"role": "user", "content": "What is the capital of France?"}]
    reply = ollama.Client(host=front.base_url).chat(model="far-templated", messages=msgs,
                                                    options={**GREEDY, "num_predict": 16})
    # The engine is given the prompt rendered here: exactly what raw generate on it gives.
    prompt = ("<|im_start|>system\nAnswer in one word.<|im_end|>\n<|im_start|>user\n"
              "What is the capital of France?<|im_end|>\n<|im_start|>assistant\n")
    raw = ollama.Client(host=real_daemon.base_url).generate(model=QWEN, prompt=prompt, raw=True,
                                                            options={**GREEDY, "num_predict": 16, "stop": ["<|im_end|>"]})
    assert reply.message.content == raw.response and "Paris" in reply.message.content
    assert reply.eval_count == raw.eval_count


def test_embeddings_through_a_remote_model(front: Daemon, real_daemon: Daemon) -> None:
    create_ok(front, "far-embed", f"ENGINE openai {real_daemon.base_url}/v1 model={QWEN}\n")
    texts = ["the cat sat", "on the mat"]
    got = ollama.Client(host=front.base_url).embed(model="far-embed", input=texts)
    want = ollama.Client(host=real_daemon.base_url).embed(model=QWEN, input=texts)
    assert len(got.embeddings) == 2 and got.embeddings[0] == pytest.approx(want.embeddings[0], abs=1e-5)
    assert got.prompt_eval_count == want.prompt_eval_count > 0
    vectors = openai.OpenAI(base_url=front.base_url + "/v1", api_key="unused").embeddings.create(
        model="far-embed", input=texts)
    assert vectors.data[1].embedding == pytest.approx(want.embeddings[1], abs=1e-5)


def test_show_modelfile_creates_the_same_digest_and_the_key_is_not_stored(front: Daemon, llama_server: LlamaServer) -> None:
    create_ok(front, "lcpp", f"ENGINE openai {llama_server.url} model=qwen-lcpp api_key_env=LCPP_KEY\n"
                             "PARAMETER temperature 0.3\nSYSTEM hi\n")
    shown = front.request("POST", "/api/show", {"model": "lcpp"})[1]
    text = shown["modelfile"]  # type: ignore[index]
    assert f"ENGINE openai {llama_server.url} model=qwen-lcpp api_key_env=LCPP_KEY" in text
    create_ok(front, "lcpp-again", text)
    tags = {m["name"]: m["digest"] for m in front.request("GET", "/api/tags")[1]["models"]}  # type: ignore[index]
    assert tags["lcpp:latest"] == tags["lcpp-again:latest"]
    blobs = front.models_dir / "blobs"
    assert all(ENGINE_KEY.encode() not in p.read_bytes() for p in blobs.iterdir() if p.stat().st_size < 1 << 20)
    assert shown["details"]["format"] == "engine" and shown["capabilities"] == ["completion", "tools"]  # type: ignore[index]
    out = front.cli("show", "lcpp")
    assert out.returncode == 0 and ENGINE_KEY not in out.stdout, out.stderr

    # FROM a remote engine's model: the same engine, its own SYSTEM.
    create_ok(front, "lcpp-child", "FROM lcpp\nSYSTEM be terse\n")
    child = front.request("POST", "/api/show", {"model": "lcpp-child"})[1]
    assert f"ENGINE openai {llama_server.url} model=qwen-lcpp" in child["modelfile"]  # type: ignore[index]
    assert child["system"] == "be terse" and child["details"]["parent_model"] == "lcpp:latest"  # type: ignore[index]


def test_anthropic_messages_stream_through_a_remote_model(front: Daemon, real_daemon: Daemon) -> None:
    import anthropic

    create_ok(front, "far-claude", f"ENGINE openai {real_daemon.base_url}/v1 model={QWEN}\n")
    client = anthropic.Anthropic(base_url=front.base_url, api_key="unused")
    with client.messages.stream(model="far-claude", max_tokens=6,
                                messages=[{"role": "user", "content": "Count from 1 to 20."}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text and final.stop_reason == "max_tokens" and final.usage.output_tokens == 6


# -- llama-cpp-python's server as the engine --------------------------------------------------------
def test_llama_cpp_server_engine_with_key_streams_and_survives_a_kill(front: Daemon, llama_server: LlamaServer) -> None:
    create_ok(front, "lcpp-chat", f"ENGINE openai {llama_server.url} model=qwen-lcpp api_key_env=LCPP_KEY\n")
    client = openai.OpenAI(base_url=front.base_url + "/v1", api_key="unused")
    reply = client.chat.completions.create(model="lcpp-chat", temperature=0, max_tokens=12,
                                           messages=[{"role": "user", "content": "Say hello."}])
    assert reply.choices[0].message.content

    # Killed mid-stream: the stream already sent its first chunks, so it ends with an error line.
    url = front.base_url + "/api/generate"
    body = json.dumps({"model": "lcpp-chat", "prompt": "Write a long story about a dragon.",
                       "options": {"num_predict": 1500}}).encode()
    lines: list[dict[str, object]] = []
    with urllib.request.urlopen(urllib.request.Request(url, data=body, method="POST"), timeout=120) as resp:
        for raw in resp:
            lines.append(json.loads(raw))
            if len(lines) == 3:
                llama_server.kill()
    assert len(lines) > 3 and "error" in lines[-1] and not lines[-1].get("done"), lines[-3:]
    assert llama_server.url in str(lines[-1]["error"])

    # While it is down: a clear 503 naming it; once it is back: the next request works.
    status, err = front.request("POST", "/api/generate", {"model": "lcpp-chat", "prompt": "hi", "stream": False})
    assert_api_error(status, err, 503, f"remote engine {llama_server.url}")
    llama_server.start()
    status, ok = front.request("POST", "/api/generate", {"model": "lcpp-chat", "prompt": "Say hi.", "stream": False,
                                                         "options": {"num_predict": 8}})
    assert status == 200 and ok["response"] and ok["done"], ok  # type: ignore[index]


def test_wrong_key_and_wrong_model_id_are_clear_errors(front: Daemon, llama_server: LlamaServer, real_daemon: Daemon) -> None:
    create_ok(front, "lcpp-badkey", f"ENGINE openai {llama_server.url} model=qwen-lcpp api_key_env=WRONG_KEY\n")
    status, err = front.request("POST", "/api/chat", {"model": "lcpp-badkey", "messages": [{"role": "user", "content": "hi"}]})
    message = assert_api_error(status, err, 502, "refused the API key")
    assert "WRONG_KEY" in message and llama_server.url in message and "not-the-key" not in message
    create_ok(front, "lcpp-nokey", f"ENGINE openai {llama_server.url} model=qwen-lcpp api_key_env=UNSET_KEY_VAR\n")
    status, err = front.request("POST", "/api/generate", {"model": "lcpp-nokey", "prompt": "hi"})
    assert_api_error(status, err, 502, "has no UNSET_KEY_VAR")

    create_ok(front, "far-nope", f"ENGINE openai {real_daemon.base_url}/v1 model=no-such-model\n")
    status, err = front.request("POST", "/v1/chat/completions", {"model": "far-nope",
                                                                 "messages": [{"role": "user", "content": "hi"}]})
    assert_openai_error(status, err, 502, "does not serve model 'no-such-model'")


# -- a stub engine for timing ---------------------------------------------------------------------
def test_slow_engine_hits_the_read_timeout_and_retry_rules(strict_front: Daemon, stub: StubEngine) -> None:
    front = strict_front
    create_ok(front, "stubbed", f"ENGINE openai {stub.url} model={stub.model} num_parallel=1\n")
    client = ollama.Client(host=front.base_url)
    assert client.chat(model="stubbed", messages=[{"role": "user", "content": "hi"}]).message.content == "Hello from the stub"

    # num_parallel=1 on the ENGINE line: one request in flight to the engine at a time.
    stub.delay, stub.max_in_flight = 0.1, 0
    with ThreadPoolExecutor(4) as pool:
        replies = list(pool.map(lambda _: client.chat(model="stubbed", messages=[{"role": "user", "content": "x"}]),
                                range(4)))
    stub.delay = 0.0
    assert all(r.message.content == "Hello from the stub" for r in replies) and stub.max_in_flight == 1

    stub.stall = 10.0  # past OLLAMALIKE_ENGINE_READ_TIMEOUT=2s, before any header
    began = time.monotonic()
    status, err = front.request("POST", "/api/chat", {"model": "stubbed", "messages": [{"role": "user", "content": "hi"}]})
    assert_api_error(status, err, 502, "did not answer within 2s")
    assert time.monotonic() - began < 8
    stub.stall = 0.0
    stub.stall_after_first = 10.0  # silent mid-stream: an error line after the first piece
    status, text = front.request("POST", "/api/chat", {"model": "stubbed", "messages": [{"role": "user", "content": "hi"}]})
    lines = [json.loads(line) for line in str(text).splitlines()]
    assert status == 200 and lines[0]["message"]["content"] == "Hello" and "went silent" in lines[-1]["error"], lines
    stub.stall_after_first = 0.0

    before = len(stub.requests)
    stub.busy = 1  # 503 with Retry-After: tried once more
    assert client.chat(model="stubbed", messages=[{"role": "user", "content": "hi"}]).done
    stub.drop = 1  # the connection dropped before an answer: tried once more
    assert client.chat(model="stubbed", messages=[{"role": "user", "content": "hi"}]).done
    assert len(stub.requests) - before == 4
    stub.busy = 2  # twice: only one retry, then a clear 503
    status, err = front.request("POST", "/api/chat", {"model": "stubbed", "messages": [{"role": "user", "content": "hi"}]})
    assert_api_error(status, err, 503, f"remote engine {stub.url} (model {stub.model}) is busy")
    stub.busy = 0

    # keep_alive does nothing: the remote model stays listed after keep_alive 0.
    client.chat(model="stubbed", messages=[{"role": "user", "content": "x"}], keep_alive=0)
    assert "stubbed:latest" in [m["name"] for m in front.request("GET", "/api/ps")[1]["models"]]  # type: ignore[index]


def test_an_engine_that_is_down_is_a_503_naming_it(strict_front: Daemon) -> None:
    front = strict_front
    port = free_port()
    create_ok(front, "nowhere", f"ENGINE openai http://127.0.0.1:{port}/v1 model=m\n")
    status, err = front.request("POST", "/api/generate", {"model": "nowhere", "prompt": "hi"})
    assert_api_error(status, err, 503, f"remote engine http://127.0.0.1:{port}/v1 (model m) is unreachable")


@pytest.mark.parametrize("modelfile, expected", [
    ("ENGINE openai http://127.0.0.1:1/v1", "Modelfile line 1: ENGINE: model=<the engine's model id> is required"),
    ("FROM qwen\nENGINE openai http://127.0.0.1:1/v1 model=m", "not both"),
    ("ENGINE openai http://k:secret@127.0.0.1:1/v1 model=m", "must not hold credentials"),
])
def test_bad_engine_modelfiles_are_a_400_at_create(front: Daemon, modelfile: str, expected: str) -> None:
    status, err = create(front, "bad-engine", modelfile)
    assert_api_error(status, err, 400, expected)


