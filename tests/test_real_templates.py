"""Real models, real daemon: the prompt ``ollamalike render`` and ``/api/render`` give is byte-identical
to what the GGUF's own chat template gives rendered the way Hugging Face transformers'
``apply_chat_template`` renders it, and greedy Qwen ends its answer at ``<|im_end|>``.

The reference is computed here with plain jinja2 (``tests.hf_reference``) from the template read out
of the GGUF file with the ``gguf`` package's own reader, never from a copy of the expected text.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.daemon import Daemon
from tests.hf_reference import apply_chat_template, to_ollama

pytestmark = pytest.mark.e2e


def gguf_template_and_tokens(path: Path) -> tuple[str | None, str, str]:
    """(tokenizer.chat_template or None, BOS text, EOS text), read with gguf.GGUFReader."""
    from gguf import GGUFReader

    reader = GGUFReader(str(path))
    field = reader.fields.get("tokenizer.chat_template")
    template = field.contents() if field is not None else None
    tokens = reader.fields["tokenizer.ggml.tokens"]

    def token(key: str) -> str:
        index = int(reader.fields[key].contents())
        return bytes(tokens.parts[tokens.data[index]]).decode("utf-8")

    return template, token("tokenizer.ggml.bos_token_id"), token("tokenizer.ggml.eos_token_id")


@pytest.fixture(scope="module")
def qwen_template(qwen_gguf: Path) -> tuple[str, str, str]:
    template, bos, eos = gguf_template_and_tokens(qwen_gguf)
    assert template, "the Qwen GGUF carries a chat template"
    return template, bos, eos


SYSTEM = {"role": "system", "content": "You are a terse assistant. Grüße ✓"}
TWO_TURNS = [
    {"role": "user", "content": "Hello! ¿Qué tal? 日本"},
    {"role": "assistant", "content": "Hi! How can I help?"},
    {"role": "user", "content": "What is 2+2?"},
]
TOOLS = [{"type": "function", "function": {
    "name": "get_weather",
    "description": "Get the current weather for a city, in °C",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "The city name"}},
                   "required": ["city"]},
}}]


def _call(call_id: str, city: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": "get_weather", "arguments": {"city": city}}}


ROUND_TRIP = [
    {"role": "user", "content": "What is the weather in Paris?"},
    {"role": "assistant", "content": "", "tool_calls": [_call("call_1", "Paris")]},
    {"role": "tool", "tool_call_id": "call_1", "name": "get_weather", "content": '{"temperature": 18, "sky": "clear"}'},
]
CONSECUTIVE_RESULTS = [
    {"role": "user", "content": "Weather in Paris and in Rome?"},
    {"role": "assistant", "content": "Let me check both.", "tool_calls": [_call("call_1", "Paris"), _call("call_2", "Rome")]},
    {"role": "tool", "tool_call_id": "call_1", "name": "get_weather", "content": "18 and clear"},
    {"role": "tool", "tool_call_id": "call_2", "name": "get_weather", "content": "12 and rain"},
    {"role": "assistant", "content": "Paris is clear at 18°C; Rome has rain at 12°C."},
    {"role": "user", "content": "Thanks. And Berlin?"},
]
EMPTY_ASSISTANT = [
    {"role": "user", "content": "Say nothing."},
    {"role": "assistant", "content": ""},
    {"role": "user", "content": "Now say hi."},
]

# name -> (messages as transformers receives them, tools)
QWEN_CASES: dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]] | None]] = {
    "system_two_turns": ([SYSTEM, *TWO_TURNS], None),
    "two_turns_default_system": (TWO_TURNS, None),
    "system_two_turns_tools": ([SYSTEM, *TWO_TURNS], TOOLS),
    "two_turns_tools_default_system": (TWO_TURNS, TOOLS),
    "tool_round_trip": ([SYSTEM, *ROUND_TRIP], TOOLS),
    "consecutive_tool_results": (CONSECUTIVE_RESULTS, TOOLS),
    "empty_assistant_turn": (EMPTY_ASSISTANT, None),
}


def render_cli(daemon: Daemon, model: str, body: dict[str, Any]) -> bytes:
    """``ollamalike render MODEL`` with the body on stdin; its stdout as bytes (no newline translation)."""
    done = subprocess.run([sys.executable, "-m", "ollamalike", "render", model], input=json.dumps(body).encode(),
                          capture_output=True, env=dict(daemon.env), timeout=120)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return done.stdout


def render_api(daemon: Daemon, body: dict[str, Any]) -> str:
    status, answer = daemon.request("POST", "/api/render", body)
    assert status == 200, answer
    return str(answer["prompt"])


def _body(model: str, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "messages": to_ollama(messages)}
    if tools is not None:
        body["tools"] = tools
    return body


@pytest.mark.parametrize("case", list(QWEN_CASES))
def test_qwen_render_is_byte_identical_to_the_gguf_template(real_daemon: Daemon, qwen_template: tuple[str, str, str],
                                                           case: str) -> None:
    template, bos, eos = qwen_template
    messages, tools = QWEN_CASES[case]
    expected = apply_chat_template(template, messages, tools=tools, add_generation_prompt=True,
                                   bos_token=bos, eos_token=eos)
    body = _body("qwen", messages, tools)
    assert render_api(real_daemon, body) == expected
    assert render_cli(real_daemon, "qwen", body) == expected.encode("utf-8")
    # What the named ChatML template lost: Qwen's own default system prompt, and the tools JSON
    # with python's separators in the client's key order.
    if messages[0]["role"] != "system":
        assert expected.startswith("<|im_start|>system\nYou are Qwen, created by Alibaba Cloud.")
    if tools:
        assert '\n{"type": "function", "function": {"name": "get_weather", "description": ' in expected


def test_qwen_tool_results_carry_into_one_user_turn(real_daemon: Daemon, qwen_template: tuple[str, str, str]) -> None:
    """Consecutive tool results share one ``<|im_start|>user`` turn, as Qwen's template writes them."""
    prompt = render_api(real_daemon, _body("qwen", *QWEN_CASES["consecutive_tool_results"]))
    assert ("<|im_start|>user\n<tool_response>\n18 and clear\n</tool_response>\n<tool_response>\n12 and rain\n"
            "</tool_response><|im_end|>") in prompt
    assert '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Rome"}}\n</tool_call>' in prompt


def test_qwen_show_reports_the_gguf_template(real_daemon: Daemon, qwen_template: tuple[str, str, str]) -> None:
    status, shown = real_daemon.request("POST", "/api/show", {"model": "qwen"})
    assert status == 200, shown
    assert shown["template"] == qwen_template[0]
    assert "tools" in shown["capabilities"]
    assert "tokenizer.chat_template" not in shown["model_info"] and "general.name" not in shown["model_info"]
    assert shown["model_info"]["tokenizer.ggml.tokens"] is None  # the vocabulary only when verbose


def test_gemma_without_a_chat_template_renders_ollamas_default(real_daemon: Daemon, gemma_gguf: Path) -> None:
    """The Gemma 3 270M base GGUF has no chat template: as in Ollama, ``{{ .Prompt }}`` renders, one
    exchange after the other (user prompt, then the assistant's response), with no system slot."""
    template, bos, _ = gguf_template_and_tokens(gemma_gguf)
    assert template is None and bos == "<bos>"
    status, shown = real_daemon.request("POST", "/api/show", {"model": "gemma"})
    assert status == 200 and shown["template"] == "{{ .Prompt }}"
    messages = [SYSTEM, *TWO_TURNS]
    expected = "".join(m["content"] for m in messages if m["role"] in ("user", "assistant"))
    body = _body("gemma", messages, None)
    assert render_api(real_daemon, body) == expected
    assert render_cli(real_daemon, "gemma", body) == expected.encode("utf-8")
    generate = {"model": "gemma", "prompt": "Once upon a time", "system": "ignored by {{ .Prompt }}"}
    assert render_api(real_daemon, generate) == "Once upon a time"


# ---- the real model answering --------------------------------------------------------------------

def test_qwen_greedy_chat_says_paris_and_stops_at_im_end(real_daemon: Daemon) -> None:
    import ollama

    client = ollama.Client(host=real_daemon.base_url)
    messages = [{"role": "user", "content": "What is the capital of France? One word."}]
    options = {"temperature": 0, "num_predict": 32}
    reply = client.chat(model="qwen", messages=messages, options=options)
    text = reply.message.content or ""
    assert "Paris" in text, text
    assert reply.done_reason == "stop", reply
    assert "<|im_end|>" not in text and "<|im_start|>" not in text and "<|endoftext|>" not in text
    assert reply.eval_count is not None and reply.eval_count < 32  # ended by the end-of-turn token

    chunks = list(client.chat(model="qwen", messages=messages, options=options, stream=True))
    streamed = "".join(c.message.content or "" for c in chunks)
    assert streamed == text
    assert chunks[-1].done and chunks[-1].done_reason == "stop"
    assert not any("<|im_end|>" in (c.message.content or "") for c in chunks)


def test_qwen_calls_the_tool_with_its_own_template(real_daemon: Daemon) -> None:
    """With the GGUF's template (its system prompt and tool instructions), greedy Qwen answers a
    weather question with a get_weather call, not with prose. Raw generate shows the model's own
    text, whatever the tool-call parser makes of it: the 0.5B Coder writes the call's JSON in a
    ```json fence (recognised by Ollama's parser like ``<tool_call>``) rather than in the tags."""
    prompt = render_api(real_daemon, _body("qwen", [{"role": "user", "content": "What is the weather in Paris?"}],
                                           TOOLS))
    status, answer = real_daemon.request("POST", "/api/generate", {
        "model": "qwen", "prompt": prompt, "raw": True, "stream": False,
        "options": {"temperature": 0, "num_predict": 64}}, timeout=300)
    assert status == 200, answer
    text = answer["response"].strip()
    if "<tool_call>" in text:
        body = text.split("<tool_call>", 1)[1].split("</tool_call>", 1)[0]
    else:
        assert text.startswith("```json") and text.endswith("```"), text
        body = text[len("```json"):-len("```")]
    assert json.loads(body) == {"name": "get_weather", "arguments": {"city": "Paris"}}, text
    assert answer["done_reason"] == "stop" and "<|im_end|>" not in text
