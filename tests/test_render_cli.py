"""POST /api/render on the real app (aiohttp test client) and ``ollamalike render`` end to end
against a real daemon, with models created from the tiny chat GGUF."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from ollamalike.config import load_config
from ollamalike.server.app import make_app
from tests.helpers import assert_api_error, store_snapshot

TEMPLATE = ("{{- range .Messages }}<|{{ .Role }}|>{{ .Content }}\n{{ end }}<|assistant|>"
            "{{ with .Tools }}TOOLS={{ . }}{{ end }}")
GENERATE_TEMPLATE = "{{ if .System }}[S]{{ .System }}{{ end }}[U]{{ .Prompt }}[A]{{ .Response }}"


@pytest.fixture
async def client(aiohttp_client: Any) -> Any:
    return await aiohttp_client(make_app(load_config()))


async def _create(client: Any, gguf: Path, name: str, **fields: Any) -> None:
    data = gguf.read_bytes()
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    resp = await client.post(f"/api/blobs/{digest}", data=data)
    assert resp.status in (200, 201), await resp.text()
    body = {"model": name, "files": {"tiny.gguf": digest}, "stream": False, **fields}
    resp = await client.post("/api/create", json=body)
    assert resp.status == 200, await resp.text()


async def test_render_route_chat_and_generate(client: Any, tiny_chat_gguf: Path) -> None:
    await _create(client, tiny_chat_gguf, "templated", template=TEMPLATE, system="Be terse.")
    resp = await client.post("/api/render", json={"model": "templated", "messages": [{"role": "user", "content": "Hi"}]})
    assert resp.status == 200, await resp.text()
    assert await resp.json() == {"prompt": "<|system|>Be terse.\n<|user|>Hi\n<|assistant|>"}

    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}]
    resp = await client.post("/api/render", json={"model": "templated", "messages": [{"role": "user", "content": "Hi"}],
                                                  "tools": tools})
    assert (await resp.json())["prompt"].endswith(
        'TOOLS=[{"type":"function","function":{"name":"f","description":"","parameters":{"type":"object","properties":{}}}}]')

    # generate-style body: the prompt becomes the user message; system overrides the model's
    resp = await client.post("/api/render", json={"model": "templated", "prompt": "Q", "system": "S2"})
    assert (await resp.json())["prompt"] == "<|system|>S2\n<|user|>Q\n<|assistant|>"
    resp = await client.post("/api/render", json={"model": "templated", "prompt": "Q", "raw": True})
    assert (await resp.json())["prompt"] == "Q"
    resp = await client.post("/api/render", json={"model": "templated", "prompt": "Q", "template": GENERATE_TEMPLATE})
    assert (await resp.json())["prompt"] == "[S]Be terse.[U]Q[A]"


async def test_render_route_uses_the_gguf_chat_template(client: Any, tiny_chat_gguf: Path) -> None:
    from ollamalike.gguf_info import read_gguf_info
    from ollamalike.template import detect_template

    info = read_gguf_info(tiny_chat_gguf)
    assert info.chat_template
    named = detect_template(info.chat_template)
    await _create(client, tiny_chat_gguf, "plain")
    resp = await client.post("/api/render", json={"model": "plain", "messages": [{"role": "user", "content": "Hi"}]})
    assert resp.status == 200, await resp.text()
    prompt = (await resp.json())["prompt"]
    assert named is not None and named.name == "chatml"
    assert prompt == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"


@pytest.mark.parametrize("body,status,fragment", [
    ({"messages": []}, 400, "model is required"),
    ({"model": "nope", "messages": []}, 404, "not found"),
    ({"model": "templated", "messages": "x"}, 400, "messages"),
    ({"model": "templated", "messages": [{"content": "x"}]}, 400, "role is required"),
    ({"model": "templated", "prompt": "Q", "messages": []}, 400, "not both"),
    ({"model": "templated", "prompt": 5}, 400, "prompt"),
    ({"model": "templated", "prompt": "Q", "template": "{{ .Prompt "}, 400, "template: line 1"),
    ({"model": "templated", "prompt": "Q", "suffix": "S"}, 400, "insert"),
    ({"model": "templated", "messages": [], "think": 3}, 400, "think"),
    ({"model": "templated", "messages": [], "tools": {"a": 1}}, 400, "tools"),
])
async def test_render_route_bad_input(client: Any, tiny_chat_gguf: Path, body: dict[str, Any], status: int,
                                      fragment: str) -> None:
    await _create(client, tiny_chat_gguf, "templated", template=TEMPLATE)
    resp = await client.post("/api/render", json=body)
    assert_api_error(resp.status, await resp.read(), status, fragment)


async def test_render_route_malformed_json(client: Any) -> None:
    resp = await client.post("/api/render", data=b"{not json", headers={"Content-Type": "application/json"})
    assert_api_error(resp.status, await resp.read(), 400)


async def test_render_route_hostile_gguf_template(client: Any, tiny_chat_gguf: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A GGUF whose Jinja template attacks the sandbox: 400 quickly, and the server keeps answering."""
    import dataclasses
    import time

    from ollamalike import library

    await _create(client, tiny_chat_gguf, "hostile")
    real = library.resolve_model

    def resolve(store: Any, name: str) -> Any:
        model = real(store, name)
        hostile = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
        return dataclasses.replace(model, info=dataclasses.replace(model.info, chat_template=hostile))

    monkeypatch.setattr(library, "resolve_model", resolve)
    started = time.monotonic()
    resp = await client.post("/api/render", json={"model": "hostile", "messages": [{"role": "user", "content": "x"}]})
    assert_api_error(resp.status, await resp.read(), 400, "chat template")
    assert time.monotonic() - started < 15
    resp = await client.get("/api/version")
    assert resp.status == 200


async def test_create_rejects_a_bad_template_and_stores_nothing(client: Any, tiny_chat_gguf: Path, models_dir: Path) -> None:
    await _create(client, tiny_chat_gguf, "base")
    before = store_snapshot(models_dir)
    resp = await client.post("/api/create", json={"model": "broken", "from": "base", "stream": False,
                                                  "template": "ok\n{{ if .System }}unclosed"})
    assert_api_error(resp.status, await resp.read(), 400, "template: line 2")
    assert store_snapshot(models_dir) == before


# ---- the CLI, end to end -------------------------------------------------------------------------

@pytest.mark.e2e
def test_render_cli_byte_exact(daemon: Any, tiny_chat_gguf: Path, tmp_path: Path) -> None:
    template = "{{- range .Messages }}[{{ .Role }}] {{ .Content }}\n{{ end }}[assistant] "
    (tmp_path / "Modelfile").write_text(
        f'FROM {tiny_chat_gguf}\nTEMPLATE """{template}"""\nSYSTEM "Speak like a pirate."\n'
        'MESSAGE user "Earlier question"\nMESSAGE assistant "Earlier answer"\n')
    created = daemon.cli("create", "pirate", "-f", str(tmp_path / "Modelfile"))
    assert created.returncode == 0, created.stderr

    body = {"messages": [{"role": "user", "content": "Ahoy ünïcode ✓"}]}
    (tmp_path / "req.json").write_text(json.dumps(body))
    out = daemon.cli("render", "pirate", "-f", str(tmp_path / "req.json"))
    assert out.returncode == 0, out.stderr
    assert out.stdout == ("[system] Speak like a pirate.\n[user] Earlier question\n[assistant] Earlier answer\n"
                          "[user] Ahoy ünïcode ✓\n[assistant] ")

    # stdin, generate-style
    out = daemon.cli("render", "pirate", input=json.dumps({"prompt": "Hi", "system": "Other"}))
    assert out.returncode == 0, out.stderr
    assert out.stdout == "[system] Other\n[user] Earlier question\n[assistant] Earlier answer\n[user] Hi\n[assistant] "

    # the GGUF's own template when the Modelfile has none
    (tmp_path / "Plain").write_text(f"FROM {tiny_chat_gguf}\n")
    assert daemon.cli("create", "plain", "-f", str(tmp_path / "Plain")).returncode == 0
    out = daemon.cli("render", "plain", input=json.dumps({"messages": [{"role": "user", "content": "Hi"}]}))
    assert out.returncode == 0, out.stderr
    assert out.stdout == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"


CLI_ERRORS: list[tuple[list[str], str | None, str]] = [
    (["render", "nope"], '{"messages": []}', "not found"),
    (["render", "pirate"], "{not json", "not valid JSON"),
    (["render", "pirate"], "[1, 2]", "JSON object"),
    (["render", "pirate", "-f", "/nonexistent/req.json"], None, "cannot read"),
    (["render", "pirate"], '{"messages": [{"content": "x"}]}', "role is required"),
    (["render", "pirate"], '{"prompt": "x", "suffix": "y"}', "insert"),
]


@pytest.mark.e2e
def test_render_cli_errors(daemon: Any, tiny_chat_gguf: Path, tmp_path: Path) -> None:
    (tmp_path / "Modelfile").write_text(f'FROM {tiny_chat_gguf}\nTEMPLATE "{{{{ .Prompt }}}}"\n')
    assert daemon.cli("create", "pirate", "-f", str(tmp_path / "Modelfile")).returncode == 0
    for args, stdin, fragment in CLI_ERRORS:
        result = daemon.cli(*args, input=stdin if stdin is not None else "")
        assert result.returncode == 1, (args, result)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: "), (args, result.stderr)
        assert fragment.lower() in lines[0].lower(), (args, lines[0])
        assert result.stdout == ""


def test_render_cli_on_a_terminal_without_body(tmp_path: Path) -> None:
    import os
    import sys

    import pexpect

    env = dict(os.environ, OLLAMALIKE_HOST="127.0.0.1:9")
    child = pexpect.spawn(sys.executable, ["-m", "ollamalike", "render", "m"], env=env, timeout=60, encoding="utf-8")
    child.expect("Error: give the JSON request body with -f FILE or on stdin")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 1

