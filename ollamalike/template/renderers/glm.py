"""Zhipu GLM renderers ``glm-4.7`` and ``glm-ocr``.

``glm-4.7``: ``[gMASK]<sop>``, ``<|system|>``/``<|user|>``/``<|assistant|>`` turns, tools as JSON lines in ``<tools>``, calls as ``<tool_call>name<arg_key>k</arg_key><arg_value>v
</arg_value>…</tool_call>``, tool results in one ``<|observation|>`` turn.

Thinking is on unless the request turns it off (Ollama's default for this family), and earlier
turns keep their reasoning (``<think>…</think>``; an assistant turn without any gets ``</think>``).

``glm-ocr`` is the same family with a newline after each role tag, ``<think></think>`` for an
assistant turn without reasoning, tool results on lines of their own, and thinking off unless asked
for: a request that turns it off explicitly gets ``/nothink`` after each user message and an empty
think block to answer in.
"""

from __future__ import annotations

from ollamalike.template.renderers.base import Think, api_tool, json_of, spaced, think_on, thinking_of
from ollamalike.template.values import Message, Tool, ToolCall

TOOLS_HEADER = (
    "<|system|>\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n"
)
TOOLS_FOOTER = (
    "</tools>\n\nFor each function call, output the function name and arguments within the following XML "
    "format:\n<tool_call>{function-name}<arg_key>{arg-key-1}</arg_key><arg_value>{arg-value-1}</arg_value>"
    "<arg_key>{arg-key-2}</arg_key><arg_value>{arg-value-2}</arg_value>...</tool_call>"
)


def _tools(tools: list[Tool]) -> str:
    return TOOLS_HEADER + "".join(spaced(json_of(api_tool(t))) + "\n" for t in tools) + TOOLS_FOOTER


def _arguments(call: ToolCall) -> str:
    return "".join("<arg_key>" + k + "</arg_key><arg_value>" + (v if isinstance(v, str) else json_of(v))
                   + "</arg_value>" for k, v in call["function"]["arguments"].items())


def render_glm47(messages: list[Message], tools: list[Tool], think: Think) -> str:
    out = ["[gMASK]<sop>"]
    if tools:
        out.append(_tools(tools))
    for i, m in enumerate(messages):
        role = m["role"]
        if role == "user":
            out.append("<|user|>" + m["content"])
        elif role == "assistant":
            reasoning = thinking_of(m)
            out.append("<|assistant|>" + ("<think>" + reasoning + "</think>" if reasoning else "</think>"))
            out.append(m["content"])
            for call in m["tool_calls"]:
                out.append("<tool_call>" + call["function"]["name"] + _arguments(call) + "</tool_call>")
        elif role == "tool":
            if i == 0 or messages[i - 1]["role"] != "tool":
                out.append("<|observation|>")
            out.append("<tool_response>" + m["content"] + "</tool_response>")
        elif role == "system":
            out.append("<|system|>" + m["content"])
    out.append("<|assistant|>" + ("<think>" if think_on(think, default=True) else "</think>"))
    return "".join(out)


def render_glm_ocr(messages: list[Message], tools: list[Tool], think: Think) -> str:
    out = ["[gMASK]<sop>", _tools(tools) if tools else ""]
    # Only an explicit "off" changes the prompt: unset leaves the choice to the model.
    off = think is not None and not think_on(think)
    for i, m in enumerate(messages):
        role, content = m["role"], m["content"]
        if role == "user":
            out.append("<|user|>\n" + content + ("/nothink" if off and not content.endswith("/nothink") else ""))
        elif role == "assistant":
            reasoning = thinking_of(m)
            out.append("<|assistant|>\n<think>" + reasoning.strip() + "</think>")
            if content:
                out.append("\n" + content.strip())
            for call in m["tool_calls"]:
                out.append("\n<tool_call>" + call["function"]["name"] + _arguments(call) + "</tool_call>")
            out.append("\n")
        elif role == "tool":
            if i == 0 or messages[i - 1]["role"] != "tool":
                out.append("<|observation|>")
            out.append("\n<tool_response>\n" + content + "\n</tool_response>\n")
        elif role == "system":
            out.append("<|system|>\n" + content + "\n")
    out.append("<|assistant|>\n" + ("<think></think>\n" if off else ""))
    return "".join(out)
