"""Liquid LFM2 renderers ``lfm2`` and ``lfm2-thinking``: ``<|startoftext|>`` then ChatML turns; the
tools' function schemas in the system turn between ``<|tool_list_start|>`` and ``<|tool_list_end|>``;
calls written back as ``<|tool_call_start|>[name(key=json,…)]<|tool_call_end|>``; tool results
wrapped in ``<|tool_response_start|>…<|tool_response_end|>``.

JSON here looks like Python's ``json.dumps`` (a space after ``:`` and ``,``, no HTML escaping), as
the model's Hugging Face template writes it. The thinking variant writes an assistant turn's
reasoning back as ``<think>…</think>``; reasoning of turns before the last assistant one is dropped
unless the request turns thinking on.
"""

from __future__ import annotations

import re

from ollamalike.template.govalues import GoValue, Struct
from ollamalike.template.renderers.base import (
    IM_END,
    IM_START,
    Think,
    json_of,
    parameters,
    spaced,
    think_on,
    thinking_of,
)
from ollamalike.template.values import Message, Tool, ToolCall

BOS = "<|startoftext|>"
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
LIST_START, LIST_END = "<|tool_list_start|>", "<|tool_list_end|>"
CALL_START, CALL_END = "<|tool_call_start|>", "<|tool_call_end|>"
RESPONSE_START, RESPONSE_END = "<|tool_response_start|>", "<|tool_response_end|>"

# An escape Go's HTML-safe encoding wrote, not preceded by an escaped backslash.
_HTML_ESCAPE = re.compile(r"(?<!\\)((?:\\\\)*)\\u00(3c|3e|26)")
_UNESCAPED = {"3c": "<", "3e": ">", "26": "&"}


def lfm2_json(value: GoValue) -> str:
    return spaced(_HTML_ESCAPE.sub(lambda m: m.group(1) + _UNESCAPED[m.group(2)], json_of(value)), keep_existing=True)


def _function_schema(tool: Tool) -> Struct:
    """``api.ToolFunction``: what LFM2's template is fed for each tool."""
    fn = tool["function"]
    description = fn.get("description")
    return Struct("api.ToolFunction", {}, [
        ("name", fn["name"], False),
        ("description", description if isinstance(description, str) else "", True),
        ("parameters", parameters(tool), False),
    ])


def _calls(calls: list[ToolCall]) -> str:
    rendered = []
    for call in calls:
        args = call["function"]["arguments"]
        rendered.append(call["function"]["name"] + "(" + ",".join(f"{k}={lfm2_json(args[k])}" for k in sorted(args))
                        + ")")
    return CALL_START + "[" + ",".join(rendered) + "]" + CALL_END


def _lfm2(messages: list[Message], tools: list[Tool], think: Think, thinking_variant: bool) -> str:
    out = [BOS]
    start = 1 if messages and messages[0]["role"] == "system" else 0
    system = messages[0]["content"] if start else ""
    if tools:
        system += ("\n" if system else "") + "List of tools: " + LIST_START + "["
        system += ", ".join(lfm2_json(_function_schema(t)) for t in tools) + "]" + LIST_END
    if system:
        out.append(IM_START + "system\n" + system + IM_END + "\n")
    keep_past_thinking = thinking_variant and think_on(think)
    last_assistant = next((i for i in range(len(messages) - 1, start - 1, -1) if messages[i]["role"] == "assistant"),
                          -1)
    for i in range(start, len(messages)):
        m = messages[i]
        role = m["role"]
        prefill = i == len(messages) - 1 and role == "assistant"
        content = m["content"]
        if role == "assistant" and m["tool_calls"] and CALL_START not in content:
            content = _calls(m["tool_calls"]) + ("" if not content.strip() else "\n") + content
        reasoning = thinking_of(m)
        if thinking_variant and role == "assistant" and reasoning and THINK_CLOSE not in content:
            content = THINK_OPEN + reasoning + THINK_CLOSE + content
        if role == "assistant" and not keep_past_thinking and i != last_assistant and THINK_CLOSE in content:
            content = content[content.rindex(THINK_CLOSE) + len(THINK_CLOSE):].strip()
        if role == "tool" and RESPONSE_START not in content:
            content = RESPONSE_START + content + RESPONSE_END
        out.append(IM_START + role + "\n" + content + ("" if prefill else IM_END + "\n"))
    if not messages or messages[-1]["role"] != "assistant":
        out.append(IM_START + "assistant\n")
    return "".join(out)


def render_lfm2(messages: list[Message], tools: list[Tool], think: Think) -> str:
    return _lfm2(messages, tools, think, thinking_variant=False)


def render_lfm2_thinking(messages: list[Message], tools: list[Tool], think: Think) -> str:
    return _lfm2(messages, tools, think, thinking_variant=True)
