"""The streaming tool-call parser (template.tools.ToolParser, inference.stream.ToolStream).

Recorded outputs of each family's format: what the text streams as, whatever the chunking, and
that the parser streams content at once, holding back only a possible partial tag.
"""

from __future__ import annotations

import json
import re
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ollamalike.inference.stream import ToolStream, new_call_id
from ollamalike.template.tools import (
    KNOWN_TAGS,
    Tag,
    ToolParser,
    jinja_tag,
    parse_tool_text,
    tags_for,
)

NAMES = {"get_weather", "get_time"}
W = '{"name": "get_weather", "arguments": {"city": "Paris"}}'
T = '{"name": "get_time", "arguments": {"city": "Tokyo"}}'
PARIS = ("get_weather", {"city": "Paris"})
TOKYO = ("get_time", {"city": "Tokyo"})

# Outputs as models of each family write them (Qwen 2.5 Coder 0.5B's are recorded from the real
# model with its own chat template and tools block, greedy).
QWEN_REAL_FENCED = '```json\n{\n    "name": "get_weather",\n    "arguments": {\n        "city": "Paris"\n    }\n}\n```'
QWEN_REAL_ALICE = '```json\n{\n    "name": "Alice",\n    "age": 25\n}\n```'
QWEN_REAL_PROSE = ("Paris is a beautiful city with warm temperatures and sunny skies. The weather in Paris today is "
                   "clear and pleasant, with a mild breeze blowing through the air.")

# (id, output, offered names or None for any, content, calls as (name, arguments))
CASES: list[tuple[str, str, set[str] | None, str, list[tuple[str, dict[str, Any]]]]] = [
    ("qwen hermes call", f"<tool_call>\n{W}\n</tool_call>", NAMES, "", [PARIS]),
    ("qwen real fenced json", QWEN_REAL_FENCED, NAMES, "", [PARIS]),
    ("qwen real structured answer", QWEN_REAL_ALICE, NAMES, QWEN_REAL_ALICE, []),
    ("qwen real prose", QWEN_REAL_PROSE, NAMES, QWEN_REAL_PROSE, []),
    ("text before", f"Sure, let me check.\n<tool_call>\n{W}\n</tool_call>", NAMES, "Sure, let me check.\n", [PARIS]),
    ("text after", f"<tool_call>\n{W}\n</tool_call>\nI asked for the weather.", NAMES,
     "I asked for the weather.", [PARIS]),
    ("text before and after", f"Checking.\n<tool_call>{W}</tool_call>\n\nDone.", NAMES, "Checking.\nDone.", [PARIS]),
    ("two calls", f"<tool_call>\n{W}\n</tool_call>\n<tool_call>\n{T}\n</tool_call>", NAMES, "", [PARIS, TOKYO]),
    ("two objects in one tag", f"<tool_call>\n{W}\n{T}\n</tool_call>", NAMES, "", [PARIS, TOKYO]),
    ("tag that is not a call", "Qwen writes <tool_call> before a call.", NAMES,
     "Qwen writes <tool_call> before a call.", []),
    ("tag then prose then a call", f"Use <tool_call> tags: <tool_call>{W}</tool_call>", NAMES,
     "Use <tool_call> tags: ", [PARIS]),
    ("partial tag at the end", "I will call <tool_ca", NAMES, "I will call <tool_ca", []),
    ("unclosed call at the end", f"<tool_call>\n{W}", NAMES, "", [PARIS]),
    ("half-closed call at the end", f"<tool_call>\n{W}\n</tool_", NAMES, "", [PARIS]),
    ("unfinished json at the end", '<tool_call>\n{"name": "get_weather", "argu', NAMES,
     '<tool_call>\n{"name": "get_weather", "argu', []),
    ("malformed json", '<tool_call>{"name": "get_weather", "arguments": {"city": </tool_call>', NAMES,
     '<tool_call>{"name": "get_weather", "arguments": {"city": </tool_call>', []),
    ("not offered name in a tag", '<tool_call>{"name": "delete_all", "arguments": {}}</tool_call>', NAMES,
     '<tool_call>{"name": "delete_all", "arguments": {}}</tool_call>', []),
    ("not offered name, any name allowed", '<tool_call>{"name": "delete_all", "arguments": {}}</tool_call>', None,
     "", [("delete_all", {})]),
    ("structured answer with a name key", '{"name": "Alice", "age": 25}', NAMES, '{"name": "Alice", "age": 25}', []),
    ("structured answer with leading space", '  {"name": "Alice", "age": 25}', NAMES,
     '  {"name": "Alice", "age": 25}', []),
    ("bare json at the start", W, NAMES, "", [PARIS]),
    ("bare json after text is content", f"Here: {W}", NAMES, f"Here: {W}", []),
    ("json that is not a call", '{"answer": 42}', NAMES, '{"answer": 42}', []),
    ("a list that is not calls", "[1] First point.", NAMES, "[1] First point.", []),
    ("markdown link", "[Paris](https://en.wikipedia.org/wiki/Paris) is nice.", NAMES,
     "[Paris](https://en.wikipedia.org/wiki/Paris) is nice.", []),
    ("code fence that is not json", "```python\nprint(1)\n```", NAMES, "```python\nprint(1)\n```", []),
    ("mistral list", f"[TOOL_CALLS] [{W}, {T}]", NAMES, "", [PARIS, TOKYO]),
    ("mistral after text", f"Let me look.[TOOL_CALLS] [{W}]", NAMES, "Let me look.", [PARIS]),
    ("mistral name[ARGS]", '[TOOL_CALLS]get_weather[ARGS]{"city": "Paris"}[TOOL_CALLS]get_time[ARGS]{"city": "Tokyo"}',
     NAMES, "", [PARIS, TOKYO]),
    ("mistral name[ARGS] not offered", '[TOOL_CALLS]rm[ARGS]{"path": "/"}', NAMES, '[TOOL_CALLS]rm[ARGS]{"path": "/"}', []),
    ("llama 3.1 python_tag", '<|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris"}}', NAMES,
     "", [PARIS]),
    ("llama 3.2 bare parameters", '{"name": "get_weather", "parameters": {"city": "Paris"}}', NAMES, "", [PARIS]),
    ("llama semicolons", f"<|python_tag|>{W}; {T}", NAMES, "", [PARIS, TOKYO]),
    ("command-r action", 'Action: ```json\n[\n    {\n        "tool_name": "get_weather",\n'
                         '        "parameters": {\n            "city": "Paris"\n        }\n    }\n]\n```', NAMES,
     "", [PARIS]),
    ("command-r directly-answer", 'Action: ```json\n[{"tool_name": "directly-answer", "parameters": {}}]\n```', NAMES,
     'Action: ```json\n[{"tool_name": "directly-answer", "parameters": {}}]\n```', []),
    ("firefunction functools", f"functools[{W}]", NAMES, "", [PARIS]),
    ("openai shape", '[{"type": "function", "function": {"name": "get_weather", "arguments": "{\\"city\\": \\"Paris\\"}"}}]',
     NAMES, "", [PARIS]),
    ("string with braces and tags", '<tool_call>{"name": "get_weather", "arguments": {"city": "P}a<tool_call>r\\"is"}}'
     "</tool_call>", NAMES, "", [("get_weather", {"city": 'P}a<tool_call>r"is'})]),
    ("raw newline in an argument", '<tool_call>{"name": "get_weather", "arguments": {"city": "Par\nis"}}</tool_call>',
     NAMES, "", [("get_weather", {"city": "Par\nis"})]),
    ("plain text", "The weather in Paris is sunny.", NAMES, "The weather in Paris is sunny.", []),
    ("only whitespace", "  \n", NAMES, "  \n", []),
    ("empty", "", NAMES, "", []),
]
IDS = [c[0] for c in CASES]


def run(text: str, chunks: list[str] | None = None, names: set[str] | None = NAMES,
        tags: tuple[Tag, ...] = KNOWN_TAGS) -> tuple[str, list[tuple[str, dict[str, Any]]], list[int]]:
    """(content, calls as (name, arguments), call indexes) of ``text`` fed in ``chunks``."""
    parser = ToolParser(tags, names)
    content: list[str] = []
    calls: list[dict[str, Any]] = []
    for chunk in chunks if chunks is not None else [text]:
        c, k = parser.feed(chunk)
        content.append(c)
        calls += k
    c, k = parser.flush()
    content.append(c)
    calls += k
    assert "".join(chunks if chunks is not None else [text]) == text
    return ("".join(content), [(k["function"]["name"], k["function"]["arguments"]) for k in calls],
            [k["function"]["index"] for k in calls])


@pytest.mark.parametrize("name,text,names,content,calls", CASES, ids=IDS)
def test_whole_output(name: str, text: str, names: set[str] | None, content: str,
                      calls: list[tuple[str, dict[str, Any]]]) -> None:
    got_content, got_calls, indexes = run(text, names=names)
    assert (got_content, got_calls) == (content, calls)
    assert indexes == list(range(len(calls)))


@pytest.mark.parametrize("name,text,names,content,calls", CASES, ids=IDS)
def test_every_chunk_boundary(name: str, text: str, names: set[str] | None, content: str,
                              calls: list[tuple[str, dict[str, Any]]]) -> None:
    # Split in two at every position, and one character at a time: a tag or JSON split anywhere.
    for at in range(1, len(text)):
        assert run(text, [text[:at], text[at:]], names)[:2] == (content, calls), f"split at {at}"
    assert run(text, list(text), names)[:2] == (content, calls)


def test_content_streams_at_once_and_only_a_partial_tag_is_held() -> None:
    p = ToolParser(KNOWN_TAGS, NAMES)
    assert p.feed("Sure, let me check.\n<tool_") == ("Sure, let me check.\n", [])
    assert p.feed("call>\n") == ("", [])
    # The call comes out as soon as its JSON closes, before the closing tag is generated.
    content, calls = p.feed(W)
    assert content == "" and [c["function"]["name"] for c in calls] == ["get_weather"]
    assert p.feed("\n</tool_call>\n") == ("", [])
    assert p.feed("It is") == ("It is", [])
    assert p.feed(" sunny. <") == (" sunny. ", [])
    assert p.feed("b>") == ("<b>", [])
    assert p.flush() == ("", [])


def test_prose_is_never_held_for_long() -> None:
    # Text at the start that cannot be JSON is released at its first impossible character.
    p = ToolParser(KNOWN_TAGS, NAMES)
    assert p.feed("[") == ("", [])
    assert p.feed("Paris") == ("[Paris", [])
    p = ToolParser(KNOWN_TAGS, NAMES)
    assert p.feed("<tool_call>{") == ("", [])
    assert p.feed("hello") == ("<tool_call>{hello", [])


# -- recorded outputs in random chunks ----------------------------------------------------------------
RECORDED = [c[1] for c in CASES] + [
    f"Let me check both.\n<tool_call>\n{W}\n</tool_call>\n<tool_call>\n{T}\n</tool_call>\nDone: <b>ok</b>",
    f"[TOOL_CALLS] [{W}]\n\nThe [TOOL_CALLS] tag was used.",
    f"```json\n{W}\n```\n",
]


@settings(max_examples=300, deadline=2000, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(RECORDED), st.lists(st.integers(min_value=1, max_value=12), min_size=1, max_size=80),
       st.sampled_from([NAMES, None, {"get_time"}]))
def test_random_chunks_give_what_one_chunk_gives(text: str, sizes: list[int], names: set[str] | None) -> None:
    chunks, pos, i = [], 0, 0
    while pos < len(text):
        size = sizes[i % len(sizes)]
        chunks.append(text[pos:pos + size])
        pos, i = pos + size, i + 1
    assert run(text, chunks, names) == run(text, None, names)


# -- tags from the model's template ------------------------------------------------------------------
def test_tag_from_a_go_template() -> None:
    tmpl = ('{{ range .Messages }}{{ .Content }}{{ range .ToolCalls }}<<CALL>>{"name": "{{ .Function.Name }}", '
            '"arguments": {{ .Function.Arguments }}}{{ end }}{{ end }}')
    model = SimpleNamespace(template=tmpl, system="", messages=[], info=SimpleNamespace(chat_template=None))
    tags = tags_for(model)
    assert tags[0] == Tag("<<CALL>>")
    text = f"Checking. <<CALL>>{W}"
    assert parse_tool_text(text, tags, NAMES) == ("Checking. ", [
        {"function": {"index": 0, "name": "get_weather", "arguments": {"city": "Paris"}}}])
    assert parse_tool_text(text, KNOWN_TAGS, NAMES) == (text, [])  # without the template: content


def test_tag_from_a_jinja_template(qwen_gguf: Any) -> None:
    from ollamalike.gguf_info import read_gguf_info

    assert jinja_tag(read_gguf_info(qwen_gguf).chat_template) == "<tool_call>"
    assert jinja_tag("{{ '[TOOL_CALLS][' }}{% for c in message.tool_calls %}...") == "[TOOL_CALLS]"
    custom = "{% for c in message.tool_calls %}<|tool_call_begin|>{{ c | tojson }}<|tool_call_end|>{% endfor %}"
    assert jinja_tag(custom) == "<|tool_call_begin|>"
    assert jinja_tag("{{ messages }}") is None
    model = SimpleNamespace(template=None, system="", messages=[], info=SimpleNamespace(chat_template=custom))
    tags = tags_for(model)
    assert tags[0].open == "<|tool_call_begin|>"
    assert parse_tool_text(f"Ok.<|tool_call_begin|>{W}<|tool_call_end|> Bye.", tags, NAMES)[0] == "Ok.Bye."


# -- ids ---------------------------------------------------------------------------------------------
def test_tool_stream_gives_ids_and_only_offered_calls() -> None:
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    stream = ToolStream(None, tools)
    content, calls = stream.feed(f"<tool_call>{W}</tool_call><tool_call>{W}</tool_call>")
    rest, more = stream.flush()
    assert content + rest == "" and not more and len(calls) == 2
    for i, call in enumerate(calls):
        assert re.fullmatch(r"call_[a-z0-9]{8}", call["id"])
        assert call["function"] == {"index": i, "name": "get_weather", "arguments": {"city": "Paris"}}
        assert list(call) == ["id", "function"]  # Ollama's field order
    assert calls[0]["id"] != calls[1]["id"]
    stream = ToolStream(None, tools)
    assert stream.feed(T) == (T, [])  # get_time was not offered: content, as soon as that is known
    assert stream.flush() == ("", [])
    assert len({new_call_id() for _ in range(200)}) == 200


def test_whole_text_parse_tool_calls_honours_the_offered_tools() -> None:
    from ollamalike.template import parse_tool_calls

    tools = [{"type": "function", "function": {"name": "get_weather"}}]
    assert parse_tool_calls(None, '{"name": "Alice", "age": 25}', tools) is None
    assert parse_tool_calls(None, f"Let me see. {json.dumps(json.loads(W))}", tools) is None
    assert parse_tool_calls(None, f"Let me see. <tool_call>{W}</tool_call>", tools) == [
        {"function": {"index": 0, "name": "get_weather", "arguments": {"city": "Paris"}}}]
