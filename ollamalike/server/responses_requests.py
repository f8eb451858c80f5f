"""Translation of OpenAI Responses bodies (``POST /v1/responses``) into ``ChatRequest``.

Pure functions, no I/O. ``input`` (a string, or message / ``function_call`` /
``function_call_output`` / ``reasoning`` items) becomes native messages appended to the stored
conversation of ``previous_response_id`` (looked up by the caller, ``responses_store``);
``instructions`` is the system prompt of this request only (OpenAI does not carry it over a
chain). Function tools map to native tools; ``tool_choice`` "required" or a named function
forces a call as Chat Completions does. What the translation cannot honour (built-in tools,
files, background runs, stored item references) is a 400.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, TypedDict

from ollamalike.errors import BadRequest
from ollamalike.inference.requests import ChatMessage, ChatRequest, parse_keep_alive, parse_message
from ollamalike.jsonfields import get_bool, get_int, get_number, get_str, invalid, type_name
from ollamalike.jsontypes import JSONObject, JSONValue
from ollamalike.options import Options
from ollamalike.server.message_shapes import NativeMessage, NativeToolCall
from ollamalike.server.openai_fields import (
    context_options,
    model_name,
    named_options,
    reasoning_think,
    tool_arguments_json,
)
from ollamalike.server.openai_requests import forced_tool_format
from ollamalike.server.tool_choice import OPENAI_MODES, apply_tool_choice
from ollamalike.server.tool_ids import tool_call_id
from ollamalike.template.values import Tool, ToolFunction

_ROLES: dict[str, Literal["user", "assistant", "system"]] = {"user": "user", "assistant": "assistant", "system": "system", "developer": "system"}
_IMAGE_PREFIX = "data:image/"


class ResponseEcho(TypedDict):
    """The request's settings the ``response`` object repeats."""

    instructions: str | None
    max_output_tokens: JSONValue
    temperature: JSONValue
    top_p: JSONValue
    tool_choice: JSONValue
    tools: JSONValue
    text: JSONValue
    reasoning: JSONValue
    metadata: JSONValue
    parallel_tool_calls: JSONValue


@dataclass
class ResponsesTranslation:
    request: ChatRequest
    input_messages: list[ChatMessage]  # this request's own input (parsed), to store for a follow-up
    previous_response_id: str | None
    store: bool
    echo: ResponseEcho  # request fields the response object repeats  # request fields the response object repeats


def previous_id(body: JSONObject) -> str | None:
    value = get_str(body, "previous_response_id")
    return value or None


def _text_parts(content: JSONValue, where: str) -> tuple[str, list[str]]:
    if isinstance(content, str):
        return content, []
    if not isinstance(content, list):
        raise invalid(f"{where}.content", "a string or an array of content parts", content)
    texts: list[str] = []
    images: list[str] = []
    for j, part in enumerate(content):
        here = f"{where}.content[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if not isinstance(part, dict) or kind is None:
            raise BadRequest(f"{here}: expected a content part object with a 'type', got {type_name(part)}")
        if kind in ("input_text", "output_text", "text", "refusal"):
            text = part.get("refusal" if kind == "refusal" else "text")
            if not isinstance(text, str):
                raise invalid(f"{here}.text", "a string", text)
            texts.append(text)
        elif kind == "input_image":
            url = part.get("image_url")
            if not isinstance(url, str) or not url.startswith(_IMAGE_PREFIX) or ";base64," not in url:
                raise BadRequest(f"{here}: send the image as a base64 data URL in 'image_url' "
                                 "(image URLs and file ids are not fetched)")
            images.append(url.partition(";base64,")[2])
        else:
            raise BadRequest(f"{here}: content part type {kind!r} is not supported "
                             "(use \"input_text\", \"output_text\" or \"input_image\")")
    return "\n".join(texts), images


def _function_call(item: JSONObject, where: str) -> NativeToolCall:
    call_id, name, args = item.get("call_id"), item.get("name"), item.get("arguments", "")
    if not isinstance(call_id, str) or not call_id:
        raise invalid(f"{where}.call_id", "a string", call_id)
    if not isinstance(name, str) or not name:
        raise invalid(f"{where}.name", "a string", name)
    if not isinstance(args, (str, dict)):
        raise invalid(f"{where}.arguments", "a JSON string", args)
    return {"id": call_id, "function": {"name": name, "arguments": args}}


def _output_text(output: JSONValue, where: str) -> str:
    if isinstance(output, str):
        return output
    text, _ = _text_parts(output, where)
    return text


def _calls_of(message: Mapping[str, object]) -> list[Mapping[str, object]]:
    calls = message.get("tool_calls") if message.get("role") == "assistant" else None
    return [c for c in calls if isinstance(c, Mapping)] if isinstance(calls, list) else []


def _function_name(call: Mapping[str, object]) -> object:
    fn = call.get("function")
    return fn.get("name") if isinstance(fn, Mapping) else None


def known_calls(messages: Sequence[Mapping[str, object]]) -> dict[str, str]:
    """call_id -> function name of every assistant tool call in ``messages`` (parsed native messages)."""
    return {call_id: name for m in messages for c in _calls_of(m)
            if isinstance(call_id := c.get("id"), str) and call_id and isinstance(name := _function_name(c), str)}


def input_messages(value: JSONValue, history: Sequence[Mapping[str, object]]) -> list[ChatMessage]:
    """Native messages for ``input``; ``history`` (the previous responses) resolves call ids."""
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if not isinstance(value, list) or not value:
        raise BadRequest("'input' must be a string or a non-empty array of input items", param="input")
    calls = known_calls(history)
    out: list[NativeMessage] = []
    thinking = ""
    for i, item in enumerate(value):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            raise invalid(where, "an input item object", item)
        kind = item.get("type", "message")
        if kind == "message":
            role_name = item.get("role")
            role = _ROLES.get(role_name) if isinstance(role_name, str) else None
            if role is None:
                raise BadRequest(f"{where}.role must be \"user\", \"assistant\", \"system\" or \"developer\"")
            text, images = _text_parts(item.get("content"), where)
            msg: NativeMessage = {"role": role, "content": text}
            if images:
                msg["images"] = images
            if role == "assistant" and thinking:
                msg["thinking"], thinking = thinking, ""
            out.append(msg)
        elif kind == "function_call":
            call = _function_call(item, where)
            calls[call["id"]] = call["function"]["name"]
            last = out[-1] if out else None
            if last is not None and last["role"] == "assistant":
                last.setdefault("tool_calls", []).append(call)
            else:
                opened: NativeMessage = {"role": "assistant", "content": "", "tool_calls": [call]}
                if thinking:
                    opened["thinking"] = thinking
                out.append(opened)
                thinking = ""
        elif kind == "function_call_output":
            call_id = item.get("call_id")
            if not isinstance(call_id, str) or not call_id:
                raise invalid(f"{where}.call_id", "a string", call_id)
            if call_id not in calls:
                raise BadRequest(f"{where}: no function call found for call_id {call_id!r} (give the "
                                 "function_call item in 'input' or chain with 'previous_response_id')",
                                 param=f"{where}.call_id")
            out.append({"role": "tool", "content": _output_text(item.get("output"), where),
                        "tool_name": calls[call_id], "tool_call_id": call_id})
        elif kind == "reasoning":
            parts = [*_items(item.get("content"), f"{where}.content"),
                     *_items(item.get("summary"), f"{where}.summary")]
            thinking += "".join(piece for p in parts if isinstance(p, dict)
                                and isinstance(piece := p.get("text"), str))
        else:
            raise BadRequest(f"{where}: input item type {kind!r} is not supported (use \"message\", "
                             "\"function_call\", \"function_call_output\" or \"reasoning\")")
    return [parse_message(m, i) for i, m in enumerate(out)]


def _items(value: JSONValue, where: str) -> list[JSONValue]:
    """A reasoning item's ``content`` or ``summary`` parts (what ``list(value or [])`` gave: a string's
    characters or an object's keys, which the type check after skips)."""
    if not value:
        return []
    if isinstance(value, (list, str, dict)):
        return list(value)
    raise invalid(where, "an array", value)


def _tools(value: JSONValue) -> list[Tool] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise invalid("tools", "an array of tool objects", value)
    tools: list[Tool] = []
    for i, tool in enumerate(value):
        if not isinstance(tool, dict) or tool.get("type") != "function":
            kind = tool.get("type") if isinstance(tool, dict) else None
            raise BadRequest(f"tools[{i}]: tool type {kind!r} is not supported: only function tools "
                             "({\"type\": \"function\", \"name\": ..., \"parameters\": {...}})")
        name, params = tool.get("name"), tool.get("parameters")
        if not isinstance(name, str) or not name:
            raise BadRequest(f"tools[{i}].name is required", param=f"tools[{i}].name")
        if params is not None and not isinstance(params, dict):
            raise invalid(f"tools[{i}].parameters", "a JSON schema object", params)
        fn: ToolFunction = {"name": name, "parameters": params or {"type": "object", "properties": {}}}
        description = tool.get("description")
        if isinstance(description, str):
            fn["description"] = description
        tools.append({"type": "function", "function": fn})
    return tools or None


def _tool_choice(value: JSONValue, tools: list[Tool] | None) -> tuple[list[Tool] | None, bool]:
    if value is None:
        return apply_tool_choice("auto", tools)
    if isinstance(value, str) and value in OPENAI_MODES:
        return apply_tool_choice(OPENAI_MODES[value], tools)
    if isinstance(value, dict) and value.get("type") == "function":
        return apply_tool_choice("named", tools, value.get("name"))
    raise BadRequest("invalid 'tool_choice': use \"none\", \"auto\", \"required\" or "
                     "{\"type\": \"function\", \"name\": ...}", param="tool_choice")


def _format(text: JSONValue) -> str | JSONObject | None:
    if text is None:
        return None
    if not isinstance(text, dict):
        raise invalid("text", "an object", text)
    fmt = text.get("format")
    if fmt is None:
        return None
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return "json"
    if kind == "json_schema":
        schema = fmt.get("schema") if isinstance(fmt, dict) else None
        if not isinstance(schema, dict):
            raise BadRequest("'text.format' of type json_schema needs 'schema': {...}", param="text.format.schema")
        return schema
    raise BadRequest(f"invalid 'text.format' type {kind!r}: use \"text\", \"json_object\" or \"json_schema\"",
                     param="text.format")


def _think(reasoning: JSONValue) -> bool | str | None:
    if reasoning is None:
        return None
    if not isinstance(reasoning, dict):
        raise invalid("reasoning", "an object", reasoning)
    return reasoning_think(reasoning.get("effort"), "reasoning.effort")


def _options(body: JSONObject) -> Options:
    extras = context_options(body)
    named: dict[str, object] = {name: get_number(body, name) for name in ("temperature", "top_p")}
    named["num_predict"] = get_int(body, "max_output_tokens", minimum=1)
    return named_options(extras, named)


def parse_response_request(body: JSONObject, history: list[ChatMessage]) -> ResponsesTranslation:
    """The ``ChatRequest`` for a Responses body whose chain so far is ``history`` (native messages)."""
    model = model_name(body)
    for unsupported in ("background", "conversation"):
        if body.get(unsupported) not in (None, False):
            raise BadRequest(f"'{unsupported}' is not supported", param=unsupported)
    instructions = get_str(body, "instructions")
    new = input_messages(body.get("input"), history)
    system: list[ChatMessage] = [{"role": "system", "content": instructions}] if instructions else []
    messages = system + history + new
    tools, forced = _tool_choice(body.get("tool_choice"), _tools(body.get("tools")))
    fmt = _format(body.get("text"))
    if forced and tools:
        if fmt is not None:
            raise BadRequest("'text.format' cannot be combined with a forced 'tool_choice'")
        fmt = forced_tool_format(tools)
    request = ChatRequest(
        model=model,
        messages=messages,
        tools=tools,
        format=fmt,
        options=_options(body),
        stream=bool(get_bool(body, "stream", False)),
        keep_alive=parse_keep_alive(body.get("keep_alive")),
        think=_think(body.get("reasoning")),
    )
    echo: ResponseEcho = {
        "instructions": instructions,
        "max_output_tokens": body.get("max_output_tokens"),
        "temperature": body.get("temperature"),
        "top_p": body.get("top_p"),
        "tool_choice": body.get("tool_choice") or "auto",
        "tools": body.get("tools") or [],
        "text": body.get("text") or {"format": {"type": "text"}},
        "reasoning": body.get("reasoning") or {"effort": None, "summary": None},
        "metadata": body.get("metadata") or {},
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
    }
    return ResponsesTranslation(request=request, input_messages=new, previous_response_id=previous_id(body),
                                store=bool(get_bool(body, "store", True)), echo=echo)


def _output_call(call: dict[str, object]) -> NativeToolCall:
    fn = call["function"]
    name, arguments = (fn.get("name", ""), fn.get("arguments")) if isinstance(fn, Mapping) else ("", None)
    return {"id": tool_call_id(call, "call_"),
            "function": {"name": name if isinstance(name, str) else "", "arguments": tool_arguments_json(arguments)}}


def output_messages(text: str, thinking: str, calls: list[dict[str, object]]) -> list[ChatMessage]:
    """The assistant turn a response produced (``calls``: the chunks' tool calls), as native messages
    to chain a follow-up on."""
    msg: NativeMessage = {"role": "assistant", "content": text}
    if thinking:
        msg["thinking"] = thinking
    if calls:
        msg["tool_calls"] = [_output_call(c) for c in calls]
    return [parse_message(msg, 0)]
