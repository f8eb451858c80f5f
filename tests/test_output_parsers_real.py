"""Output parsers on the real Qwen2.5-Coder 0.5B through the real daemon and the official client.

Greedy Qwen answers the weather question with a fenced JSON call (```` ```json {"name", "arguments"}
``` ````). With no parser named, its own template decides: the generic parser (its ``<tool_call>``
tag and the well-known forms, a fenced block at the start among them) gives one structured call.
A named parser is honoured instead: ``qwen3`` (Ollama's Qwen 3 parser, whose calls are
``<tool_call>``-tagged only) and ``passthrough`` leave that same text as content, exactly as
generated, streamed or not.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import ollama
import pytest

from tests.daemon import Daemon
from tests.infer_helpers import with_parser
from tests.realmodels import QWEN

pytestmark = pytest.mark.e2e

GREEDY = {"temperature": 0, "seed": 1}
QUESTION = [{"role": "user", "content": "What is the weather in Paris?"}]
WEATHER = {"type": "function", "function": {
    "name": "get_weather",
    "description": "Get the current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "The city"}},
                   "required": ["city"]},
}}


@pytest.fixture(scope="module")
def native(real_daemon: Daemon) -> Iterator[ollama.Client]:
    for parser in ("qwen3", "passthrough"):
        with_parser(real_daemon, QWEN, f"qwen-{parser}", parser)
    yield ollama.Client(host=real_daemon.base_url, timeout=600)


def _answer(client: ollama.Client, model: str, stream: bool) -> tuple[str, list[tuple[str, dict[str, object]]]]:
    if stream:
        parts = list(client.chat(model=model, messages=QUESTION, tools=[WEATHER], options=GREEDY, stream=True))
    else:
        parts = [client.chat(model=model, messages=QUESTION, tools=[WEATHER], options=GREEDY)]
    content = "".join(p.message.content or "" for p in parts)
    calls = [(c.function.name, dict(c.function.arguments)) for p in parts for c in p.message.tool_calls or []]
    return content, calls


def _fenced_call(content: str) -> object:
    text = content.strip()
    assert text.startswith("```json") and text.endswith("```"), content
    return json.loads(text[len("```json"):-len("```")])


def test_qwen_calls_parse_with_its_own_template(native: ollama.Client) -> None:
    for stream in (False, True):
        content, calls = _answer(native, QWEN, stream)
        assert calls == [("get_weather", {"city": "Paris"})] and content == "", (stream, content, calls)


# One model per test: each loads its own runner, and a test stays well inside the per-test timeout.
def test_a_named_parser_is_honoured_on_real_output(native: ollama.Client) -> None:
    content, calls = _answer(native, "qwen-qwen3", stream=False)
    assert calls == [] and _fenced_call(content) == {"name": "get_weather", "arguments": {"city": "Paris"}}
    assert _answer(native, "qwen-qwen3", stream=True) == (content, calls)


def test_passthrough_leaves_real_output_as_generated(native: ollama.Client) -> None:
    content, calls = _answer(native, "qwen-passthrough", stream=False)
    assert calls == [] and _fenced_call(content) == {"name": "get_weather", "arguments": {"city": "Paris"}}
