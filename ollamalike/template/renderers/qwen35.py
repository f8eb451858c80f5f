"""Qwen 3.5 and 3.8 renderers (``qwen3.5``, ``ornith``, ``qwen3.8``): ChatML, tools as JSON lines in ``<tools>``
with Qwen3-Coder's XML call instructions, calls written back as ``<function=…><parameter=…>``, the
system prompt after the tools, and every message's text trimmed.

Thinking is on unless the request turns it off; with it off the answer opens with an empty
``<think>`` block. ``qwen3.5`` writes reasoning back only for the turns after the last real user
query (and takes it from inline ``<think>…</think>`` when the message has no ``thinking``),
``ornith`` for every assistant turn; ``qwen3.8`` writes a think block for every assistant turn, folds all system and ``developer``
messages into one leading system turn, states the reasoning effort of a level in the system
turn (``low``, or ``xhigh`` for unset/``high``/``max``), and refuses a chat without a user query.
"""

from __future__ import annotations

import logging

from ollamalike.errors import BadRequest
from ollamalike.template.renderers.base import IM_END, IM_START, Think, api_tool, json_of, spaced, thinking_of
from ollamalike.template.renderers.qwen import CODER_CALL_INSTRUCTIONS, coder_argument, tool_results
from ollamalike.template.values import Message, Tool

log = logging.getLogger("ollamalike.template")

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
XHIGH = ("Reasoning effort is set to xhigh. Please think carefully through the task, validate key assumptions, "
         "consider plausible alternatives, and prioritize correctness, consistency, and clarity in the final answer.")
LOW = ("Reasoning effort is set to low. Keep your thinking brief and focused, moving directly to the conclusion "
       "without unnecessary elaboration.")


def _is_tool_response(text: str) -> bool:
    text = text.strip()
    return text.startswith("<tool_response>") and text.endswith("</tool_response>")


def _split_reasoning(content: str, thinking: str, render_block: bool, extract_tagged: bool) -> tuple[str, str]:
    """(reasoning, the rest of the content): the message's ``thinking`` when a block is written, else
    (3.5 only) what an inline ``…</think>`` holds."""
    if render_block and thinking:
        return thinking.strip(), content
    reasoning = ""
    if extract_tagged and THINK_CLOSE in content:
        before, after = content.split(THINK_CLOSE, 1)
        reasoning = before[before.rindex(THINK_OPEN) + len(THINK_OPEN):] if THINK_OPEN in before else before
        content = after.lstrip("\n")
    return reasoning.strip(), content


def _effort(think: Think) -> str:
    if think is None:
        return XHIGH
    if think is False:
        return ""
    level = "medium" if think is True else think
    if level == "low":
        return LOW
    return XHIGH if level in ("high", "max") else ""


def _fold_instructions(messages: list[Message]) -> list[Message]:
    """3.8 takes one leading system turn and no developer role: every instruction, in order, goes there."""
    instructions = [m for m in messages if m["role"] in ("system", "developer")]
    for m in instructions:
        if m.get("images"):
            raise BadRequest(f"{m['role']} message cannot contain images")
    if not instructions or (len(instructions) == 1 and messages[0]["role"] == "system"):
        return messages
    text = "\n\n".join(m["content"].strip() for m in instructions if m["content"].strip())
    folded: Message = {"role": "system", "content": text, "tool_calls": []}
    return [folded, *(m for m in messages if m["role"] not in ("system", "developer"))]


def _qwen35(messages: list[Message], tools: list[Tool], think: Think, v38: bool, every_block: bool = False) -> str:
    if v38:
        messages = _fold_instructions(messages)
        if not any(m["role"] == "user" and not _is_tool_response(m["content"]) for m in messages):
            raise BadRequest("no user query found in messages" if messages else "no messages provided")
    thinking = True if think is None else think is not False
    effort = _effort(think) if v38 else ""
    first_system = messages[0]["content"].strip() if messages and messages[0]["role"] == "system" else None
    out: list[str] = []
    if tools:
        out.append(IM_START + "system\n" + (effort + "\n\n" if effort else ""))
        out.append("# Tools\n\nYou have access to the following functions:\n\n<tools>")
        out.extend("\n" + spaced(json_of(api_tool(t))) for t in tools)
        out.append("\n</tools>" + CODER_CALL_INSTRUCTIONS)
        out.append(("\n\n" + first_system if first_system else "") + IM_END + "\n")
    elif first_system is not None:
        if not v38 or first_system or effort:
            sep = "\n\n" if effort and first_system else ""
            out.append(IM_START + "system\n" + effort + sep + first_system + IM_END + "\n")
    elif effort:
        out.append(IM_START + "system\n" + effort + IM_END + "\n")
    last_query = next((i for i in range(len(messages) - 1, -1, -1)
                       if messages[i]["role"] == "user" and not _is_tool_response(messages[i]["content"])),
                      len(messages) - 1)
    for i, m in enumerate(messages):
        role, content = m["role"], m["content"].strip()
        last = i == len(messages) - 1
        prefill = last and role == "assistant"
        if role == "user" or (role == "system" and i != 0):
            if v38 and role == "system":
                log.warning("qwen3.8: a system message that is not the first")
            out.append(IM_START + role + "\n" + content + IM_END + "\n")
        elif role == "assistant":
            block = every_block or v38 or (thinking and i > last_query)
            reasoning, content = _split_reasoning(content, thinking_of(m), block, extract_tagged=not v38)
            if block:
                out.append(IM_START + "assistant\n" + THINK_OPEN + "\n" + reasoning + "\n" + THINK_CLOSE + "\n\n")
            else:
                out.append(IM_START + "assistant\n")
            out.append(content)
            for j, call in enumerate(m["tool_calls"]):
                out.append(("\n\n" if content.strip() else "") if j == 0 else "\n")
                out.append("<tool_call>\n<function=" + call["function"]["name"] + ">\n")
                for name, value in call["function"]["arguments"].items():
                    out.append("<parameter=" + name + ">\n" + coder_argument(value) + "\n</parameter>\n")
                out.append("</function>\n</tool_call>")
            if not prefill:
                out.append(IM_END + "\n")
        elif role == "tool":
            tool_results(out, messages, i, content)
        elif v38 and role != "system":
            log.warning("qwen3.8: unexpected message role %r", role)
            out.append(IM_START + role + "\n" + content + IM_END + "\n")
        if last and not prefill:
            out.append(IM_START + "assistant\n" + ("<think>\n" if thinking else "<think>\n\n</think>\n\n"))
    return "".join(out)


def render_qwen35(messages: list[Message], tools: list[Tool], think: Think) -> str:
    return _qwen35(messages, tools, think, v38=False)


def render_ornith(messages: list[Message], tools: list[Tool], think: Think) -> str:
    """Qwen 3.5's format with a think block for every assistant turn (Ollama's ``ornith``)."""
    return _qwen35(messages, tools, think, v38=False, every_block=True)


def render_qwen38(messages: list[Message], tools: list[Tool], think: Think) -> str:
    return _qwen35(messages, tools, think, v38=True)
