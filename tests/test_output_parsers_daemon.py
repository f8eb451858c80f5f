"""Output parsers and think levels through the real daemon with the tiny model and the official client.

A JSON-schema grammar makes the tiny random model write a bare JSON call; which parser the model
names decides what it becomes: the generic parser (no name) and ``llama3`` (bare JSON is its call
form) give a tool call, ``passthrough`` and ``qwen3`` (whose calls are ``<tool_call>``-tagged) give
content, an unknown name falls back to the generic parser. The model's parser name is its config's
``parser`` field, as Ollama stores the Modelfile's ``PARSER``: the tests write it into a copy of
the model's manifest.

Think levels reach the template as ``.ThinkLevel``: a template that writes eight extra words for
``"max"`` makes only that level's prompt longer; ``"max"`` used to be a 400.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import ollama
import pytest

from tests.daemon import Daemon
from tests.helpers import assert_api_error
from tests.infer_helpers import create_model, start_serving_daemon, with_parser

pytestmark = pytest.mark.e2e

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
CALL_SCHEMA = {"type": "object", "properties": {
    "name": {"const": "get_weather"},
    "parameters": {"type": "object", "properties": {"city": {"enum": ["Paris", "Oslo"]}}, "required": ["city"]}},
    "required": ["name", "parameters"]}
OPTS = {"num_predict": 64, "seed": 7, "temperature": 0}
QUESTION = [{"role": "user", "content": "Weather in Oslo?"}]
SHORT = "PARAMETER num_predict 6\nPARAMETER seed 5\nPARAMETER temperature 0\n"
# With thinking on the prompt opens a <think> block: all the (random) answer is thinking.
THINKER_TEMPLATE = "{{ range .Messages }}{{ .Role }}: {{ .Content }}\n{{ end }}assistant: {{ if .Think }}<think>{{ end }}"
THINK_TEMPLATE = ('{{ if .Think }}{{ if eq .ThinkLevel "max" }}one two three four five six seven eight {{ end }}'
                  "{{ end }}{{ range .Messages }}{{ .Role }}: {{ .Content }}\n{{ end }}assistant: ")


@pytest.fixture(scope="module")
def d(tmp_path_factory: pytest.TempPathFactory, tiny_chat_gguf: Path) -> Iterator[Daemon]:
    home = tmp_path_factory.mktemp("parsers")
    daemon = start_serving_daemon(home, tiny_chat_gguf, tools=True)
    create_model(daemon, "think", f'FROM {tiny_chat_gguf}\nTEMPLATE """{THINK_TEMPLATE}"""\n{SHORT}', home)
    create_model(daemon, "thinker", f'FROM {tiny_chat_gguf}\nTEMPLATE """{THINKER_TEMPLATE}"""\n{SHORT}', home)
    for parser in ("passthrough", "llama3", "qwen3", "nope"):
        with_parser(daemon, "tools", f"tools-{parser}", parser)
    yield daemon
    print(daemon.logs())
    daemon.stop()


def _calls(resp: ollama.ChatResponse) -> list[tuple[str, dict[str, object]]]:
    return [(c.function.name, dict(c.function.arguments)) for c in resp.message.tool_calls or []]


@pytest.mark.parametrize("model, is_call", [
    ("tools", True), ("tools-llama3", True), ("tools-nope", True), ("tools-passthrough", False), ("tools-qwen3", False),
])
def test_the_named_parser_decides_what_the_output_is(d: Daemon, model: str, is_call: bool) -> None:
    client = ollama.Client(host=d.base_url)
    for stream in (False, True):
        if stream:
            parts = list(client.chat(model=model, messages=QUESTION, tools=[WEATHER], format=CALL_SCHEMA,
                                     options=OPTS, stream=True))
            content = "".join(p.message.content or "" for p in parts)
            calls = [(c.function.name, dict(c.function.arguments)) for p in parts for c in p.message.tool_calls or []]
        else:
            resp = client.chat(model=model, messages=QUESTION, tools=[WEATHER], format=CALL_SCHEMA, options=OPTS)
            content, calls = resp.message.content or "", _calls(resp)
        if is_call:
            assert len(calls) == 1 and calls[0][0] == "get_weather" and content == "", (model, content, calls)
            assert calls[0][1]["city"] in ("Paris", "Oslo")
        else:
            assert calls == [], (model, calls)
            assert json.loads(content)["name"] == "get_weather", (model, content)


def test_show_reports_the_parser_capabilities(d: Daemon) -> None:
    """A parser that yields calls gives the model the tools capability, even with no .Tools template."""
    status, body = d.request("POST", "/api/create", {"model": "plain-qwen3", "from": "tiny", "stream": False})
    assert status == 200, body
    with_parser(d, "plain-qwen3", "plain-qwen3", "qwen3-thinking")
    info = ollama.Client(host=d.base_url).show("plain-qwen3")
    assert "tools" in (info.capabilities or []) and "thinking" in (info.capabilities or [])
    assert "tools" not in (ollama.Client(host=d.base_url).show("tiny").capabilities or [])


@pytest.mark.parametrize("think", [True, "low", "medium", "high", "max", False])
def test_think_levels_through_the_official_client(d: Daemon, think: bool | str) -> None:
    client = ollama.Client(host=d.base_url)
    short = {"num_predict": 1, "seed": 1, "temperature": 0}
    base = client.chat(model="think", messages=QUESTION, think="high", options=short).prompt_eval_count or 0
    resp = client.chat(model="think", messages=QUESTION, think=think, options=short)
    assert resp.done
    # Only "max" reaches the template's max branch: eight more words of prompt.
    extra = (resp.prompt_eval_count or 0) - base
    assert extra > 0 if think == "max" else extra == 0, (think, resp.prompt_eval_count, base)
    gen = client.generate(model="think", prompt="hi", think=think, options=short)
    assert gen.done


@pytest.mark.parametrize("think, fragment", [("extreme", "invalid think value"), (3, "invalid think value")])
def test_bad_think_values_are_400(d: Daemon, think: object, fragment: str) -> None:
    status, body = d.request("POST", "/api/chat", {"model": "think", "messages": QUESTION, "think": think,
                                                   "stream": False})
    assert_api_error(status, body, 400, fragment)


def test_think_level_on_a_model_without_thinking_is_400(d: Daemon) -> None:
    status, body = d.request("POST", "/api/chat", {"model": "tiny", "messages": QUESTION, "think": "max",
                                                   "stream": False})
    assert_api_error(status, body, 400, "does not support thinking")


# -- the CLI -------------------------------------------------------------------------------------------
def _prompt_tokens(stderr: str) -> int:
    line = next(ln for ln in stderr.splitlines() if ln.startswith("prompt eval count:"))
    return int(line.split(":")[1].split()[0])


def test_run_think_levels_reach_the_template(d: Daemon) -> None:
    high = d.cli("run", "think", "--think=high", "--verbose", "hi")
    top = d.cli("run", "think", "--think=max", "--verbose", "hi")
    assert high.returncode == 0 and top.returncode == 0, (high.stderr, top.stderr)
    assert _prompt_tokens(top.stderr) > _prompt_tokens(high.stderr)


def test_run_bare_think_shows_thinking_and_hidethinking_hides_it(d: Daemon) -> None:
    # A bare --think takes no value: "Why?" stays the prompt.
    shown = d.cli("run", "thinker", "--think", "Why?")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("Thinking...\n") and len(shown.stdout) > len("Thinking...\n"), shown.stdout
    hidden = d.cli("run", "thinker", "--think", "--hidethinking", "Why?")
    assert hidden.returncode == 0, hidden.stderr
    assert "Thinking..." not in hidden.stdout and hidden.stdout.strip() == "", hidden.stdout
    off = d.cli("run", "thinker", "--nothink", "Why?")
    assert off.returncode == 0 and "Thinking..." not in off.stdout, off.stdout
    api = d.request("POST", "/api/chat", {"model": "thinker", "think": False, "stream": False,
                                          "messages": [{"role": "user", "content": "Why?"}]})[1]
    assert off.stdout.strip() == api["message"]["content"].strip() and "thinking" not in api["message"]


@pytest.mark.parametrize("args", [("--think=extreme",), ("--think=HIGH",)])
def test_run_bad_think_level_is_refused(d: Daemon, args: tuple[str, ...]) -> None:
    result = d.cli("run", "thinker", *args, "hi")
    assert result.returncode != 0 and "--think" in result.stderr and "max" in result.stderr, result.stderr


def test_openai_reasoning_effort_reaches_the_template(d: Daemon) -> None:
    import openai

    client = openai.OpenAI(base_url=d.base_url + "/v1", api_key="unused", max_retries=0)

    def prompt_tokens(effort: str) -> int:
        resp = client.chat.completions.create(model="think", messages=[{"role": "user", "content": "hi"}],
                                              reasoning_effort=effort, max_tokens=1)  # type: ignore[arg-type]
        assert resp.usage is not None
        return resp.usage.prompt_tokens

    high = prompt_tokens("high")
    assert prompt_tokens("xhigh") > high and prompt_tokens("max") > high  # both are the "max" level
    assert prompt_tokens("minimal") == high == prompt_tokens("low")
    with pytest.raises(openai.BadRequestError, match="reasoning"):
        prompt_tokens("extreme")
