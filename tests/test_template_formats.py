"""Well-known chat formats, Ollama's rendering rules (collate, legacy .Prompt/.Response templates,
SYSTEM/MESSAGE from the Modelfile, generate with suffix), detection of GGUF Jinja templates, and
Ollama's own reference templates rendered with our engine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ollamalike.errors import BadRequest
from ollamalike.template import (
    check_template,
    detect_template,
    go_template_for,
    named_template,
    render_chat,
    render_generate,
    stop_for,
)
from tests.fake_models import FakeInfo, FakeModel

REFERENCE = Path(__file__).resolve().parent.parent.parent / "shared" / "reference" / "ollama-templates"
needs_reference = pytest.mark.skipif(not REFERENCE.is_dir(), reason="shared/reference is not checked out")


def model(template: str | None = None, system: str = "", messages: list[dict[str, Any]] | None = None,
          chat_template: str | None = None, bos: str = "<s>", eos: str = "</s>") -> FakeModel:
    info = FakeInfo(chat_template=chat_template, bos_token=bos, eos_token=eos)
    return FakeModel(template=template, system=system, messages=list(messages or []), info=info)


def named(name: str) -> FakeModel:
    return model(named_template(name).template)


SINGLE = [{"role": "user", "content": "Hello"}]
EXCHANGE = [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi there"},
            {"role": "user", "content": "How are you?"}]
WITH_SYSTEM = [{"role": "system", "content": "Be brief."}, *EXCHANGE]

# name -> (single user turn, user/assistant/user, the same with a system prompt): documented formats.
FORMATS: dict[str, tuple[str, str, str]] = {
    "chatml": (
        "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n",
        "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\nHi there<|im_end|>\n"
        "<|im_start|>user\nHow are you?<|im_end|>\n<|im_start|>assistant\n",
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n"
        "<|im_start|>assistant\nHi there<|im_end|>\n<|im_start|>user\nHow are you?<|im_end|>\n<|im_start|>assistant\n",
    ),
    "llama2-chat": (
        "[INST] Hello [/INST]",
        "[INST] Hello [/INST] Hi there </s><s>[INST] How are you? [/INST]",
        "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHello [/INST] Hi there </s><s>[INST] How are you? [/INST]",
    ),
    "llama3-instruct": (
        "<|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
        "<|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nHi there<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nHow are you?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n",
        "<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nHi there<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nHow are you?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n",
    ),
    "mistral-instruct": (
        "[INST] Hello [/INST]",
        "[INST] Hello [/INST]Hi there</s>[INST] How are you? [/INST]",
        "[INST] Be brief.\n\nHello [/INST]Hi there</s>[INST] How are you? [/INST]",
    ),
    "gemma-instruct": (
        "<start_of_turn>user\nHello<end_of_turn>\n<start_of_turn>model\n",
        "<start_of_turn>user\nHello<end_of_turn>\n<start_of_turn>model\nHi there<end_of_turn>\n"
        "<start_of_turn>user\nHow are you?<end_of_turn>\n<start_of_turn>model\n",
        "<start_of_turn>user\nBe brief.\n\nHello<end_of_turn>\n<start_of_turn>model\nHi there<end_of_turn>\n"
        "<start_of_turn>user\nHow are you?<end_of_turn>\n<start_of_turn>model\n",
    ),
    "phi-3": (
        "<|user|>\nHello<|end|>\n<|assistant|>\n",
        "<|user|>\nHello<|end|>\n<|assistant|>\nHi there<|end|>\n<|user|>\nHow are you?<|end|>\n<|assistant|>\n",
        "<|system|>\nBe brief.<|end|>\n<|user|>\nHello<|end|>\n<|assistant|>\nHi there<|end|>\n"
        "<|user|>\nHow are you?<|end|>\n<|assistant|>\n",
    ),
    "zephyr": (
        "<|user|>\nHello</s>\n<|assistant|>\n",
        "<|user|>\nHello</s>\n<|assistant|>\nHi there</s>\n<|user|>\nHow are you?</s>\n<|assistant|>\n",
        "<|system|>\nBe brief.</s>\n<|user|>\nHello</s>\n<|assistant|>\nHi there</s>\n"
        "<|user|>\nHow are you?</s>\n<|assistant|>\n",
    ),
    "alpaca": (
        "### Instruction:\nHello\n\n### Response:\n",
        "### Instruction:\nHello\n\n### Response:\nHi there\n\n### Instruction:\nHow are you?\n\n### Response:\n",
        "Be brief.\n\n### Instruction:\nHello\n\n### Response:\nHi there\n\n### Instruction:\nHow are you?\n\n### Response:\n",
    ),
    "vicuna": (
        "USER: Hello\nASSISTANT:",
        "USER: Hello\nASSISTANT: Hi there</s>\nUSER: How are you?\nASSISTANT:",
        "Be brief.\n\nUSER: Hello\nASSISTANT: Hi there</s>\nUSER: How are you?\nASSISTANT:",
    ),
    "command-r": (
        "<|START_OF_TURN_TOKEN|><|USER_TOKEN|>Hello<|END_OF_TURN_TOKEN|><|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>",
        "<|START_OF_TURN_TOKEN|><|USER_TOKEN|>Hello<|END_OF_TURN_TOKEN|>"
        "<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>Hi there<|END_OF_TURN_TOKEN|>"
        "<|START_OF_TURN_TOKEN|><|USER_TOKEN|>How are you?<|END_OF_TURN_TOKEN|><|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>",
        "<|START_OF_TURN_TOKEN|><|SYSTEM_TOKEN|>Be brief.<|END_OF_TURN_TOKEN|>"
        "<|START_OF_TURN_TOKEN|><|USER_TOKEN|>Hello<|END_OF_TURN_TOKEN|>"
        "<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>Hi there<|END_OF_TURN_TOKEN|>"
        "<|START_OF_TURN_TOKEN|><|USER_TOKEN|>How are you?<|END_OF_TURN_TOKEN|><|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>",
    ),
}


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_named_formats(name: str) -> None:
    single, exchange, with_system = FORMATS[name]
    m = named(name)
    assert render_chat(m, SINGLE) == single
    assert render_chat(m, EXCHANGE) == exchange
    assert render_chat(m, WITH_SYSTEM) == with_system
    # The model's SYSTEM gives the same prompt as a system message in the request.
    with_model_system = model(named_template(name).template, system="Be brief.")
    assert render_chat(with_model_system, EXCHANGE) == with_system


@pytest.mark.parametrize("name", ["chatml", "llama3-instruct", "phi-3", "gemma-instruct", "zephyr", "command-r", "alpaca"])
def test_trailing_assistant_message_is_a_prefill(name: str) -> None:
    m = named(name)
    prompt = render_chat(m, [*SINGLE, {"role": "assistant", "content": "Sure, here"}])
    assert prompt.endswith("Sure, here"), prompt


def test_every_named_template_parses_and_has_stops() -> None:
    from ollamalike.template import named_templates

    names = named_templates()
    assert len(names) >= 18
    for name in names:
        nt = named_template(name)
        check_template(nt.template)
        assert nt.stop, name
        assert render_chat(model(nt.template), EXCHANGE)


def test_tools_in_named_templates() -> None:
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
                                               "parameters": {"type": "object", "required": ["city"],
                                                              "properties": {"city": {"type": "string", "description": "City name"}}}}}]
    history = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
        {"role": "tool", "content": "22C", "tool_name": "get_weather"},
    ]
    tool_json = ('{"type":"function","function":{"name":"get_weather","description":"Weather for a city",'
                 '"parameters":{"type":"object","required":["city"],"properties":{"city":{"type":"string","description":"City name"}}}}}')
    chatml = render_chat(named("chatml"), history, tools=tools)
    assert f"<tools>\n{tool_json}\n</tools>" in chatml
    assert '<tool_call>\n{"name": "get_weather", "arguments": {"city":"Paris"}}\n</tool_call><|im_end|>' in chatml
    assert chatml.endswith("<|im_start|>user\n<tool_response>\n22C\n</tool_response><|im_end|>\n<|im_start|>assistant\n")
    llama3 = render_chat(named("llama3-instruct"), history, tools=tools)
    assert tool_json in llama3
    assert '{"name": "get_weather", "parameters": {"city":"Paris"}}<|eot_id|>' in llama3
    assert llama3.endswith("<|start_header_id|>ipython<|end_header_id|>\n\n22C<|eot_id|>"
                           "<|start_header_id|>assistant<|end_header_id|>\n\n")
    mistral = render_chat(named("mistral-instruct"), history, tools=tools)
    assert mistral == (f"[AVAILABLE_TOOLS] [{tool_json}][/AVAILABLE_TOOLS][INST] Weather in Paris? [/INST]"
                       '[TOOL_CALLS] [{"name": "get_weather", "arguments": {"city":"Paris"}}]</s>'
                       '[TOOL_RESULTS] {"content": "22C"}[/TOOL_RESULTS]')
    command_r = render_chat(named("command-r"), history, tools=tools)
    assert "def get_weather(city: string, ) -> List[Dict]:" in command_r
    assert "city (string): City name" in command_r
    assert '{"tool_name": "get_weather", "parameters": {"city":"Paris"}}' in command_r
    # Without tools nothing about them appears.
    assert "<tools>" not in render_chat(named("chatml"), SINGLE)


# ---- Ollama's rules ----------------------------------------------------------------------------

def test_consecutive_same_role_messages_are_merged() -> None:
    msgs = [{"role": "user", "content": "one"}, {"role": "user", "content": "two"}]
    assert render_chat(named("chatml"), msgs) == "<|im_start|>user\none\n\ntwo<|im_end|>\n<|im_start|>assistant\n"


def test_system_collects_all_system_messages() -> None:
    tmpl = "{{ .System }}|{{ range .Messages }}{{ .Role }},{{ end }}"
    msgs = [{"role": "system", "content": "a"}, {"role": "user", "content": "u"}, {"role": "system", "content": "b"}]
    assert render_chat(model(tmpl), msgs) == "a\n\nb|system,user,system,"


def test_modelfile_messages_come_before_the_request() -> None:
    m = model(named_template("chatml").template, system="S",
              messages=[{"role": "user", "content": "m1"}, {"role": "assistant", "content": "m2"}])
    assert render_chat(m, [{"role": "user", "content": "q"}]) == (
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nm1<|im_end|>\n<|im_start|>assistant\nm2<|im_end|>\n"
        "<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\n")
    # A system message in the request replaces the model's SYSTEM.
    assert render_chat(m, [{"role": "system", "content": "R"}, {"role": "user", "content": "q"}]).count("S<|im_end|>") == 0


LEGACY = "{{ if .System }}<<{{ .System }}>>{{ end }}[{{ .Prompt }}]{{ .Response }}<end>\n"


def test_legacy_template_renders_turn_by_turn() -> None:
    msgs = [{"role": "system", "content": "sys"}, {"role": "user", "content": "u1"},
            {"role": "assistant", "content": "a1"}, {"role": "user", "content": "u2"}]
    # The last turn stops right after .Response, so the model continues from there.
    assert render_chat(model(LEGACY), msgs) == "<<sys>>[u1]a1<end>\n[u2]"


def test_legacy_trailing_assistant_is_a_prefill() -> None:
    msgs = [{"role": "user", "content": "u1"}, {"role": "assistant", "content": "The answer is"}]
    assert render_chat(model(LEGACY), msgs) == "[u1]The answer is"


def test_legacy_template_without_response_gets_one_appended() -> None:
    msgs = [{"role": "user", "content": "u1"}, {"role": "assistant", "content": "a1"}, {"role": "user", "content": "u2"}]
    assert render_chat(model("Q: {{ .Prompt }}\nA: "), msgs) == "Q: u1\nA: a1Q: u2\nA: "


def test_generate_uses_system_prompt_and_history() -> None:
    m = model(LEGACY, system="model-sys", messages=[{"role": "user", "content": "h1"}, {"role": "assistant", "content": "h2"}])
    assert render_generate(m, "hello") == "<<model-sys>>[h1]h2<end>\n[hello]"
    assert render_generate(m, "hello", system="req-sys") == "<<req-sys>>[h1]h2<end>\n[hello]"
    assert render_generate(m, "hello", include_history=False) == "<<model-sys>>[hello]"
    assert render_generate(m, "hello", template_override="{{ .Prompt }}!") == "h1!h2hello!"
    assert render_generate(named("chatml"), "hi") == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


def test_generate_with_suffix() -> None:
    fim = model("{{ if .Suffix }}<PRE> {{ .Prompt }} <SUF>{{ .Suffix }} <MID>{{ else }}{{ .Prompt }}{{ end }}")
    assert render_generate(fim, "def f(", suffix="    return x") == "<PRE> def f( <SUF>    return x <MID>"
    with pytest.raises(BadRequest, match="insert"):
        render_generate(named("chatml"), "x", suffix="y")


def test_default_template_is_the_prompt() -> None:
    assert render_generate(model(None), "just this") == "just this"


def test_think_values_reach_the_template() -> None:
    tmpl = "{{ if .IsThinkSet }}{{ if .Think }}T{{ .ThinkLevel }}{{ else }}F{{ end }}{{ else }}unset{{ end }}{{ range .Messages }}{{ end }}"
    assert render_chat(model(tmpl), SINGLE) == "unset"
    assert render_chat(model(tmpl), SINGLE, think=True) == "T"
    assert render_chat(model(tmpl), SINGLE, think=False) == "F"
    assert render_chat(model(tmpl), SINGLE, think="high") == "Thigh"
    with pytest.raises(BadRequest, match="think"):
        render_chat(model(tmpl), SINGLE, think="extreme")


@pytest.mark.parametrize("messages,fragment", [
    ("nope", "messages must be a list"),
    ([{"content": "x"}], "role is required"),
    ([{"role": "user", "content": 5}], "content must be a string"),
    ([{"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "f", "arguments": "{bad"}}]}], "not valid JSON"),
])
def test_bad_messages(messages: Any, fragment: str) -> None:
    with pytest.raises(BadRequest, match=fragment):
        render_chat(named("chatml"), messages)


def test_bad_template_at_render_is_bad_request() -> None:
    with pytest.raises(BadRequest, match="template: line 1"):
        render_generate(named("chatml"), "x", template_override="{{ .Prompt ")


# ---- detection and stops ----------------------------------------------------------------------

def test_gguf_jinja_is_rendered_not_swapped_and_has_no_named_stops() -> None:
    jinja = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
             "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
    m = model(None, chat_template=jinja)
    assert render_chat(m, SINGLE) == FORMATS["chatml"][0]
    # The runner ends on the vocabulary's end-of-generation tokens; no named template's stops apply.
    assert stop_for(m) == []
    assert go_template_for(m) is None
    # What the Jinja adds beyond the named format (Qwen's default system prompt) stays.
    qwen_like = ("{% if messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nDefault.<|im_end|>\\n' }}{% endif %}"
                 + jinja)
    assert detect_template(qwen_like) is not None and detect_template(qwen_like).name == "chatml"
    assert render_chat(model(None, chat_template=qwen_like), SINGLE) == (
        "<|im_start|>system\nDefault.<|im_end|>\n" + FORMATS["chatml"][0])
    # A Modelfile TEMPLATE wins over the GGUF's template; then no default stops apply...
    assert stop_for(model("{{ .Prompt }}", chat_template=jinja)) == []
    # ...unless it is exactly one of the named templates (what a pull stores).
    assert stop_for(model(named_template("phi-3").template)) == ["<|end|>", "<|system|>", "<|user|>", "<|assistant|>"]


@needs_reference
def test_detection_matches_ollamas_index() -> None:
    entries = json.loads((REFERENCE / "index.json").read_text())
    assert len(entries) > 30
    for entry in entries:
        found = detect_template(entry["template"])
        assert found is not None and found.name == entry["name"], (entry["name"], entry["template"][:80])


def test_unknown_or_thinking_templates_are_not_mapped() -> None:
    assert detect_template("{{ messages[0]['content'] }}") is None
    qwen3_like = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if enable_thinking is defined %}<think>{% endif %}"
    assert detect_template(qwen3_like) is None


# ---- Ollama's reference templates with our engine ---------------------------------------------

SAME_AS_OURS = ["alfred", "alpaca", "chatml", "chatqa", "codellama-70b-instruct", "granite-instruct",
                "llama3-instruct", "magicoder", "openchat", "phi-3", "solar-instruct", "starcoder2-instruct",
                "vicuna", "zephyr"]


@needs_reference
@pytest.mark.parametrize("name", SAME_AS_OURS)
def test_reference_templates_render_the_documented_format(name: str) -> None:
    ref = model((REFERENCE / f"{name}.gotmpl").read_text())
    ours = named(name)
    for conversation in (SINGLE, EXCHANGE, WITH_SYSTEM):
        assert render_chat(ref, conversation) == render_chat(ours, conversation)
    stops = json.loads((REFERENCE / f"{name}.json").read_text())["stop"]
    assert list(named_template(name).stop) == stops


@needs_reference
def test_reference_templates_exact_outputs() -> None:
    def ref(name: str) -> Any:
        return model((REFERENCE / f"{name}.gotmpl").read_text())

    assert render_chat(ref("llama2-chat"), WITH_SYSTEM) == (
        "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHello [/INST] Hi there</s><s>[INST] <<SYS>><</SYS>>\n\nHow are you? [/INST]")
    assert render_chat(ref("mistral-instruct"), WITH_SYSTEM) == (
        "[INST] Be brief.\n\nHello[/INST] Hi there</s>[INST] How are you?[/INST]")
    assert render_chat(ref("gemma-instruct"), WITH_SYSTEM) == (
        "<start_of_turn>user\nBe brief.\nHello<end_of_turn>\n<start_of_turn>model\nHi there<end_of_turn>\n"
        "<start_of_turn>user\nHow are you?<end_of_turn>\n<start_of_turn>model\n")
    assert render_chat(ref("command-r"), SINGLE).startswith(
        "<|START_OF_TURN_TOKEN|><|USER_TOKEN|>Hello<|END_OF_TURN_TOKEN|>")
    assert render_chat(ref("falcon-instruct"), WITH_SYSTEM) == (
        "System: Be brief.\nUser:\nHello\nFalcon:\nHi there\nUser:\nHow are you?\nFalcon:\n")
    tools = [{"type": "function", "function": {"name": "f", "description": "d", "parameters": {
        "type": "object", "properties": {"x": {"type": "integer", "description": "an x"}}}}}]
    text = render_chat(ref("command-r"), SINGLE, tools=tools)
    assert "def f(x: integer, ) -> List[Dict]:" in text and "x (integer): an x" in text


@needs_reference
def test_every_reference_template_parses() -> None:
    files = sorted(REFERENCE.glob("*.gotmpl"))
    assert len(files) == 20
    for path in files:
        check_template(path.read_text())
        assert render_chat(model(path.read_text()), EXCHANGE)


def test_legacy_condition_on_response_does_not_cut() -> None:
    tmpl = "[{{ .Prompt }}]{{ if .Response }}R:{{ end }}{{ .Response }}<end>"
    msgs = [{"role": "user", "content": "u1"}, {"role": "assistant", "content": "a1"}, {"role": "user", "content": "u2"}]
    assert render_chat(model(tmpl), msgs) == "[u1]R:a1<end>[u2]"


def test_go_template_sees_tool_call_id_and_tool_call_ids() -> None:
    """Ollama's template message has .ToolCallID (a tool result) and .ToolCalls[].ID (api/types.go)."""
    tmpl = ('{{ range .Messages }}{{ .Role }}:{{ if eq .Role "tool" }}[{{ .ToolCallID }}|{{ .ToolName }}]{{ end }}'
            '{{ range .ToolCalls }}<{{ .ID }} {{ .Function.Name }} {{ .Function.Arguments }}>{{ end }}{{ .Content }};{{ end }}')
    msgs = [{"role": "user", "content": "q"},
            {"role": "assistant", "content": "", "tool_calls": [
                {"id": "call_1", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
            {"role": "tool", "content": "sunny", "tool_name": "get_weather", "tool_call_id": "call_1"},
            {"role": "tool", "content": "no id"}]
    assert render_chat(model(tmpl), msgs) == (
        'user:q;assistant:<call_1 get_weather {"city":"Paris"}>;tool:[call_1|get_weather]sunny;tool:[|]no id;')
