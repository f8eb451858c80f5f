"""Zhipu GLM renderer ``glm-4.7``: ``[gMASK]<sop>``, ``<|system|>``/``<|user|>``/``<|assistant|>``
turns, tools as JSON lines in ``<tools>``, calls as ``<tool_call>name<arg_key>k</arg_key><arg_value>v
</arg_value>…</tool_call>``, tool results in one ``<|observation|>`` turn.

Thinking is on unless the request turns it off (Ollama's default for this family), and earlier
turns keep their reasoning (``<think>…</think>``; an assistant turn without any gets ``</think>``).
"""

from __future__ import annotations

from ollamalike.template.renderers.base import Think, api_tool, json_of, spaced, think_on, thinking_of
from ollamalike.template.values import Message, Tool

TOOLS_HEADER = (
    "<|system|>\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n"
)
TOOLS_FOOTER = (
    "</tools>\n\nFor each function call, output the function name and arguments within the following XML "
    "format:\n<tool_call>{function-name}<arg_key>{arg-key-1}</arg_key><arg_value>{arg-value-1}</arg_value>"
    "<arg_key>{arg-key-2}</arg_key><arg_value>{arg-value-2}</arg_value>...</tool_call>"
)


def render_glm47(messages: list[Message], tools: list[Tool], think: Think) -> str:
    out = ["[gMASK]<sop>"]
    if tools:
        out.append(TOOLS_HEADER + "".join(spaced(json_of(api_tool(t))) + "\n" for t in tools) + TOOLS_FOOTER)
    for i, m in enumerate(messages):
        role = m["role"]
        if role == "user":
            out.append("<|user|>" + m["content"])
        elif role == "assistant":
            reasoning = thinking_of(m)
            out.append("<|assistant|>" + ("<think>" + reasoning + "</think>" if reasoning else "</think>"))
            out.append(m["content"])
            for call in m["tool_calls"]:
                args = "".join(
                    "<arg_key>" + k + "</arg_key><arg_value>" + (v if isinstance(v, str) else json_of(v))
                    + "</arg_value>" for k, v in call["function"]["arguments"].items())
                out.append("<tool_call>" + call["function"]["name"] + args + "</tool_call>")
        elif role == "tool":
            if i == 0 or messages[i - 1]["role"] != "tool":
                out.append("<|observation|>")
            out.append("<tool_response>" + m["content"] + "</tool_response>")
        elif role == "system":
            out.append("<|system|>" + m["content"])
    out.append("<|assistant|>" + ("<think>" if think_on(think, default=True) else "</think>"))
    return "".join(out)
