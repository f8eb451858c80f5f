"""Choosing a model's output parser (named, detected from its template, or the generic one), the
capabilities a parser gives, think levels reaching templates, and the inference service streaming
a family parser's events as Ollama's chunks."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from ollamalike.errors import BadRequest
from ollamalike.inference import collect, service
from ollamalike.inference.requests import ChatRequest, GenerateRequest
from ollamalike.library.models import _parser_capabilities, with_parser_capabilities
from ollamalike.server.openai_requests import parse_chat_completion
from ollamalike.server.responses_requests import parse_response_request
from ollamalike.template import render_chat
from ollamalike.template.parsers import (
    Content,
    Thinking,
    ToolCall,
    coalesce,
    detect,
    select,
    template_think,
)
from ollamalike.template.parsers.generic import GenericParser
from tests.fakes import StubRunner, gguf_info, resolved_model

QWEN25_JINJA = ("{% for m in messages %}<|im_start|>{{ m.role }}{% endfor %}{% if tools %}<tools>{{ tools }}</tools>"
                "For each call return <tool_call>{\"name\": ..., \"arguments\": ...}</tool_call>{% endif %}")
HARMONY_JINJA = "<|start|>system<|message|>Reasoning: {{ reasoning_effort }}<|end|><|start|>assistant<|channel|>"
QWEN3_CODER_JINJA = "{% if tools %}<tool_call>\n<function=example>\n<parameter=x>\nv\n</parameter>\n</function>{% endif %}"
WEATHER = [{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}}}}]


def model(template: str | None = None, chat_template: str | None = None, arch: str = "llama",
          parser: str | None = None) -> Any:
    return resolved_model(template=template, parser=parser, info=gguf_info(chat_template=chat_template,
                                                                           architecture=arch))


@pytest.mark.parametrize("arch, template, chat_template, expected", [
    ("gpt-oss", None, HARMONY_JINJA, "harmony"),
    ("gptoss", "{{ .Prompt }}<|start|>assistant<|end|>", None, "harmony"),  # Ollama's rule, on a Go template
    ("llama", "{{ .Prompt }}<|start|>assistant<|end|>", None, None),        # ... only for the gpt-oss family
    ("llama", None, HARMONY_JINJA, "harmony"),                              # a Jinja template in harmony's form
    ("qwen3moe", None, QWEN3_CODER_JINJA, "qwen3-coder"),
    ("qwen35", None, QWEN3_CODER_JINJA + "<think>", "qwen3.5"),
    ("qwen2", None, QWEN25_JINJA, None),                                    # Hermes JSON: the generic parser
    ("deepseek2", None, "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>{{ name }}<｜tool▁sep｜>", "deepseek3"),
    ("glm4moe", None, "<tool_call>{{ n }}<arg_key>k</arg_key><arg_value>v</arg_value>", "glm-4.7"),
    ("gemma3", None, "<start_function_call>call:", "functiongemma"),
    ("cohere2", None, "<|START_THINKING|><|END_THINKING|><|START_ACTION|>", "cohere"),
    ("qwen3moe", "{{ .Prompt }}<function=x><parameter=y>", QWEN3_CODER_JINJA, None),  # a Go template wins
    ("llama", None, None, None),
])
def test_detect_from_the_template(arch: str, template: str | None, chat_template: str | None,
                                  expected: str | None) -> None:
    assert detect(model(template, chat_template, arch)) == expected


def test_a_named_parser_wins_over_detection() -> None:
    m = model(None, QWEN3_CODER_JINJA, "qwen3moe", parser="passthrough")
    parser = select(m, WEATHER, None, "")
    assert parser is not None and parser.feed("<tool_call>x") == [Content("<tool_call>x")]


def test_an_unknown_parser_name_falls_back_to_the_generic_parser(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="ollamalike.template"):
        parser = select(model(parser="no-such-parser"), WEATHER, None, "")
    assert isinstance(parser, GenericParser)
    assert "no-such-parser" in caplog.text
    out = parser.feed('<tool_call>{"name": "get_weather", "arguments": {"city": "Oslo"}}</tool_call>')
    assert coalesce(out + parser.finish()) == [ToolCall("get_weather", {"city": "Oslo"})]


def test_generic_parser_only_when_needed() -> None:
    assert select(model(), None, None, "") is None      # no tools, no thinking: the text as it is
    assert select(model(), None, False, "") is None
    parser = select(model(), None, True, "user: hi\nassistant: <think>")  # the prompt opened the block
    assert parser is not None
    assert coalesce(parser.feed("hmm</think>Hi") + parser.finish()) == [Thinking("hmm"), Content("Hi")]


def test_parser_capabilities() -> None:
    assert _parser_capabilities("harmony", ["completion"]) == ["completion", "tools", "thinking"]
    assert _parser_capabilities("qwen3-coder", ["completion", "tools"]) == ["completion", "tools"]
    assert _parser_capabilities("passthrough", ["completion"]) == ["completion"]
    assert _parser_capabilities("nope", ["completion"]) == ["completion"]
    assert _parser_capabilities("harmony", ["embedding"]) == ["embedding"]
    assert _parser_capabilities(None, ["completion"]) == ["completion"]


def test_a_detected_parser_gives_its_capabilities() -> None:
    gpt_oss = model(None, HARMONY_JINJA, "gpt-oss")
    gpt_oss.capabilities = ["completion"]
    assert with_parser_capabilities(gpt_oss) == ["completion", "tools", "thinking"]
    qwen25 = model(None, QWEN25_JINJA, "qwen2")
    qwen25.capabilities = ["completion", "tools"]
    assert with_parser_capabilities(qwen25) == ["completion", "tools"]
    named = model(None, QWEN25_JINJA, "qwen2", parser="qwen3-thinking")
    named.capabilities = ["completion", "tools"]
    assert with_parser_capabilities(named) == ["completion", "tools", "thinking"]


# -- think levels ------------------------------------------------------------------------------------
def test_template_think_maps_max_to_high_for_harmony_only() -> None:
    harmony = model(None, HARMONY_JINJA, "gpt-oss")
    assert template_think(harmony, "max") == "high"
    assert template_think(harmony, "low") == "low" and template_think(harmony, True) is True
    assert template_think(model(parser="harmony"), "max") == "high"
    assert template_think(model(), "max") == "max"


def test_levels_reach_go_and_jinja_templates() -> None:
    go = model("{{ if .Think }}T{{ .ThinkLevel }}{{ end }}{{ range .Messages }}{{ end }}")
    msgs = [{"role": "user", "content": "hi"}]
    assert [render_chat(go, msgs, think=t) for t in ("low", "medium", "high", "max", True)] == [
        "Tlow", "Tmedium", "Thigh", "Tmax", "T"]
    jinja = model(None, "{{ enable_thinking }} {{ thinking }} {{ reasoning_effort | default('unset') }}")
    assert render_chat(jinja, msgs, think="max") == "True True max"
    assert render_chat(jinja, msgs, think=True) == "True True unset"
    assert render_chat(jinja, msgs, think=False) == "False False unset"
    with pytest.raises(BadRequest, match="max"):
        render_chat(go, msgs, think="extreme")


def _chat(**fields: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": "hi"}], **fields}


@pytest.mark.parametrize("effort, think", [
    ("none", False), ("minimal", "low"), ("low", "low"), ("medium", "medium"), ("high", "high"), ("max", "max"),
    ("xhigh", "max"), ("ultra", "max"),
])
def test_openai_reasoning_efforts_map_as_ollama_maps_them(effort: str, think: bool | str) -> None:
    assert parse_chat_completion(_chat(reasoning_effort=effort)).request.think == think
    assert parse_chat_completion(_chat(reasoning={"effort": effort})).request.think == think
    assert parse_response_request({"model": "m", "input": "hi", "reasoning": {"effort": effort}}, []).request.think == think


@pytest.mark.parametrize("body, param", [
    (_chat(reasoning_effort="extreme"), "reasoning_effort"), (_chat(reasoning_effort=3), "reasoning_effort"),
    (_chat(reasoning={"effort": "HIGH"}), "reasoning.effort"),
])
def test_bad_reasoning_effort_names_its_field(body: dict[str, Any], param: str) -> None:
    with pytest.raises(BadRequest, match="reasoning") as info:
        parse_chat_completion(body)
    assert info.value.param == param


# -- the service ------------------------------------------------------------------------------------
class ScriptedRunner(StubRunner):
    def __init__(self, pieces: list[str]) -> None:
        super().__init__()
        self.pieces = pieces

    async def completion(self, prompt: str | list[int], options: dict[str, Any] | None = None,
                         format: str | dict[str, Any] | None = None, images: Any = (), *,
                         logprobs: int | None = None, shift: bool = True) -> AsyncIterator[dict[str, Any]]:
        for piece in self.pieces:
            yield {"content": piece}
        yield {"done": True, "done_reason": "stop", "prompt_eval_count": len(prompt), "eval_count": len(self.pieces)}


class OneRunner:
    """A scheduler stand-in: every acquire leases the one scripted runner."""

    def __init__(self, runner: StubRunner) -> None:
        self.runner = runner

    async def acquire(self, model: Any, options: Any, keep_alive: Any, embedding: bool = False) -> Any:
        runner = self.runner

        class _Lease:
            num_ctx = 4096
            load_duration_ns = 0

            def __init__(self) -> None:
                self.runner = runner

            def release(self) -> None:
                pass

        return _Lease()


def _service(monkeypatch: pytest.MonkeyPatch, m: Any, pieces: list[str]) -> service.InferenceService:
    async def resolve(store: Any, name: str) -> Any:
        return m

    monkeypatch.setattr(service, "resolve", resolve)
    return service.InferenceService(None, OneRunner(ScriptedRunner(pieces)))  # type: ignore[arg-type]


async def test_chat_streams_a_family_parsers_calls_with_ids_and_indices(monkeypatch: pytest.MonkeyPatch) -> None:
    m = model("{{ range .Messages }}{{ .Content }}{{ end }}", parser="qwen3-coder")
    m.capabilities = ["completion", "tools"]
    pieces = ["Sure.\n<tool_", "call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n</function>\n",
              "</tool_call>\n<tool_call>\n<function=get_time>\n</function>\n</tool_call>"]
    svc = _service(monkeypatch, m, pieces)
    chunks = [c async for c in svc.chat(ChatRequest(model="m", messages=[{"role": "user", "content": "hi"}],
                                                    tools=WEATHER))]
    assert chunks[0]["message"] == {"role": "assistant", "content": "Sure."}
    calls = [c for chunk in chunks for c in chunk["message"].get("tool_calls", [])]
    assert [c["function"] for c in calls] == [{"index": 0, "name": "get_weather", "arguments": {"city": "Paris"}},
                                              {"index": 1, "name": "get_time", "arguments": {}}]
    assert all(c["id"].startswith("call_") for c in calls) and calls[0]["id"] != calls[1]["id"]
    assert chunks[-1]["done"] and not any("<" in c["message"]["content"] for c in chunks)


async def test_generate_splits_thinking_with_the_family_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    m = model("{{ .Prompt }}<think>", parser="deepseek3")
    m.capabilities = ["completion", "thinking"]
    svc = _service(monkeypatch, m, ["Let me", " think.</th", "ink>The answer is 4."])
    out = await collect(svc.generate(GenerateRequest(model="m", prompt="2+2?", think=True)))
    assert out["thinking"] == "Let me think." and out["response"] == "The answer is 4."
    raw = await collect(svc.generate(GenerateRequest(model="m", prompt="2+2?", raw=True)))
    assert raw["response"] == "Let me think.</think>The answer is 4." and "thinking" not in raw
