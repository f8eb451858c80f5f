"""DeepSeek-style renderers: ``deepseek3.1`` (DeepSeek-V3.1: ``<｜User｜>``/``<｜Assistant｜>`` turns,
``<think>`` or ``</think>`` after the last assistant tag, calls between ``<｜tool▁calls▁begin｜>``
markers) and ``cogito`` (Deep Cogito's DeepSeek-derived format with its own default system prompt,
tools as indented JSON, and ``Enable deep thinking subroutine.`` when thinking is on).

Both start with DeepSeek's ``<｜begin▁of▁sentence｜>`` in the text, as Ollama's do. Thinking is
off unless the request turns it on (these renderers' default).
"""

from __future__ import annotations

from ollamalike.template.renderers.base import (
    Think,
    api_tool,
    arguments,
    description_of,
    indented,
    json_of,
    parameters,
    think_on,
    thinking_of,
)
from ollamalike.template.values import Message, Tool

BOS = "<｜begin▁of▁sentence｜>"
EOS = "<｜end▁of▁sentence｜>"
USER, ASSISTANT = "<｜User｜>", "<｜Assistant｜>"
CALLS_BEGIN, CALLS_END = "<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>"
CALL_BEGIN, CALL_END, SEP = "<｜tool▁call▁begin｜>", "<｜tool▁call▁end｜>", "<｜tool▁sep｜>"
OUTPUT_BEGIN, OUTPUT_END = "<｜tool▁output▁begin｜>", "<｜tool▁output▁end｜>"
OUTPUTS_BEGIN, OUTPUTS_END = "<｜tool▁outputs▁begin｜>", "<｜tool▁outputs▁end｜>"

DEEPSEEK_TOOL_USAGE = (
    "\nIMPORTANT: ALWAYS adhere to this exact format for tool use:\n"
    f"{CALLS_BEGIN}{CALL_BEGIN}tool_call_name{SEP}tool_call_arguments{CALL_END}{{{{additional_tool_calls}}}}"
    f"{CALLS_END}\n\n"
    "Where:\n\n"
    "- `tool_call_name` must be an exact match to one of the available tools\n"
    "- `tool_call_arguments` must be valid JSON that strictly follows the tool's Parameters Schema\n"
    "- For multiple tool calls, chain them directly without separators or spaces\n"
)
COGITO_DEFAULT_SYSTEM = ("You are Cogito, an AI assistant created by Deep Cogito, which is an AI research lab "
                         "based in San Francisco.")


def render_deepseek31(messages: list[Message], tools: list[Tool], think: Think) -> str:
    thinking = think_on(think)
    out = [BOS, "\n\n".join(m["content"] for m in messages if m["role"] == "system")]
    if tools:
        out.append("\n\n## Tools\nYou have access to the following tools:\n")
        for t in tools:
            out.append("\n### " + t["function"]["name"] + "\nDescription: " + description_of(t)
                       + "\n\nParameters: " + json_of(parameters(t)) + "\n")
        out.append(DEEPSEEK_TOOL_USAGE)
    after_tool = after_user = False
    last_user = next((i for i in range(len(messages) - 1, -1, -1) if messages[i]["role"] == "user"), -1)
    for i, m in enumerate(messages):
        if m["role"] == "user":
            after_tool, after_user = False, True
            out.append(USER + m["content"])
        elif m["role"] == "assistant" and m["tool_calls"]:
            if after_user:
                out.append(ASSISTANT + "</think>")
            after_tool = after_user = False
            out.append(m["content"] + CALLS_BEGIN)
            for call in m["tool_calls"]:
                out.append(CALL_BEGIN + call["function"]["name"] + SEP + json_of(arguments(call)) + CALL_END)
            out.append(CALLS_END + EOS)
        elif m["role"] == "assistant":
            if after_user:
                # Only the turn after the last user message opens a think block (when it has thinking).
                current = i > last_user
                out.append(ASSISTANT + ("<think>" if thinking_of(m) and thinking and current else "</think>"))
            after_user = False
            content = m["content"]
            if after_tool:
                after_tool = False
            elif "</think>" in content:
                content = content.split("</think>", 1)[1]  # earlier reasoning is not shown again
            out.append(content + EOS)
        elif m["role"] == "tool":
            after_user, after_tool = False, True
            out.append(OUTPUT_BEGIN + m["content"] + OUTPUT_END)
    if after_user and not after_tool:
        out.append(ASSISTANT + ("<think>" if thinking else "</think>"))
    return "".join(out)


def _cogito_system(system: str, thinking: bool, tools: list[Tool]) -> str:
    if thinking:
        text = "Enable deep thinking subroutine.\n\n" + COGITO_DEFAULT_SYSTEM
        if system:
            text += "\n\n" + system + "\n\n"
    else:
        text = COGITO_DEFAULT_SYSTEM + ("\n\n" + system if system else "")
    if tools:
        text += "\nYou have the following functions available:\n"
        for t in tools:
            text += "```json\n" + indented(json_of(api_tool(t))) + "\n```\n"
    return text


def render_cogito(messages: list[Message], tools: list[Tool], think: Think) -> str:
    thinking = think_on(think)
    system = messages[0]["content"] if messages and messages[0]["role"] == "system" else ""
    conversation = messages[1:] if messages and messages[0]["role"] == "system" else messages
    out = [BOS + _cogito_system(system, thinking, tools)]
    outputs_open = last_user = False
    for i, m in enumerate(conversation):
        if m["role"] == "user":
            last_user = True
            out.append(USER + m["content"] + ASSISTANT)
        elif m["role"] == "assistant":
            last_user = False
            if m["tool_calls"]:
                out.append(m["content"] + CALLS_BEGIN)
                calls = [CALL_BEGIN + "function" + SEP + c["function"]["name"]
                         + "\n```json\n" + json_of(arguments(c)) + "\n```" + CALL_END for c in m["tool_calls"]]
                out.append("\n".join(calls) + CALLS_END + EOS)
            else:
                out.append(m["content"] + EOS)
        elif m["role"] == "tool":
            last_user = False
            if not outputs_open:
                out.append(OUTPUTS_BEGIN)
                outputs_open = True
            out.append(OUTPUT_BEGIN + m["content"] + OUTPUT_END)
            if i + 1 < len(conversation) and conversation[i + 1]["role"] == "tool":
                out.append("\n")
            else:
                out.append(OUTPUTS_END)
                outputs_open = False
    if outputs_open:
        out.append(OUTPUTS_END)
    if not last_user:
        out.append(ASSISTANT)
    if thinking:
        out.append("<think>\n")
    return "".join(out)
