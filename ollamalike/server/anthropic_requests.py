"""Translation of Anthropic Messages bodies (``/v1/messages``, ``/count_tokens``) into ``ChatRequest``.

Pure functions, no I/O. Content blocks become the native message fields: ``text`` -> content,
``image`` (base64) -> images, an assistant's ``tool_use`` -> ``tool_calls`` (its id kept),
``thinking`` -> thinking, ``output_config.format`` -> the JSON-schema format, and each ``tool_result`` -> a ``tool`` message naming the tool its
``tool_use_id`` called. ``tool_choice`` any/tool forces a call by sampling under the same JSON
schema Chat Completions uses. Block types it cannot honour are a 400, never dropped silently;
unknown top-level fields (Claude Code sends several) are ignored, as Anthropic's own API does.
"""

from __future__ import annotations

import base64
import binascii

from ollamalike.errors import BadRequest
from ollamalike.inference.requests import ChatRequest, parse_keep_alive, parse_message
from ollamalike.jsonfields import get_bool, get_int, get_number, invalid, type_name
from ollamalike.jsontypes import JSONObject, JSONValue
from ollamalike.options import Options
from ollamalike.server.message_shapes import NativeMessage, NativeToolCall
from ollamalike.server.openai_fields import context_options, model_name, named_options
from ollamalike.server.openai_requests import forced_tool_format
from ollamalike.server.tool_choice import ANTHROPIC_MODES, apply_tool_choice
from ollamalike.template.values import Tool, ToolFunction

IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
# Blocks that carry nothing a local model can use, echoed back by clients: accepted and skipped.
_SKIPPED_BLOCKS = ("redacted_thinking",)


def _text_of(block: JSONObject, where: str) -> str:
    text = block.get("text")
    if not isinstance(text, str):
        raise invalid(f"{where}.text", "a string", text)
    return text


def _image(block: JSONObject, where: str) -> str:
    source = block.get("source")
    if not isinstance(source, dict):
        raise invalid(f"{where}.source", "an object", source)
    kind = source.get("type")
    if kind == "url":
        raise BadRequest(f"{where}: image URLs are not fetched; send the image as a base64 source")
    if kind != "base64":
        raise BadRequest(f"{where}.source.type must be \"base64\", got {kind!r}")
    media = source.get("media_type")
    if media not in IMAGE_TYPES:
        raise BadRequest(f"{where}.source.media_type must be one of {', '.join(IMAGE_TYPES)}, got {media!r}")
    data = source.get("data")
    if not isinstance(data, str) or not data:
        raise invalid(f"{where}.source.data", "a base64 string", data)
    try:
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(f"{where}.source.data is not valid base64") from None
    return data


def _blocks(content: JSONValue, where: str) -> list[JSONObject]:
    """Content as a list of block objects (a plain string is one text block)."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise invalid(f"{where}.content", "a string or an array of content blocks", content)
    blocks: list[JSONObject] = []
    for j, block in enumerate(content):
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise BadRequest(f"{where}.content[{j}]: expected a content block object with a 'type', "
                             f"got {type_name(block)}")
        blocks.append(block)
    return blocks


def _tool_result(block: JSONObject, where: str, known: dict[str, str]) -> NativeMessage:
    call_id = block.get("tool_use_id")
    if not isinstance(call_id, str) or not call_id:
        raise invalid(f"{where}.tool_use_id", "a string", call_id)
    if call_id not in known:
        raise BadRequest(f"{where}: unexpected tool_use_id {call_id!r} in tool_result: each tool_result must "
                         "answer a tool_use block of the previous assistant message")
    texts: list[str] = []
    images: list[str] = []
    raw = block.get("content")
    for j, part in enumerate(_blocks(raw, where) if raw is not None else []):
        here = f"{where}.content[{j}]"
        if part["type"] == "text":
            texts.append(_text_of(part, here))
        elif part["type"] == "image":
            images.append(_image(part, here))
        else:
            raise BadRequest(f"{here}: block type {part['type']!r} is not allowed in a tool_result "
                             "(use \"text\" or \"image\")")
    is_error = block.get("is_error")
    if is_error is not None and not isinstance(is_error, bool):
        raise invalid(f"{where}.is_error", "a boolean", is_error)
    text = "\n".join(texts)
    if is_error:
        # The templates have no error flag for a tool message: say it in the text the model reads.
        text = f"Error: {text}" if text else "Error"
    msg: NativeMessage = {"role": "tool", "content": text, "tool_name": known[call_id], "tool_call_id": call_id}
    if images:
        msg["images"] = images
    return msg


def _user(content: JSONValue, where: str, known: dict[str, str]) -> list[NativeMessage]:
    """A user turn: its tool results (each a tool message) and its text and images, in order."""
    out: list[NativeMessage] = []
    texts: list[str] = []
    images: list[str] = []

    def flush() -> None:
        if texts or images:
            msg: NativeMessage = {"role": "user", "content": "\n".join(texts)}
            if images:
                msg["images"] = list(images)
            out.append(msg)
            texts.clear()
            images.clear()

    for j, block in enumerate(_blocks(content, where)):
        here = f"{where}.content[{j}]"
        kind = block["type"]
        if kind == "text":
            texts.append(_text_of(block, here))
        elif kind == "image":
            images.append(_image(block, here))
        elif kind == "tool_result":
            flush()
            out.append(_tool_result(block, here, known))
        elif kind in _SKIPPED_BLOCKS:
            continue
        else:
            raise BadRequest(f"{here}: block type {kind!r} is not supported in a user message "
                             "(use \"text\", \"image\" or \"tool_result\")")
    flush()
    return out or [{"role": "user", "content": ""}]


def _assistant(content: JSONValue, where: str) -> NativeMessage:
    texts: list[str] = []
    thinking: list[str] = []
    calls: list[NativeToolCall] = []
    for j, block in enumerate(_blocks(content, where)):
        here = f"{where}.content[{j}]"
        kind = block["type"]
        if kind == "text":
            texts.append(_text_of(block, here))
        elif kind == "thinking":
            value = block.get("thinking")
            if not isinstance(value, str):
                raise invalid(f"{here}.thinking", "a string", value)
            thinking.append(value)
        elif kind == "tool_use":
            call_id, name, args = block.get("id"), block.get("name"), block.get("input", {})
            if not isinstance(call_id, str) or not call_id:
                raise invalid(f"{here}.id", "a string", call_id)
            if not isinstance(name, str) or not name:
                raise invalid(f"{here}.name", "a string", name)
            if not isinstance(args, dict):
                raise invalid(f"{here}.input", "an object", args)
            calls.append({"id": call_id, "function": {"name": name, "arguments": args}})
        elif kind in _SKIPPED_BLOCKS:
            continue
        else:
            raise BadRequest(f"{here}: block type {kind!r} is not supported in an assistant message "
                             "(use \"text\", \"thinking\" or \"tool_use\")")
    msg: NativeMessage = {"role": "assistant", "content": "".join(texts)}
    if thinking:
        msg["thinking"] = "".join(thinking)
    if calls:
        msg["tool_calls"] = calls
    return msg


def _messages(value: JSONValue) -> list[NativeMessage]:
    if not isinstance(value, list) or not value:
        raise BadRequest("'messages' must be a non-empty array of message objects", param="messages")
    out: list[NativeMessage] = []
    known: dict[str, str] = {}  # tool_use ids of the previous assistant message -> tool names
    for i, msg in enumerate(value):
        where = f"messages[{i}]"
        if not isinstance(msg, dict):
            raise invalid(where, "a message object", msg)
        role, content = msg.get("role"), msg.get("content")
        if content is None:
            raise BadRequest(f"{where}.content is required", param=f"{where}.content")
        if role == "user":
            out.extend(_user(content, where, known))
            known = {}
        elif role == "assistant":
            converted = _assistant(content, where)
            known = {c["id"]: c["function"]["name"] for c in converted.get("tool_calls", [])}
            out.append(converted)
        else:
            raise BadRequest(f"{where}.role must be \"user\" or \"assistant\", got {role!r} "
                             "(the system prompt goes in the top-level 'system' field)")
    return out


def _system(value: JSONValue) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        raise invalid("system", "a string or an array of text blocks", value)
    texts = []
    for j, block in enumerate(value):
        if not isinstance(block, dict) or block.get("type") != "text":
            raise BadRequest(f"system[{j}]: only text blocks are allowed in 'system'")
        texts.append(_text_of(block, f"system[{j}]"))
    return "\n\n".join(texts)


def _tools(value: JSONValue) -> list[Tool] | None:
    """Anthropic's custom tools as native (OpenAI-shaped) function tools."""
    if value is None:
        return None
    if not isinstance(value, list):
        raise invalid("tools", "an array of tool objects", value)
    tools: list[Tool] = []
    for i, tool in enumerate(value):
        if not isinstance(tool, dict):
            raise invalid(f"tools[{i}]", "a tool object", tool)
        kind = tool.get("type")
        if kind not in (None, "custom"):
            raise BadRequest(f"tools[{i}]: tool type {kind!r} is not supported (Anthropic's server and "
                             "built-in tools run on Anthropic's side); give a custom tool with an input_schema")
        name = tool.get("name")
        if not isinstance(name, str) or not name:
            raise BadRequest(f"tools[{i}].name is required", param=f"tools[{i}].name")
        schema = tool.get("input_schema")
        if not isinstance(schema, dict):
            raise invalid(f"tools[{i}].input_schema", "a JSON schema object", schema)
        fn: ToolFunction = {"name": name, "parameters": schema}
        description = tool.get("description")
        if description is not None:
            if not isinstance(description, str):
                raise invalid(f"tools[{i}].description", "a string", description)
            fn["description"] = description
        tools.append({"type": "function", "function": fn})
    return tools or None


def _tool_choice(value: JSONValue, tools: list[Tool] | None) -> tuple[list[Tool] | None, bool]:
    """(tools to offer, whether a call is forced)."""
    if value is None:
        return tools, False
    if not isinstance(value, dict):
        raise invalid("tool_choice", "an object such as {\"type\": \"auto\"}", value)
    kind = value.get("type")
    if isinstance(kind, str) and kind in ANTHROPIC_MODES:
        return apply_tool_choice(ANTHROPIC_MODES[kind], tools, value.get("name"),
                                 required_error="tool_choice \"any\" needs 'tools'",
                                 named_error="tool_choice names tool {name!r}, which is not among 'tools'")
    raise BadRequest(f"invalid tool_choice type {kind!r}: use \"auto\", \"any\", \"tool\" or \"none\"",
                     param="tool_choice")


def _think(value: JSONValue) -> bool | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise invalid("thinking", "an object", value)
    kind = value.get("type")
    if kind == "disabled":
        return None
    if kind == "adaptive":
        return True
    if kind == "enabled":
        get_int(value, "budget_tokens", minimum=1)
        if value.get("budget_tokens") is None:
            raise BadRequest("thinking.budget_tokens is required when thinking is enabled")
        return True
    raise BadRequest(f"invalid thinking type {kind!r}: use \"enabled\", \"adaptive\" or \"disabled\"")


def _stop_sequences(value: JSONValue) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise invalid("stop_sequences", "an array of strings", value)
    return [s for s in value if isinstance(s, str) and s] or None


def _options(body: JSONObject, max_tokens: int | None) -> Options:
    # The request-level extras (options, num_ctx) first; Anthropic's named fields win over them.
    extras = context_options(body)
    named: dict[str, object] = {name: get_number(body, name) for name in ("temperature", "top_p")}
    named["top_k"] = get_int(body, "top_k", minimum=0)
    named["num_predict"] = max_tokens
    named["stop"] = _stop_sequences(body.get("stop_sequences"))
    return named_options(extras, named)


def _output_format(value: JSONValue, forced: bool) -> JSONObject | None:
    """``output_config.format`` (structured outputs: ``{"type": "json_schema", "schema": {...}}``)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise invalid("output_config", "an object", value)
    fmt = value.get("format")
    if fmt is None:
        return None
    schema = fmt.get("schema") if isinstance(fmt, dict) else None
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema" or not isinstance(schema, dict):
        raise BadRequest("output_config.format must be {\"type\": \"json_schema\", \"schema\": {...}}",
                         param="output_config.format")
    if forced:
        raise BadRequest("output_config.format cannot be combined with a forced tool_choice")
    return schema


def parse_messages(body: JSONObject, count_only: bool = False) -> ChatRequest:
    """The ``ChatRequest`` for a Messages body (``count_only``: a count_tokens body, no max_tokens)."""
    model = model_name(body)
    max_tokens = None
    if not count_only:
        if body.get("max_tokens") is None:
            raise BadRequest("max_tokens: field required", param="max_tokens")
        max_tokens = get_int(body, "max_tokens", minimum=1)
    metadata = body.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise invalid("metadata", "an object", metadata)
    messages = [parse_message(m, i) for i, m in enumerate(_messages(body.get("messages")))]
    system = _system(body.get("system"))
    if system:
        messages.insert(0, {"role": "system", "content": system})
    tools, forced = _tool_choice(body.get("tool_choice"), _tools(body.get("tools")))
    return ChatRequest(
        model=model,
        messages=messages,
        tools=tools,
        format=forced_tool_format(tools) if forced and tools else _output_format(body.get("output_config"), forced),
        options=_options(body, max_tokens),
        stream=False if count_only else bool(get_bool(body, "stream", False)),
        keep_alive=parse_keep_alive(body.get("keep_alive")),
        think=_think(body.get("thinking")),
    )
