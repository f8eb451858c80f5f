"""The model-family output parsers (template.parsers): each family's documented output format, whole
and streamed in random chunk sizes, comes out as the same thinking, content and tool calls.

Every case is a model output written out from its family's format (Ollama's parser tests and the
families' chat templates show them) with the events it must give. The streaming property cuts the
same output at random points (a fixed-seed hypothesis run, bounded for CI) and checks that the
events joined are exactly the whole output's: no part of a tag or of a call ever comes out as
content, and nothing is lost. Malformed and cut calls are content, as generated (the documented
choice: docs/modelfile.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ollamalike.template.parsers import (
    FAMILIES,
    Content,
    Event,
    ParserContext,
    Thinking,
    ToolCall,
    coalesce,
)
from ollamalike.template.parsers.base import Think

WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"},
                                     "metric": {"type": "boolean"}, "hours": {"type": "array"}}}}}
CLOCK = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}
TOOLS = [WEATHER, CLOCK]
PARIS = ToolCall("get_weather", {"city": "Paris"})
DS_BEGIN, DS_END = "<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>"
DS_CALL, DS_CALL_END, DS_SEP = "<｜tool▁call▁begin｜>", "<｜tool▁call▁end｜>", "<｜tool▁sep｜>"


@dataclass(frozen=True)
class Case:
    id: str
    parser: str
    output: str
    events: list[Event]
    think: Think = None
    prompt: str = ""


CASES = [
    # -- Qwen3-Coder XML ---------------------------------------------------------------------------
    Case("qwen3-coder call between content", "qwen3-coder",
         "Let me check.\n<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n"
         "<parameter=days>\n3\n</parameter>\n<parameter=metric>\ntrue\n</parameter>\n</function>\n</tool_call>\nDone.",
         [Content("Let me check."), ToolCall("get_weather", {"city": "Paris", "days": 3, "metric": True}),
          Content("Done.")]),
    Case("qwen3-coder two calls, multi-line value, untyped tool", "qwen3-coder",
         "<tool_call>\n<function=write>\n<parameter=text>\nline 1\nline 2 < 3 & so\n</parameter>\n</function>\n"
         "</tool_call>\n<tool_call>\n<function=get_weather>\n<parameter=hours>\n[1, 2]\n</parameter>\n</function>\n"
         "</tool_call>",
         [ToolCall("write", {"text": "line 1\nline 2 < 3 & so"}), ToolCall("get_weather", {"hours": [1, 2]})]),
    Case("qwen3-coder cut call at the end is content", "qwen3-coder",
         "Sure <tool_call>\n<function=get_weather>\n<parameter=city>\nPar",
         [Content("Sure <tool_call>\n<function=get_weather>\n<parameter=city>\nPar")]),
    Case("qwen3-coder a tool_call block with no function is content", "qwen3-coder",
         "a <tool_call>not xml</tool_call> b", [Content("a <tool_call>not xml</tool_call>b")]),
    # -- gpt-oss harmony ---------------------------------------------------------------------------
    Case("harmony analysis then a commentary call", "harmony",
         "<|channel|>analysis<|message|>User wants the weather.<|end|><|start|>assistant<|channel|>commentary "
         "to=functions.get_weather <|constrain|>json<|message|>{\"city\": \"Paris\"}<|call|>",
         [Thinking("User wants the weather."), PARIS]),
    Case("harmony analysis then final", "harmony",
         "<|channel|>analysis<|message|>Say hi.<|end|><|start|>assistant<|channel|>final<|message|>Hello!<|return|>",
         [Thinking("Say hi."), Content("Hello!")]),
    Case("harmony recipient before the channel, call cut by the stop token", "harmony",
         " to=functions.get_time<|channel|>commentary json<|message|>{}", [ToolCall("get_time", {})]),
    Case("harmony arguments that are not JSON are content", "harmony",
         "<|channel|>commentary to=functions.get_weather<|message|>{city: Paris<|call|>", [Content("{city: Paris")]),
    # -- DeepSeek ----------------------------------------------------------------------------------
    Case("deepseek3 thinking, content, two calls", "deepseek3",
         f"The user asks for weather.</think>Sure.{DS_BEGIN}{DS_CALL}get_weather{DS_SEP}{{\"city\": \"Paris\"}}"
         f"{DS_CALL_END}{DS_CALL}get_time{DS_SEP}{{}}{DS_CALL_END}{DS_END}",
         [Thinking("The user asks for weather."), Content("Sure."), PARIS, ToolCall("get_time", {})],
         think=True, prompt="<｜User｜>hi<｜Assistant｜><think>"),
    Case("deepseek-r1 fenced JSON form, no thinking asked", "deepseek-r1",
         f"{DS_BEGIN}{DS_CALL}function{DS_SEP}get_weather\n```json\n{{\"city\": \"Paris\"}}\n```{DS_CALL_END}{DS_END}",
         [PARIS], think=False),
    Case("deepseek3 call without a separator is content", "deepseek3",
         f"{DS_CALL}get_weather{DS_CALL_END}", [Content(f"{DS_CALL}get_weather{DS_CALL_END}")], think=False),
    # -- Mistral -----------------------------------------------------------------------------------
    Case("ministral thinking and name[ARGS]{…}", "ministral",
         "[THINK]Need the weather.[/THINK]Calling.[TOOL_CALLS]get_weather[ARGS]{\"city\": \"Paris\"}",
         [Thinking("Need the weather."), Content("Calling."), PARIS], think=True),
    Case("mistral JSON list of calls", "mistral",
         "[TOOL_CALLS][{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}, "
         "{\"name\": \"get_time\", \"arguments\": {}}]",
         [PARIS, ToolCall("get_time", {})]),
    Case("mistral two name[ARGS] calls", "mistral",
         "[TOOL_CALLS]get_weather[ARGS]{\"city\": \"Paris\"}[TOOL_CALLS]get_time[ARGS]{}",
         [PARIS, ToolCall("get_time", {})]),
    # -- Llama 3 -----------------------------------------------------------------------------------
    Case("llama3 python_tag", "llama3",
         "<|python_tag|>{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}", [PARIS]),
    Case("llama3 bare JSON", "llama3", "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}", [PARIS]),
    Case("llama3 JSON of an unoffered tool stays content", "llama3",
         "{\"name\": \"Alice\", \"parameters\": {}}", [Content("{\"name\": \"Alice\", \"parameters\": {}}")]),
    # -- GLM ---------------------------------------------------------------------------------------
    Case("glm-4.7 thinking prefilled, typed arguments", "glm-4.7",
         "Need weather.</think>\n<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Paris</arg_value>\n"
         "<arg_key>days</arg_key>\n<arg_value>3</arg_value>\n</tool_call>",
         [Thinking("Need weather."), ToolCall("get_weather", {"city": "Paris", "days": 3})],
         think=True, prompt="<|user|>hi<|assistant|><think>"),
    Case("glm-4.6 thinking tag in the output, then content", "glm-4.6",
         "<think>hmm</think>\nIt is sunny.", [Thinking("hmm"), Content("It is sunny.")]),
    Case("glm cut call is content", "glm-4.6",
         "<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Par",
         [Content("<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Par")], think=False),
    # -- Gemma -------------------------------------------------------------------------------------
    Case("functiongemma escape strings and numbers", "functiongemma",
         "<start_function_call>call:get_weather{city:<escape>Paris, FR<escape>,days:3}<end_function_call>",
         [ToolCall("get_weather", {"city": "Paris, FR", "days": 3})]),
    Case("gemma4 channel thinking and a call", "gemma4",
         "<|channel>Check.<channel|>On it.<|tool_call>call:get_weather{city:<|\"|>Paris<|\"|>}<tool_call|>",
         [Thinking("Check."), Content("On it."), PARIS]),
    Case("gemma3 tool_code block", "gemma3-tool-code",
         "```tool_code\nget_weather(city=\"Paris\")\n```\nChecking.", [PARIS, Content("Checking.")]),
    # -- LFM2, OLMo 3 ------------------------------------------------------------------------------
    Case("lfm2 pythonic list", "lfm2",
         "<|tool_call_start|>[get_weather(city=\"Paris\", days=3), get_time()]<|tool_call_end|>Checking.",
         [ToolCall("get_weather", {"city": "Paris", "days": 3}), ToolCall("get_time", {}), Content("Checking.")]),
    Case("lfm2 JSON form", "lfm2",
         "<|tool_call_start|>[{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}]<|tool_call_end|>",
         [PARIS]),
    Case("lfm2-thinking", "lfm2-thinking", "<think>Hmm.</think>Answer.", [Thinking("Hmm."), Content("Answer.")]),
    Case("lfm2 code that is no call is content", "lfm2",
         "<|tool_call_start|>[__import__('os').system('x')]<|tool_call_end|>",
         [Content("<|tool_call_start|>[__import__('os').system('x')]<|tool_call_end|>")]),
    Case("olmo3 one call per line", "olmo3",
         "<function_calls>get_weather(city=\"Paris\")\nget_time()</function_calls>", [PARIS, ToolCall("get_time", {})]),
    # -- Cohere ------------------------------------------------------------------------------------
    Case("cohere thinking and an action", "cohere",
         "<|START_THINKING|>Plan a call.<|END_THINKING|><|START_ACTION|>[{\"tool_call_id\": \"0\", "
         "\"tool_name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}]<|END_ACTION|>",
         [Thinking("Plan a call."), PARIS]),
    Case("cohere response wrapper", "cohere", "<|START_RESPONSE|>Hello there.<|END_RESPONSE|>",
         [Content("Hello there.")]),
    Case("command-r action block", "command-r",
         "<|START_ACTION|>[{\"tool_name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}]<|END_ACTION|>",
         [PARIS]),
    # -- Qwen 3 / Hermes / Granite / passthrough -----------------------------------------------------
    Case("qwen3-thinking opens thinking itself when the prompt is unknown", "qwen3-thinking",
         "Let me see.\n</think>\n\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n"
         "</tool_call>", [Thinking("Let me see."), PARIS]),
    Case("qwen3 (no thinking) Hermes call after content", "qwen3",
         "Checking now.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>",
         [Content("Checking now."), PARIS]),
    Case("hermes call cut by its stop sequence still counts", "hermes",
         "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}", [PARIS]),
    Case("hermes think false: the tag is content", "hermes", "<think>x</think>y", [Content("<think>x</think>y")],
         think=False),
    Case("granite tool_call list", "granite",
         "<|tool_call|>[{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}]", [PARIS]),
    Case("qwen3.5 thinking opened by the prompt, then an XML call", "qwen3.5",
         "Plan the call.\n</think>\n\n<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n"
         "</function>\n</tool_call>", [Thinking("Plan the call."), PARIS], think=True,
         prompt="<|im_start|>assistant\n<think>\n"),
    Case("qwen3.5 with think false: no thinking looked for", "qwen3.5", "</think> is a tag.",
         [Content("</think> is a tag.")], think=False, prompt="<|im_start|>assistant\n<think>\n\n</think>\n\n"),
    Case("olmo3-think prompt unknown: the family opens thinking", "olmo3-think",
         "Hmm.</think>Done.", [Thinking("Hmm."), Content("Done.")]),
    Case("passthrough keeps everything", "passthrough", "<think>x</think><tool_call>{}</tool_call>",
         [Content("<think>x</think><tool_call>{}</tool_call>")]),
]


def _run(case: Case, pieces: list[str]) -> list[Event]:
    parser = FAMILIES[case.parser].build(ParserContext.create(TOOLS, case.think, case.prompt))
    events: list[Event] = []
    for piece in pieces:
        events += parser.feed(piece)
    return coalesce(events + parser.finish())


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_family_output_whole(case: Case) -> None:
    assert _run(case, [case.output]) == case.events


def _cuts(text: str, cuts: list[int]) -> list[str]:
    points = sorted({c % (len(text) + 1) for c in cuts})
    bounds = [0, *points, len(text)]
    return [text[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


# Fixed seed and a bounded number of examples per family, so CI runs the same cuts every time.
STREAMED = settings(max_examples=25, derandomize=True, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
@STREAMED
@given(cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=40))
def test_family_output_streamed_in_random_chunks(case: Case, cuts: list[int]) -> None:
    assert _run(case, _cuts(case.output, cuts)) == case.events


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_family_output_one_character_at_a_time(case: Case) -> None:
    assert _run(case, list(case.output)) == case.events


def test_content_streams_before_the_output_ends() -> None:
    """Content is not held to the end: only what may still be a tag waits."""
    parser = FAMILIES["qwen3-coder"].build(ParserContext.create(TOOLS))
    assert parser.feed("Hello world, ") == [Content("Hello world,")]
    assert parser.feed("<tool") == []  # a possible tag (and the space before it) waits
    assert coalesce(parser.feed("s are fun")) == [Content(" <tools are fun")]


@pytest.mark.parametrize("name", ["llama3", "mistral", "ministral", "command-r", "granite"])
def test_json_families_parse_calls_only_when_tools_are_offered(name: str) -> None:
    """A structured answer that has a "name" key is no call when no tools were offered."""
    answer = '{"name": "Alice", "parameters": {"age": 3}}'
    parser = FAMILIES[name].build(ParserContext.create(None, None, ""))
    assert coalesce(parser.feed(answer) + parser.finish()) == [Content(answer)]


def test_every_registered_family_has_a_case() -> None:
    # The rest are other names of a format above (Ollama registers several names for one parser).
    aliases = {"ornith", "qwen3-vl-instruct", "qwen3-vl-thinking", "nemotron-3-nano", "nemotron-3.5-nano", "cogito",
               "gemma4-no-thinking"}
    assert {c.parser for c in CASES} == set(FAMILIES) - aliases
