"""Named renderers in use: ``render_chat``/``render_generate`` choose a model's built-in renderer over
its TEMPLATE and the GGUF's Jinja; create refuses an unknown RENDERER; a model created with one
renders through /api/render, and its prompt reaches the runner from /api/chat, /api/generate,
/v1/chat/completions, /v1/responses and /v1/messages (one inference path); ``show --modelfile``
rebuilds it to the same digest."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from ollamalike.config import load_config
from ollamalike.errors import BadRequest
from ollamalike.inference import InferenceService
from ollamalike.server.app import make_app
from ollamalike.template import render_chat, render_generate
from ollamalike.template.renderers import OLLAMA_ONLY, RENDERERS, check_renderer
from tests.fake_models import FakeInfo, FakeModel
from tests.fakes import StubRunner
from tests.helpers import assert_api_error

GO_TEMPLATE = "{{ range .Messages }}[{{ .Role }}]{{ .Content }}{{ end }}[assistant]"
HI = [{"role": "user", "content": "Hi"}]


# --- choosing the renderer -------------------------------------------------------------------------

def test_a_named_renderer_wins_over_the_template_and_sees_system_and_history() -> None:
    model = FakeModel(template=GO_TEMPLATE, system="Be terse.", renderer="qwen3-coder",
                      messages=[{"role": "user", "content": "Old"}, {"role": "assistant", "content": "Reply"}])
    assert render_chat(model, HI) == (
        "<|im_start|>system\nBe terse.<|im_end|>\n<|im_start|>user\nOld<|im_end|>\n"
        "<|im_start|>assistant\nReply<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
    without = FakeModel(template=GO_TEMPLATE, system="Be terse.")
    assert render_chat(without, HI) == "[system]Be terse.[user]Hi[assistant]"


def test_request_tools_and_think_reach_the_renderer() -> None:
    model = FakeModel(renderer="deepseek3.1", info=FakeInfo(chat_template="{{ 'jinja' }}"))
    tools = [{"type": "function", "function": {"name": "f", "description": "d",
                                               "parameters": {"type": "object", "properties": {}}}}]
    on = render_chat(model, HI, tools=tools, think="high")
    assert on.startswith("<｜begin▁of▁sentence｜>\n\n## Tools\n") and "\n### f\nDescription: d\n" in on
    assert on.endswith("<｜User｜>Hi<｜Assistant｜><think>")
    assert render_chat(model, HI, think=False).endswith("<｜Assistant｜></think>")
    with pytest.raises(BadRequest, match="invalid think value"):
        render_chat(model, HI, think="extreme")


def test_generate_renders_system_and_prompt_with_the_renderer() -> None:
    model = FakeModel(template="{{ .Prompt }}|{{ .Suffix }}", system="S", renderer="glm-4.7")
    assert render_generate(model, "Q") == "[gMASK]<sop><|system|>S<|user|>Q<|assistant|><think>"
    assert render_generate(model, "Q", think=False).endswith("<|assistant|></think>")
    # A request's own template and fill-in-the-middle are the template's business, as in Ollama.
    assert render_generate(model, "Q", template_override="<{{ .Prompt }}>") == "<Q>"
    assert render_generate(model, "Q", suffix="E") == "Q|E"


def test_a_renderer_we_lack_falls_back_to_the_template_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    name = sorted(OLLAMA_ONLY)[0]
    model = FakeModel(template=GO_TEMPLATE, renderer=name)
    with caplog.at_level(logging.WARNING, logger="ollamalike.template"):
        assert render_chat(model, HI) == "[user]Hi[assistant]"
        assert render_chat(model, HI) == "[user]Hi[assistant]"
    assert [r.getMessage() for r in caplog.records if name in r.getMessage()] == [
        f"renderer {name!r} is not built in here: the model's template renders its prompts"]


@pytest.mark.parametrize(("name", "ok"), [
    ("qwen3-coder", True), ("glm-4.7", True), ("lfm2-thinking", True), ("gemma4", True), ("glimmer", True),
    ("harmony", False), ("qwen3", False), ("QWEN3-CODER", False), ("deepseek3", False),
])
def test_check_renderer(name: str, ok: bool) -> None:
    if ok:
        check_renderer(name)
        return
    with pytest.raises(BadRequest) as info:
        check_renderer(name)
    assert str(info.value).startswith(f'unknown renderer "{name}": known renderers are cogito, cohere, deepseek3.1, ')
    assert info.value.status == 400


def test_qwen38_folds_every_instruction_into_one_system_turn_and_needs_a_user_query() -> None:
    from tests.renderer_cases import msg

    render = RENDERERS["qwen3.8"]
    chat = [msg("user", "Hi"), msg("developer", " Use French. "), msg("system", "Be terse."), msg("user", "Q")]
    assert render(chat, [], False) == (
        "<|im_start|>system\nUse French.\n\nBe terse.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n")
    for bad, message in (([], "no messages provided"),
                         ([msg("system", "s")], "no user query found in messages"),
                         ([msg("user", "<tool_response>\nx\n</tool_response>")], "no user query found in messages"),
                         ([msg("system", "s", images=["aGk="]), msg("user", "Q")], "system message cannot contain images")):
        with pytest.raises(BadRequest, match=message):
            render(bad, [], None)


def test_cohere_numbers_calls_over_the_chat_and_results_name_their_call() -> None:
    from tests.renderer_cases import call, msg

    first, second = call("a", x=1), call("b")
    first["id"], second["id"] = "call_x", "call_y"
    chat = [msg("user", "go"), msg("assistant", calls=[first]), msg("assistant", calls=[second]),
            msg("tool", "B", tool_call_id="call_y"), msg("tool", "A", tool_call_id="call_x"),
            msg("tool", "?", tool_call_id="call_z")]
    out = RENDERERS["cohere"](chat, [], False)
    assert out.count('"tool_call_id": "0", "tool_name": "a"') == 1 and '"tool_call_id": "1", "tool_name": "b"' in out
    results = out[out.index("<|START_TOOL_RESULT|>"):]
    assert [part.split('"', 1)[0] for part in results.split('"tool_call_id": "')[1:]] == ["1", "0", "call_z"]
    assert out.endswith("<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|><|START_THINKING|><|END_THINKING|>")


def test_the_registry_and_ollamas_other_names_do_not_overlap() -> None:
    assert not set(RENDERERS) & OLLAMA_ONLY and len(RENDERERS) == 17


# --- through the daemon ----------------------------------------------------------------------------

class PromptRunner(StubRunner):
    """Records every text it tokenizes (the rendered prompt) and answers "ok"."""

    def __init__(self) -> None:
        super().__init__()
        self.texts: list[str] = []

    async def tokenize(self, text: str, add_special: bool = True, images: Any = ()) -> list[int]:
        self.texts.append(text)
        return await super().tokenize(text, add_special, images)

    async def completion(self, prompt: Any, options: Any = None, format: Any = None, images: Any = (), *,
                         logprobs: int | None = None, shift: bool = True) -> Any:
        yield {"content": "ok"}
        yield {"done": True, "done_reason": "stop", "prompt_eval_count": len(prompt), "eval_count": 1}


class OneRunner:
    """A scheduler stand-in: every acquire leases the one runner."""

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


@pytest.fixture
async def client(aiohttp_client: Any) -> Any:
    return await aiohttp_client(make_app(load_config()))


async def _upload(client: Any, gguf: Path) -> str:
    data = gguf.read_bytes()
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    resp = await client.post(f"/api/blobs/{digest}", data=data)
    assert resp.status in (200, 201), await resp.text()
    return digest


async def _render(client: Any, name: str, **body: Any) -> str:
    resp = await client.post("/api/render", json={"model": name, **body})
    assert resp.status == 200, await resp.text()
    prompt = (await resp.json())["prompt"]
    assert isinstance(prompt, str)
    return prompt


async def test_renderer_changes_the_prompt_and_survives_show_modelfile(client: Any, tiny_chat_gguf: Path) -> None:
    digest = await _upload(client, tiny_chat_gguf)
    for name, extra in (("plain", {}), ("glm", {"renderer": "glm-4.7"})):
        resp = await client.post("/api/create", json={"model": name, "files": {"m.gguf": digest}, "stream": False,
                                                      "system": "Be terse.", **extra})
        assert resp.status == 200, await resp.text()
    # The tiny model's own (ChatML) template renders the plain one; the renderer writes GLM's format.
    plain = await _render(client, "plain", messages=HI)
    assert plain.startswith("<|im_start|>system\nBe terse.<|im_end|>\n")
    glm = await _render(client, "glm", messages=HI)
    assert glm == "[gMASK]<sop><|system|>Be terse.<|user|>Hi<|assistant|><think>"
    assert await _render(client, "glm", prompt="Q", think=False) == "[gMASK]<sop><|system|>Be terse.<|user|>Q<|assistant|></think>"

    resp = await client.post("/api/show", json={"model": "glm"})
    shown = await resp.json()
    assert shown["renderer"] == "glm-4.7" and "\nRENDERER glm-4.7\n" in shown["modelfile"]
    resp = await client.post("/api/create", json={"model": "again", "modelfile": shown["modelfile"], "stream": False})
    assert resp.status == 200, await resp.text()
    store = client.server.app["state"].store
    assert store.get_manifest("again")[0] == store.get_manifest("glm")[0]
    assert await _render(client, "again", messages=HI) == glm


@pytest.mark.parametrize(("body", "message"), [
    ({"renderer": "harmony"}, 'unknown renderer "harmony": known renderers are cogito'),
    ({"modelfile": "FROM {path}\nRENDERER qwen2"}, 'unknown renderer "qwen2"'),
])
async def test_create_refuses_an_unknown_renderer(client: Any, tiny_chat_gguf: Path, body: dict[str, Any],
                                                  message: str) -> None:
    if "modelfile" in body:
        body = {"modelfile": body["modelfile"].format(path=tiny_chat_gguf)}
    else:
        body = {**body, "files": {"m.gguf": await _upload(client, tiny_chat_gguf)}}
    resp = await client.post("/api/create", json={"model": "bad", "stream": False, **body})
    assert_api_error(resp.status, await resp.read(), 400, message)
    assert (await client.post("/api/show", json={"model": "bad"})).status == 404


async def test_every_chat_api_renders_with_the_models_renderer(client: Any, tiny_chat_gguf: Path) -> None:
    resp = await client.post("/api/create", json={"model": "glm", "files": {"m.gguf": await _upload(client, tiny_chat_gguf)},
                                                  "renderer": "glm-4.7", "stream": False})
    assert resp.status == 200, await resp.text()
    state = client.server.app["state"]
    runner = PromptRunner()
    state.inference = InferenceService(state.store, OneRunner(runner))  # type: ignore[arg-type]
    calls: list[tuple[str, dict[str, Any]]] = [
        ("/api/chat", {"model": "glm", "messages": HI, "stream": False}),
        ("/api/generate", {"model": "glm", "prompt": "Hi", "stream": False}),
        ("/v1/chat/completions", {"model": "glm", "messages": HI}),
        ("/v1/responses", {"model": "glm", "input": "Hi"}),
        ("/v1/messages", {"model": "glm", "max_tokens": 8, "messages": HI}),
    ]
    for path, body in calls:
        runner.texts.clear()
        resp = await client.post(path, json=body)
        assert resp.status == 200, (path, await resp.text())
        assert runner.texts and runner.texts[-1] == "[gMASK]<sop><|user|>Hi<|assistant|><think>", path
    runner.texts.clear()
    resp = await client.post("/api/chat", json={"model": "glm", "messages": HI, "stream": False, "think": False})
    assert resp.status == 200 and runner.texts[-1].endswith("<|assistant|></think>")



@pytest.mark.e2e
def test_cli_create_render_and_show_modelfile_with_a_renderer(daemon: Any, tiny_chat_gguf: Path, tmp_path: Path) -> None:
    """Through a real daemon and the CLI: RENDERER in a Modelfile, ``ollamalike render``, and a rebuild
    from ``show --modelfile`` with the same digest; an unknown renderer fails the create."""
    (tmp_path / "Modelfile").write_text(f'FROM {tiny_chat_gguf}\nRENDERER cogito\nSYSTEM "Be terse."\n')
    created = daemon.cli("create", "cog", "-f", str(tmp_path / "Modelfile"))
    assert created.returncode == 0, created.stderr
    out = daemon.cli("render", "cog", input=json.dumps({"messages": HI, "think": True}))
    assert out.returncode == 0, out.stderr
    assert out.stdout == ("<｜begin▁of▁sentence｜>Enable deep thinking subroutine.\n\nYou are Cogito, an AI assistant "
                          "created by Deep Cogito, which is an AI research lab based in San Francisco.\n\nBe terse.\n\n"
                          "<｜User｜>Hi<｜Assistant｜><think>\n")
    shown = daemon.cli("show", "cog", "--modelfile")
    assert shown.returncode == 0 and "\nRENDERER cogito\n" in shown.stdout
    (tmp_path / "Again").write_text(shown.stdout)
    assert daemon.cli("create", "cog2", "-f", str(tmp_path / "Again")).returncode == 0
    status, tags = daemon.request("GET", "/api/tags")
    digests = {m["name"]: m["digest"] for m in tags["models"]}
    assert status == 200 and digests["cog:latest"] == digests["cog2:latest"]

    (tmp_path / "Bad").write_text(f"FROM {tiny_chat_gguf}\nRENDERER harmony\n")
    bad = daemon.cli("create", "bad", "-f", str(tmp_path / "Bad"))
    assert bad.returncode != 0 and 'unknown renderer "harmony"' in bad.stderr


def test_every_renderer_takes_any_checked_conversation() -> None:
    """Random messages (any role, text, reasoning, calls with any JSON arguments) and tools (odd schemas
    too) after the request checks: every renderer gives text, and only qwen3.8 refuses (a 400)."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from ollamalike.template.values import normalize_messages, validate_tools

    text = st.text(max_size=12)
    scalar = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | text
    value = st.recursive(scalar, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
                         max_leaves=6)
    call = st.fixed_dictionaries({"function": st.fixed_dictionaries(
        {"name": text, "arguments": st.dictionaries(text, value, max_size=3)})})
    message = st.fixed_dictionaries(
        {"role": st.sampled_from(["system", "user", "assistant", "tool", "developer"]), "content": text},
        optional={"thinking": text, "tool_calls": st.lists(call, max_size=2)})
    schema = st.dictionaries(st.sampled_from(["type", "description", "enum", "items", "anyOf", "properties", "x"]),
                             value, max_size=4)
    tool = st.fixed_dictionaries({"type": st.just("function"), "function": st.fixed_dictionaries(
        {"name": text}, optional={"description": text, "parameters": st.fixed_dictionaries(
            {"type": st.just("object")}, optional={"properties": st.dictionaries(text, schema, max_size=3),
                                                   "required": st.lists(text, max_size=2)})})})
    think = st.none() | st.booleans() | st.sampled_from(["low", "medium", "high", "max"])

    @settings(max_examples=200, deadline=None, database=None)
    @given(messages=st.lists(message, max_size=6), tools=st.lists(tool, max_size=2), think=think)
    def check(messages: list[dict[str, Any]], tools: list[dict[str, Any]], think: bool | str | None) -> None:
        msgs, checked = normalize_messages(messages), validate_tools(tools)
        for name, render in RENDERERS.items():
            try:
                assert isinstance(render(msgs, checked, think), str)
            except BadRequest:
                assert name == "qwen3.8", name

    check()
