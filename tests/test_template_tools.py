"""Tool calls parsed from model output and the <think> splitter (whole and streamed)."""

from __future__ import annotations

from typing import Any

import pytest

from ollamalike.template import ThinkingParser, parse_tool_calls, prompt_opens_thinking, split_thinking

WEATHER = {"function": {"name": "get_weather", "arguments": {"city": "Paris"}, "index": 0}}

TOOL_CASES: list[tuple[str, str, list[dict[str, Any]] | None]] = [
    ("bare json object", '{"name": "get_weather", "arguments": {"city": "Paris"}}', [WEATHER]),
    ("llama3 parameters", '{"name": "get_weather", "parameters": {"city": "Paris"}}', [WEATHER]),
    ("hermes tool_call tags", '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>', [WEATHER]),
    ("mistral TOOL_CALLS list", '[TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Paris"}}]', [WEATHER]),
    ("python_tag", '<|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris"}}', [WEATHER]),
    ("string arguments become objects", '{"name": "get_weather", "arguments": "{\\"city\\": \\"Paris\\"}"}', [WEATHER]),
    ("openai shape", '[{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]', [WEATHER]),
    ("command-r action", 'Action: ```json\n[{"tool_name": "get_weather", "parameters": {"city": "Paris"}}]```', [WEATHER]),
    ("directly-answer is no call", 'Action: ```json\n[{"tool_name": "directly-answer", "parameters": {}}]```', None),
    ("text before a prefix", 'Let me check.\n<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>', [WEATHER]),
    ("plain content", "The weather in Paris is sunny.", None),
    ("json that is not a call", '{"answer": 42}', None),
    ("malformed json", '<tool_call>{"name": "get_weather", "arguments": {"city": </tool_call>', None),
    ("empty", "", None),
]


@pytest.mark.parametrize("name,text,expected", TOOL_CASES, ids=[c[0] for c in TOOL_CASES])
def test_parse_tool_calls(name: str, text: str, expected: list[dict[str, Any]] | None) -> None:
    assert parse_tool_calls(None, text) == expected


def test_prefix_from_the_models_template() -> None:
    from tests.fake_models import FakeInfo, FakeModel

    tmpl = ('{{ range .Messages }}{{ .Content }}{{ range .ToolCalls }}<<CALL>>{"name": "{{ .Function.Name }}", '
            '"arguments": {{ .Function.Arguments }}}{{ end }}{{ end }}')
    m = FakeModel(template=tmpl, system="", messages=[], info=FakeInfo(chat_template=None))
    text = 'Checking. <<CALL>>{"name": "get_weather", "arguments": {"city": "Paris"}}'
    assert parse_tool_calls(m, text) == [WEATHER]
    assert parse_tool_calls(None, text) is None  # without the template, the prefix means nothing


def test_several_calls_are_indexed() -> None:
    text = ('<tool_call>{"name": "a", "arguments": {}}</tool_call>\n'
            '<tool_call>{"name": "b", "arguments": {"x": 1}}</tool_call>')
    assert parse_tool_calls(None, text) == [
        {"function": {"name": "a", "arguments": {}, "index": 0}},
        {"function": {"name": "b", "arguments": {"x": 1}, "index": 1}},
    ]


def test_split_thinking() -> None:
    assert split_thinking("<think>\nLet me see.\n</think>\n\nThe answer.") == ("Let me see.", "The answer.")
    assert split_thinking("No thinking here.") == ("", "No thinking here.")
    # The prompt opened the block: output starts inside it.
    assert split_thinking("hmm</think>done", started=True) == ("hmm", "done")
    # Unterminated thinking stays thinking.
    assert split_thinking("<think>still going") == ("still going", "")


@pytest.mark.parametrize("size", [1, 2, 3, 5, 100])
def test_thinking_parser_handles_tags_split_across_chunks(size: int) -> None:
    text = "  <think>step one\nstep two</think>\n\nFinal <b>answer</b>."
    parser = ThinkingParser()
    thinking, content = "", ""
    for i in range(0, len(text), size):
        t, c = parser.feed(text[i:i + size])
        thinking, content = thinking + t, content + c
    t, c = parser.flush()
    assert (thinking + t, content + c) == ("step one\nstep two", "Final <b>answer</b>.")


def test_content_that_merely_starts_like_the_tag() -> None:
    parser = ThinkingParser()
    assert parser.feed("<thi") == ("", "")
    assert parser.feed("s is content") == ("", "<this is content")


def test_prompt_opens_thinking() -> None:
    assert prompt_opens_thinking("<|im_start|>assistant\n<think>\n")
    assert not prompt_opens_thinking("<|im_start|>assistant\n")


@pytest.mark.parametrize("name,prefix", [("chatml", "<tool_call>"), ("mistral-instruct", "[TOOL_CALLS]"),
                                         ("command-r", "Action: ```json"), ("llama3-instruct", None)])
def test_template_prefix_of_named_templates(name: str, prefix: str | None) -> None:
    from ollamalike.template import named_template
    from ollamalike.template.tools import template_prefix

    assert template_prefix(named_template(name).template) == prefix
