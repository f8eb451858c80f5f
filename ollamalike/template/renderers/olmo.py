"""Ai2 OLMo 3 renderers: ``olmo3`` / ``olmo3.1`` (instruct: tools as JSON in ``<functions>``, calls
written back as ``name(key=json, …)`` in ``<function_calls>``, tool results as an ``environment``
turn) and ``olmo3-think`` / ``olmo3-32b-think`` (no tools; the answer always opens with ``<think>``).

ChatML turns; the first system message wins and the others are dropped; without one each variant
writes its own default system prompt.
"""

from __future__ import annotations

from ollamalike.template.renderers.base import (
    IM_END,
    IM_START,
    Think,
    api_tool,
    json_of,
    spaced,
    split_system,
)
from ollamalike.template.values import Message, Tool

OLMO3_DEFAULT_SYSTEM = "You are a helpful function-calling AI assistant. "
OLMO31_DEFAULT_SYSTEM = ("You are Olmo, a helpful AI assistant built by Ai2. Your date cutoff is December 2024, and "
                         "your model weights are available at https://huggingface.co/allenai. ")
NO_FUNCTIONS = "You do not currently have access to any functions. "
WITH_FUNCTIONS = ("You are provided with function signatures within <functions></functions> XML tags. You may "
                  "call one or more functions to assist with the user query. Output any function calls within "
                  "<function_calls></function_calls> XML tags. Do not make assumptions about what values to plug "
                  "into functions.")
THINK_FUNCTIONS_SUFFIX = " You do not currently have access to any functions. <functions></functions>"
THINK_32B_SYSTEM = "You are a helpful AI assistant."
THINK_31_SYSTEM = OLMO31_DEFAULT_SYSTEM.rstrip()


def _functions(tools: list[Tool]) -> str:
    return "<functions>" + spaced(json_of([api_tool(t) for t in tools])) + "</functions>"


def _olmo3(messages: list[Message], tools: list[Tool], default_system: str) -> str:
    system, msgs = split_system(messages)
    out = [IM_START + "system\n"]
    if system is not None:
        out.append(system["content"] + (_functions(tools) if tools else ""))
    elif tools:
        out.append(default_system + WITH_FUNCTIONS + _functions(tools))
    else:
        out.append(default_system + NO_FUNCTIONS + "<functions></functions>")
    out.append(IM_END + "\n")
    for i, m in enumerate(msgs):
        last = i == len(msgs) - 1
        if m["role"] == "user":
            out.append(IM_START + "user\n" + m["content"] + IM_END + "\n")
        elif m["role"] == "assistant":
            out.append(IM_START + "assistant\n" + m["content"])
            if m["tool_calls"]:
                calls = []
                for call in m["tool_calls"]:
                    args = call["function"]["arguments"]
                    calls.append(call["function"]["name"] + "("
                                 + ", ".join(f"{k}={json_of(args[k])}" for k in sorted(args)) + ")")
                out.append("<function_calls>" + "\n".join(calls) + "</function_calls>")
            if not last or m["tool_calls"]:
                out.append(IM_END + "\n")
        elif m["role"] == "tool":
            out.append(IM_START + "environment\n" + m["content"] + IM_END + "\n")
    final = msgs[-1] if msgs else None
    # A trailing assistant message with text and no calls is a prefill: the answer continues it.
    if final is None or not (final["role"] == "assistant" and not final["tool_calls"] and final["content"]):
        out.append(IM_START + "assistant\n")
    return "".join(out)


def render_olmo3(messages: list[Message], tools: list[Tool], think: Think) -> str:
    return _olmo3(messages, tools, OLMO3_DEFAULT_SYSTEM)


def render_olmo31(messages: list[Message], tools: list[Tool], think: Think) -> str:
    return _olmo3(messages, tools, OLMO31_DEFAULT_SYSTEM)


def _olmo3_think(messages: list[Message], default_system: str) -> str:
    system, msgs = split_system(messages)
    out = [IM_START + "system\n"]
    out.append(system["content"] + THINK_FUNCTIONS_SUFFIX if system is not None else default_system)
    out.append(IM_END + "\n")
    for m in msgs:
        # Tool results are dropped: these models take no tools.
        if m["role"] in ("user", "assistant"):
            out.append(IM_START + m["role"] + "\n" + m["content"] + IM_END + "\n")
    out.append(IM_START + "assistant\n<think>")
    return "".join(out)


def render_olmo3_think(messages: list[Message], tools: list[Tool], think: Think) -> str:
    """Olmo-3-7B-Think and Olmo-3.1-32B-Think."""
    return _olmo3_think(messages, THINK_31_SYSTEM)


def render_olmo3_32b_think(messages: list[Message], tools: list[Tool], think: Think) -> str:
    return _olmo3_think(messages, THINK_32B_SYSTEM)
