"""Qwen renderers: ``qwen3-coder`` (XML tool definitions and ``<function=…><parameter=…>`` calls)
and ``qwen3-vl-instruct`` / ``qwen3-vl-thinking`` (JSON tools in ``<tools>``, ``<think>`` blocks
for the turns after the last real user query).

Both are ChatML (``<|im_start|>role … <|im_end|>``); tool results share one user turn, each in
its own ``<tool_response>``; a trailing assistant message is a prefill (left open).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from ollamalike.template.govalues import GoValue
from ollamalike.template.renderers.base import (
    IM_END,
    IM_START,
    Think,
    api_tool,
    arguments,
    description_of,
    go_print,
    json_of,
    parameters,
    property_fields,
    spaced,
    split_system,
    think_on,
    thinking_of,
    tool_property,
)
from ollamalike.template.values import Message, Tool

CODER_DEFAULT_SYSTEM = "You are Qwen, a helpful AI assistant that can interact with a computer to solve tasks."
CODER_CALL_INSTRUCTIONS = (
    "\n\nIf you choose to call a function ONLY reply in the following format with NO suffix:\n\n"
    "<tool_call>\n<function=example_function_name>\n<parameter=example_parameter_1>\nvalue_1\n</parameter>\n"
    "<parameter=example_parameter_2>\nThis is the value for the second parameter\nthat can span\nmultiple lines\n"
    "</parameter>\n</function>\n</tool_call>\n\n<IMPORTANT>\nReminder:\n"
    "- Function calls MUST follow the specified format: an inner <function=...></function> block must be nested "
    "within <tool_call></tool_call> XML tags\n"
    "- Required parameters MUST be specified\n"
    "- You may provide optional reasoning for your function call in natural language BEFORE the function call, "
    "but NOT after\n"
    "- If there is no function call available, answer the question like normal with your current knowledge and "
    "do not tell the user about function calls\n</IMPORTANT>"
)
VL_TOOLS_HEADER = (
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>"
)
VL_TOOLS_FOOTER = (
    "\n</tools>\n\nFor each function call, return a json object with function name and arguments within "
    "<tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": "
    "<args-json-object>}\n</tool_call><|im_end|>\n"
)


def _extra_keys(fields: list[tuple[str, GoValue, bool]], handled: set[str]) -> str:
    """The keys a struct's JSON has beyond ``handled``, each as ``\\n<key>value</key>``: containers as
    (re-decoded, so key-sorted) JSON, scalars as Go prints them. Ollama ranges over a Go map here (an
    unspecified order); this keeps the struct's field order."""
    out: list[str] = []
    for key, value, omit in fields:
        if key in handled or value is None or (omit and value in ("", [], {})):
            continue
        encoded = json.loads(json_of(value))
        if isinstance(encoded, (dict, list)):
            out.append(f"\n<{key}>{json_of(encoded)}</{key}>")
        elif encoded is not None:
            out.append(f"\n<{key}>{go_print(encoded)}</{key}>")
    return "".join(out)


def _type_text(raw: GoValue) -> str:
    types = [raw] if isinstance(raw, str) else list(raw) if isinstance(raw, list) else []
    if len(types) == 1:
        return str(types[0])
    return json_of(types)


def _coder_tool(tool: Tool) -> str:
    out = ["\n<function>\n<name>" + tool["function"]["name"] + "</name>"]
    description = description_of(tool)
    if description:
        out.append("\n<description>" + description + "</description>")
    out.append("\n<parameters>")
    for name, prop in property_fields(tool):
        out.append("\n<parameter>\n<name>" + name + "</name>")
        raw_type = prop.get("type")
        if raw_type and isinstance(raw_type, (str, list)):
            out.append("\n<type>" + _type_text(raw_type) + "</type>")
        prop_description = prop.get("description")
        if isinstance(prop_description, str) and prop_description:
            out.append("\n<description>" + prop_description + "</description>")
        out.append(_extra_keys(tool_property(prop).json_fields or [], {"type", "description"}))
        out.append("\n</parameter>")
    out.append(_extra_keys(parameters(tool).json_fields or [], {"type", "properties"}))
    out.append("\n</parameters>\n</function>")
    return "".join(out)


def coder_argument(value: GoValue) -> str:
    if value is None:
        return "null"
    if isinstance(value, str):
        return value
    if isinstance(value, (Mapping, list)):
        return json_of(value)
    return go_print(value)


def tool_results(out: list[str], msgs: list[Message], i: int, content: str | None = None) -> None:
    """One tool result (``content``, else the message's): the user turn opens at the first of a run and
    closes after the last."""
    if i == 0 or msgs[i - 1]["role"] != "tool":
        out.append(IM_START + "user")
    out.append("\n<tool_response>\n" + (msgs[i]["content"] if content is None else content) + "\n</tool_response>")
    if i == len(msgs) - 1 or msgs[i + 1]["role"] != "tool":
        out.append(IM_END + "\n")


def render_qwen3_coder(messages: list[Message], tools: list[Tool], think: Think) -> str:
    system_msg, msgs = split_system(messages)
    system = system_msg["content"] if system_msg else ""
    out: list[str] = []
    if system or tools:
        out.append(IM_START + "system\n" + (system or CODER_DEFAULT_SYSTEM))
        if tools:
            out.append("\n\n# Tools\n\nYou have access to the following functions:\n\n<tools>")
            out.extend(_coder_tool(t) for t in tools)
            out.append("\n</tools>" + CODER_CALL_INSTRUCTIONS)
        out.append(IM_END + "\n")
    for i, m in enumerate(msgs):
        last = i == len(msgs) - 1
        prefill = last and m["role"] == "assistant"
        if m["role"] == "assistant":
            out.append(IM_START + "assistant\n")
            if m["tool_calls"]:
                if m["content"]:
                    out.append(m["content"] + "\n")
                for call in m["tool_calls"]:
                    out.append("\n<tool_call>\n<function=" + call["function"]["name"] + ">")
                    for name, value in call["function"]["arguments"].items():
                        out.append("\n<parameter=" + name + ">\n" + coder_argument(value) + "\n</parameter>")
                    out.append("\n</function>\n</tool_call>")
                out.append(IM_END + "\n")
            else:
                out.append(m["content"] + ("" if prefill else IM_END + "\n"))
        elif m["role"] == "tool":
            tool_results(out, msgs, i)
        else:
            out.append(IM_START + m["role"] + "\n" + m["content"] + IM_END + "\n")
        if last and not prefill:
            out.append(IM_START + "assistant\n")
    return "".join(out)


def _is_tool_response(content: str) -> bool:
    return content.startswith("<tool_response>") and content.endswith("</tool_response>")


def _qwen3_vl(messages: list[Message], tools: list[Tool], think: Think, thinking_default: bool,
              empty_think_when_off: bool = False) -> str:
    thinking = think_on(think, thinking_default)
    first_system = bool(messages) and messages[0]["role"] == "system"
    out: list[str] = []
    if tools:
        out.append(IM_START + "system\n" + (messages[0]["content"] + "\n\n" if first_system else "") + VL_TOOLS_HEADER)
        out.extend("\n" + spaced(json_of(api_tool(t))) for t in tools)
        out.append(VL_TOOLS_FOOTER)
    elif first_system:
        out.append(IM_START + "system\n" + messages[0]["content"] + IM_END + "\n")
    # The last user message that is a real query (not tool output pasted in as a user turn).
    last_query = next((i for i in range(len(messages) - 1, -1, -1)
                       if messages[i]["role"] == "user" and not _is_tool_response(messages[i]["content"])),
                      len(messages) - 1)
    for i, m in enumerate(messages):
        content = m["content"]
        last = i == len(messages) - 1
        prefill = last and m["role"] == "assistant"
        if m["role"] == "user" or (m["role"] == "system" and i != 0):
            out.append(IM_START + m["role"] + "\n" + content + IM_END + "\n")
        elif m["role"] == "assistant":
            reasoning = thinking_of(m) if thinking else ""
            if thinking and i > last_query and (last or reasoning):
                out.append(IM_START + "assistant\n<think>\n" + reasoning.strip("\n"))
                if content:
                    out.append("\n</think>\n\n" + content.lstrip("\n"))
            else:
                out.append(IM_START + "assistant\n" + content)
            for j, call in enumerate(m["tool_calls"]):
                if j > 0 or content:
                    out.append("\n")
                out.append("<tool_call>\n{\"name\": \"" + call["function"]["name"] + "\", \"arguments\": "
                           + spaced(json_of(arguments(call))) + "}\n</tool_call>")
            if not prefill:
                out.append(IM_END + "\n")
        elif m["role"] == "tool":
            tool_results(out, messages, i)
        if last and not prefill:
            out.append(IM_START + "assistant\n")
            if thinking:
                out.append("<think>\n")
            elif empty_think_when_off:
                out.append("<think>\n\n</think>\n\n")
    return "".join(out)


def render_qwen3_vl_instruct(messages: list[Message], tools: list[Tool], think: Think) -> str:
    return _qwen3_vl(messages, tools, think, thinking_default=False)


def render_qwen3_vl_thinking(messages: list[Message], tools: list[Tool], think: Think) -> str:
    return _qwen3_vl(messages, tools, think, thinking_default=True)
