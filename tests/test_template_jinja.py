"""GGUF Jinja chat templates we do not map to a named template: rendered in jinja2's sandbox,
with hostile templates rejected quickly as BadRequest."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from ollamalike.errors import BadRequest
from ollamalike.template import render_chat, render_generate, stop_for
from tests.fake_models import FakeInfo, FakeModel


def jinja_model(chat_template: str, system: str = "") -> FakeModel:
    info = FakeInfo(chat_template=chat_template, bos_token="<BOS>", eos_token="<EOS>")
    return FakeModel(template=None, system=system, messages=[], info=info)


CUSTOM = (
    "{{ bos_token }}{% for m in messages %}<{{ m['role'] }}>{{ m['content'] | trim }}</{{ m['role'] }}>"
    "{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}"
)


def test_unknown_jinja_template_renders_directly() -> None:
    m = jinja_model(CUSTOM, system="S")
    assert render_chat(m, [{"role": "user", "content": " hi "}]) == "<BOS><system>S</system><user>hi</user><assistant>"
    assert stop_for(m) == []
    assert render_generate(m, "p") == "<BOS><system>S</system><user>p</user><assistant>"


def test_trailing_assistant_is_a_prefill_without_generation_prompt() -> None:
    m = jinja_model(CUSTOM)
    msgs = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "part"}]
    assert render_chat(m, msgs) == "<BOS><user>q</user><assistant>part"
    # The end-of-turn markup after the final message is dropped too (transformers' continue_final_message).
    from ollamalike.template.jinja import render_jinja

    chatml = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}"
              "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
    assert render_jinja(chatml, msgs, [], None) == "<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\npart"


def test_tools_tool_calls_helpers_and_thinking_flag() -> None:
    tmpl = (
        "{% if tools %}{% for t in tools %}[{{ t.function.name }}:{{ t | tojson }}]{% endfor %}{% endif %}"
        "{% for m in messages %}{% if m.tool_calls %}{% for c in m.tool_calls %}CALL {{ c.function.name }}"
        " {{ c.function.arguments | tojson }}{% endfor %}{% elif m.role == 'tool' %}RESULT({{ m.name }}) {{ m.content }}"
        "{% else %}{{ m.role }}: {{ m.content }}{% endif %}\n{% endfor %}"
        "{% if enable_thinking is defined and not enable_thinking %}NOTHINK{% endif %}"
        "{{ strftime_now('%Y') | length }}"
    )
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    msgs = [{"role": "user", "content": "go"},
            {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "f", "arguments": {"a": "é"}}}]},
            {"role": "tool", "content": "ok", "tool_name": "f"}]
    out = render_chat(jinja_model(tmpl), msgs, tools=tools, think=False)
    # trim_blocks (as transformers renders) eats the newline after each block tag.
    assert out == ('[f:{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]'
                   'user: goCALL f {"a": "é"}RESULT(f) okNOTHINK4')


def test_generation_tag_renders_its_body() -> None:
    tmpl = "{% for m in messages %}{% if m.role == 'assistant' %}{% generation %}[{{ m.content }}]{% endgeneration %}{% else %}{{ m.content }}{% endif %}{% endfor %}"
    msgs = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}, {"role": "user", "content": "r"}]
    assert render_chat(jinja_model(tmpl), msgs) == "q[a]r"


def test_raise_exception_is_a_clear_error() -> None:
    m = jinja_model("{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}")
    with pytest.raises(BadRequest, match="chat template: System role not supported"):
        render_chat(m, [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}])


def test_syntax_error_is_bad_request() -> None:
    with pytest.raises(BadRequest, match="chat template"):
        render_chat(jinja_model("{% for m in messages %}"), [{"role": "user", "content": "u"}])


HOSTILE = [
    ("class escape", "{{ ''.__class__.__mro__[1].__subclasses__() }}"),
    ("globals escape", "{{ raise_exception.__globals__ }}"),
    ("builtin global escape", "{{ cycler.__init__.__globals__.os }}"),
    ("lipsum escape", "{{ lipsum.__globals__['os'].popen('id').read() }}"),
    ("bound method escape", "{{ range.__self__ }}"),
    ("template self escape", "{{ self.__init__.__globals__ }}"),
    ("mro via attr filter", "{{ (messages|attr('__class__')).__mro__ }}"),
    ("huge range", "{% for i in range(10**9) %}x{% endfor %}"),
    ("huge string multiplication", "{{ 'a' * 10**10 }}"),
    ("huge list multiplication", "{{ ([1] * 10**9) | length }}"),
    ("exponent bomb", "{{ 10 ** (10 ** 10) }}"),
    ("squaring bomb", "{% set ns = namespace(x=10) %}{% for i in range(64) %}{% set ns.x = ns.x * ns.x %}{% endfor %}{{ ns.x }}"),
    ("doubling concatenation", "{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s | length }}"),
    ("nested loops", "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"),
    ("output flood", "{% for i in range(100000) %}{% for j in range(100000) %}xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx{% endfor %}{% endfor %}"),
    ("recursive macro", "{% macro r(n) %}{{ r(n + 1) }}{% endmacro %}{{ r(0) }}"),
    ("list mutation", "{% set l = [] %}{{ l.append(1) }}"),
    ("format string attack", "{{ '{0.__class__}'.format(messages) }}"),
]


@pytest.mark.parametrize("name,template", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_jinja_is_rejected_quickly(name: str, template: str) -> None:
    started = time.monotonic()
    with pytest.raises(BadRequest) as err:
        render_chat(jinja_model(template), [{"role": "user", "content": "u"}])
    elapsed = time.monotonic() - started
    assert str(err.value).startswith("chat template"), str(err.value)
    assert "\n" not in str(err.value)
    assert elapsed < 10, f"{name} took {elapsed:.1f}s"


REFERENCE = Path(__file__).resolve().parent.parent.parent / "shared" / "reference" / "ollama-templates"


@pytest.mark.skipif(not (REFERENCE / "index.json").is_file(), reason="shared/reference is not checked out")
def test_real_world_jinja_templates_render_in_the_sandbox() -> None:
    from ollamalike.template.jinja import render_jinja

    exchange = [{"role": "user", "content": "Hello", "tool_calls": []},
                {"role": "assistant", "content": "Hi there", "tool_calls": []},
                {"role": "user", "content": "How are you?", "tool_calls": []}]
    tools = [{"type": "function", "function": {"name": "f", "description": "d", "parameters": {"type": "object", "properties": {}}}}]
    entries = json.loads((REFERENCE / "index.json").read_text())
    for entry in entries:
        for tool_list in ([], tools):
            out = render_jinja(entry["template"], exchange, tool_list, None, bos_token="<s>", eos_token="</s>")
            assert "Hello" in out and "Hi there" in out and "How are you?" in out, (entry["name"], out)
            assert out.index("Hello") < out.index("Hi there") < out.index("How are you?")


def test_tools_and_documents_are_defined_as_none_like_transformers() -> None:
    """transformers always passes ``tools`` (None without tools) and ``documents``: ``tools is not none``
    must be false without tools, and a template reading ``documents`` must not fail."""
    tmpl = ("{% if tools is not none %}TOOLS{{ tools | length }}{% else %}NOTOOLS{% endif %}"
            "{% if documents is none %}|NODOCS{% endif %}|{{ messages[-1].content }}")
    msgs = [{"role": "user", "content": "u"}]
    assert render_chat(jinja_model(tmpl), msgs) == "NOTOOLS|NODOCS|u"
    assert render_chat(jinja_model(tmpl), msgs, tools=[]) == "NOTOOLS|NODOCS|u"
    tools = [{"type": "function", "function": {"name": "f"}}]
    assert render_chat(jinja_model(tmpl), msgs, tools=tools) == "TOOLS1|NODOCS|u"


def test_tojson_is_transformers_tojson() -> None:
    """Python's default separators, no HTML escaping, keys in the client's order, non-ASCII kept;
    keyword options as transformers takes them (ensure_ascii, indent, separators, sort_keys)."""
    value = {"z": "<a&b>'é'", "a": [1, 2]}
    tools = [{"type": "function", "function": {"name": "f", "parameters": value}}]
    cases = [
        ("{{ tools[0].function.parameters | tojson }}", json.dumps(value, ensure_ascii=False)),
        ("{{ tools[0].function.parameters | tojson(indent=2) }}", json.dumps(value, ensure_ascii=False, indent=2)),
        ("{{ tools[0].function.parameters | tojson(sort_keys=true) }}",
         json.dumps(value, ensure_ascii=False, sort_keys=True)),
        ("{{ tools[0].function.parameters | tojson(separators=(',', ':')) }}",
         json.dumps(value, ensure_ascii=False, separators=(",", ":"))),
        ("{{ tools[0].function.parameters | tojson(ensure_ascii=true) }}", json.dumps(value)),
    ]
    for tmpl, expected in cases:
        assert render_chat(jinja_model(tmpl), [{"role": "user", "content": "u"}], tools=tools) == expected, tmpl


def test_tool_call_ids_and_tool_call_id_reach_the_template() -> None:
    """An assistant turn's tool calls carry their ``id`` (HF shape: id, type, function with a dict of
    arguments); a tool result carries ``tool_call_id`` and the tool's name."""
    tmpl = ("{% for m in messages %}{% if m.tool_calls %}{% for c in m.tool_calls %}"
            "CALL {{ c | tojson }};{% endfor %}{% elif m.role == 'tool' %}RESULT {{ m.tool_call_id }}"
            " {{ m.name }} {{ m.content }};{% else %}{{ m.role }} {{ m.content }};{% endif %}{% endfor %}")
    msgs = [{"role": "user", "content": "weather?"},
            {"role": "assistant", "content": "",
             "tool_calls": [{"id": "call_a", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
                            {"id": "call_b", "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'}}]},
            {"role": "tool", "content": "sunny", "tool_name": "get_weather", "tool_call_id": "call_a"},
            {"role": "tool", "content": "rain", "tool_name": "get_weather", "tool_call_id": "call_b"}]
    out = render_chat(jinja_model(tmpl), msgs)
    call_a = {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
    call_b = {"id": "call_b", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Rome"}}}
    assert out == (f"user weather?;CALL {json.dumps(call_a)};CALL {json.dumps(call_b)};"
                   "RESULT call_a get_weather sunny;RESULT call_b get_weather rain;")
    # Without ids (Ollama's own clients send none) the keys are simply absent.
    bare = [msgs[0], {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "f", "arguments": {}}}]},
            {"role": "tool", "content": "ok"}]
    probe = "{% for m in messages %}{{ m.tool_call_id is defined }}{% for c in m.tool_calls or [] %}{{ c.id is defined }}{% endfor %};{% endfor %}"
    assert render_chat(jinja_model(probe), bare) == "False;FalseFalse;False;"


def test_chat_request_ids_survive_parsing_into_both_template_kinds() -> None:
    """The path /api/chat takes: parse_chat_request, then render_chat. Tool call ids and a tool
    result's tool_call_id reach a Jinja template and a Go template alike."""
    from ollamalike.inference.requests import parse_chat_request

    req = parse_chat_request({"model": "m", "messages": [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "call_9", "function": {"name": "f", "arguments": {"x": 1}}}]},
        {"role": "tool", "content": "r", "tool_name": "f", "tool_call_id": "call_9"}]})
    jinja = ("{% for m in messages %}{% for c in m.tool_calls or [] %}<{{ c.id }}>{% endfor %}"
             "{% if m.role == 'tool' %}[{{ m.tool_call_id }}]{% endif %}{% endfor %}")
    assert render_chat(jinja_model(jinja), req.messages) == "<call_9>[call_9]"
    go = "{{ range .Messages }}{{ range .ToolCalls }}<{{ .ID }}>{{ end }}{{ if .ToolCallID }}[{{ .ToolCallID }}]{{ end }}{{ end }}"
    go_model = FakeModel(template=go, system="", messages=[], info=FakeInfo(chat_template=None))
    assert render_chat(go_model, req.messages) == "<call_9>[call_9]"


# Gemma-style templates (written for this test): the first has no system role at all, the second
# folds a system message into the first user turn. Both rename the assistant to "model".
GEMMA_NO_SYSTEM = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
    "{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + '<end_of_turn>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{% endif %}"
)
GEMMA_FOLDED_SYSTEM = """{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- set prefix = messages[0]['content'] + '\\n\\n' -%}
    {%- set turns = messages[1:] -%}
{%- else -%}
    {%- set prefix = '' -%}
    {%- set turns = messages -%}
{%- endif -%}
{%- for message in turns -%}
    {%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}
    {{ '<start_of_turn>' + role + '\\n' + (prefix if loop.first else '') }}
    {{- message['content'] | trim }}
    {{- '<end_of_turn>\\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{ '<start_of_turn>model\\n' }}
{%- endif -%}
"""


@pytest.mark.parametrize("template", [GEMMA_NO_SYSTEM, GEMMA_FOLDED_SYSTEM], ids=["no-system", "folded-system"])
def test_gemma_style_templates_match_transformers(template: str) -> None:
    from tests.hf_reference import apply_chat_template

    turns = [{"role": "user", "content": " Hello "}, {"role": "assistant", "content": "Hi!"},
             {"role": "user", "content": "Why is the sky blue?"}]
    special = {"bos_token": "<BOS>", "eos_token": "<EOS>"}
    assert render_chat(jinja_model(template), turns) == apply_chat_template(template, turns, **special)
    with_system = [{"role": "system", "content": "Be brief."}, *turns]
    if template is GEMMA_NO_SYSTEM:
        # transformers raises the template's error; so do we, as a one-line 400.
        with pytest.raises(BadRequest, match="chat template: System role not supported"):
            render_chat(jinja_model(template), with_system)
        with pytest.raises(BadRequest, match="roles must alternate"):
            render_chat(jinja_model(template), [turns[0], turns[0]])
    else:
        expected = apply_chat_template(template, with_system, **special)
        assert render_chat(jinja_model(template), with_system) == expected
        assert "<start_of_turn>user\nBe brief.\n\nHello<end_of_turn>" in expected
