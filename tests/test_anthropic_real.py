"""Real model: the official ``anthropic`` SDK against the real daemon serving Qwen2.5-Coder 0.5B (``qwen``).

What only a real model shows: it follows a system prompt, calls a tool and answers from the
tool's result (tool_use -> tool_result -> final answer), and greedy streaming gives exactly the
unstreamed answer. ``count_tokens`` is checked against the prompt Qwen is actually given.
"""

from __future__ import annotations

import json
from typing import Any

import anthropic
import pytest

from tests.daemon import Daemon

pytestmark = pytest.mark.e2e

QWEN = "qwen"
GREEDY: dict[str, Any] = {"temperature": 0, "top_k": 1, "seed": 1}
WEATHER_TOOL: Any = {
    "name": "get_weather",
    "description": "Get the current weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string", "description": "The city"}},
                     "required": ["city"]},
}


@pytest.fixture(scope="module")
def client(real_daemon: Daemon) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=real_daemon.base_url, api_key="unused", max_retries=0, timeout=300)


def test_system_prompt_is_followed(client: anthropic.Anthropic) -> None:
    msg = client.messages.create(
        model=QWEN, max_tokens=20, extra_body=GREEDY,
        system="The secret code word is PINEAPPLE. When asked for the code word, reply with only the code word.",
        messages=[{"role": "user", "content": "What is the code word?"}])
    text = msg.content[0].text  # type: ignore[union-attr]
    assert "PINEAPPLE" in text.upper(), text
    assert msg.stop_reason == "end_turn"


def test_stream_helpers_give_the_unstreamed_answer(client: anthropic.Anthropic) -> None:
    kwargs: Any = {"model": QWEN, "max_tokens": 40, "extra_body": GREEDY,
                   "messages": [{"role": "user", "content": "Name three primary colors, comma separated."}]}
    msg = client.messages.create(**kwargs)
    with client.messages.stream(**kwargs) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(pieces) > 1
    assert "".join(pieces) == msg.content[0].text == final.content[0].text  # type: ignore[union-attr]
    assert "red" in final.content[0].text.lower()  # type: ignore[union-attr]
    assert final.usage.output_tokens == msg.usage.output_tokens


def test_count_tokens_uses_qwens_tokenizer(client: anthropic.Anthropic, real_daemon: Daemon) -> None:
    messages: Any = [{"role": "user", "content": "Hello there, how are you today?"}]
    counted = client.messages.count_tokens(model=QWEN, messages=messages, system="Be brief.")
    # The rendered prompt, tokenized by the daemon's runner for Qwen: Qwen's ChatML markers are one token each.
    status, rendered = real_daemon.request("POST", "/api/render", {"model": QWEN, "messages": [
        {"role": "system", "content": "Be brief."}, *messages]})
    assert status == 200 and "<|im_start|>" in rendered["prompt"]
    assert 15 < counted.input_tokens < len(rendered["prompt"]) // 2


# As an agent runs it: a system prompt saying what to do with a tool result (without one, greedy
# Qwen 0.5B calls the tool again instead of answering; see tests/test_real_tools.py).
AGENT_SYSTEM = "You are a helpful assistant. Call a tool when you need data; once a tool result is given, answer the user in one sentence using it."


def test_tool_use_round_trip(client: anthropic.Anthropic) -> None:
    question: Any = {"role": "user", "content": "What is the weather in Paris right now? Use the tool."}
    msg = client.messages.create(model=QWEN, max_tokens=100, tools=[WEATHER_TOOL], messages=[question],
                                 system=AGENT_SYSTEM, extra_body=GREEDY)
    uses = [b for b in msg.content if b.type == "tool_use"]
    assert msg.stop_reason == "tool_use" and len(uses) == 1, msg.content
    use = uses[0]
    assert use.name == "get_weather" and "paris" in str(use.input.get("city", "")).lower()  # type: ignore[union-attr]
    answer = client.messages.create(model=QWEN, max_tokens=100, tools=[WEATHER_TOOL], extra_body=GREEDY,
                                    system=AGENT_SYSTEM, messages=[
        question,
        {"role": "assistant", "content": msg.content},  # type: ignore[typeddict-item]
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id,  # type: ignore[union-attr]
                                      "content": json.dumps({"city": "Paris", "temperature_c": 23, "condition": "sunny"})},
                                     {"type": "text", "text": "Now answer me in one sentence."}]}])
    assert answer.stop_reason == "end_turn"
    text = "".join(b.text for b in answer.content if b.type == "text")  # type: ignore[union-attr]
    assert "23" in text, text


def test_a_stop_sequence_ends_the_turn_and_is_named(client: anthropic.Anthropic) -> None:
    question: Any = {"role": "user", "content": "Count from 1 to 10, separated by commas."}
    msg = client.messages.create(model=QWEN, max_tokens=60, messages=[question], stop_sequences=["5"],
                                 extra_body=GREEDY)
    text = "".join(b.text for b in msg.content if b.type == "text")  # type: ignore[union-attr]
    assert msg.stop_reason == "stop_sequence" and msg.stop_sequence == "5", (msg.stop_reason, msg.stop_sequence, text)
    assert "4" in text and "5" not in text, text
    with client.messages.stream(model=QWEN, max_tokens=60, messages=[question], stop_sequences=["5"],
                                extra_body=GREEDY) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "stop_sequence" and final.stop_sequence == "5"
    plain = client.messages.create(model=QWEN, max_tokens=60, messages=[question], extra_body=GREEDY)
    assert plain.stop_reason == "end_turn" and plain.stop_sequence is None
