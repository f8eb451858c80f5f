"""Shared set-up for the agent-API tests (Anthropic Messages, OpenAI Responses) on tiny models.

``start_agent_daemon`` starts the real daemon and creates ``tiny`` (the tiny llama chat model,
its ChatML template, no tools, no vision) and ``tiny-tools`` (the same weights with a Go template
that offers tools and renders past calls as ``{"name", "arguments"}``, the form the tool-call
parser reads back). ``post`` sends a raw JSON body for the bad-input cases an SDK would refuse
to send.
"""

from __future__ import annotations

import hashlib
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.daemon import Daemon, start_daemon

CHAT = "tiny"
TOOLS = "tiny-tools"

TOOLS_TEMPLATE = """{{- if .System }}<|im_start|>system
{{ .System }}<|im_end|>
{{ end }}
{{- if .Tools }}<|im_start|>system
You may call these functions:
{{- range .Tools }}
{"type": "function", "function": {{ .Function }}}
{{- end }}
To call one, answer with {"name": <function name>, "arguments": <arguments object>}<|im_end|>
{{ end }}
{{- range .Messages }}<|im_start|>{{ .Role }}
{{ if .ToolCalls }}{{ range .ToolCalls }}{"name": "{{ .Function.Name }}", "arguments": {{ .Function.Arguments }}}{{ end }}
{{- else }}{{ .Content }}{{ end }}<|im_end|>
{{ end }}<|im_start|>assistant
"""

WEATHER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"city": {"type": "string", "enum": ["Paris", "Rome", "Oslo"]}},
    "required": ["city"],
    "additionalProperties": False,
}


def _upload(d: Daemon, path: Path) -> str:
    data = path.read_bytes()
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    req = urllib.request.Request(f"{d.base_url}/api/blobs/{digest}", data=data, method="POST")
    with urllib.request.urlopen(req, timeout=60) as resp:
        assert resp.status in (200, 201)
    return digest


def create_tiny_models(d: Daemon, gguf: Path) -> None:
    digest = _upload(d, gguf)
    for name, extra in ((CHAT, {}), (TOOLS, {"template": TOOLS_TEMPLATE})):
        status, body = d.request("POST", "/api/create",
                                 {"model": name, "files": {gguf.name: digest}, "stream": False, **extra})
        assert status == 200, body


def start_agent_daemon(home: Path, gguf: Path, env: dict[str, str] | None = None) -> Daemon:
    d = start_daemon(home, env)
    try:
        create_tiny_models(d, gguf)
    except BaseException:
        print(d.logs())
        d.stop(check=False)
        raise
    return d


def post(d: Daemon, path: str, body: Any, headers: dict[str, str] | None = None,
         timeout: float = 120.0) -> tuple[int, Any, dict[str, str]]:
    """(status, parsed JSON body, headers) of a raw POST; never raises on an HTTP error."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(d.base_url + path, data=data, method="POST",
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, raw, hdrs = resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as e:
        status, raw, hdrs = e.code, e.read(), dict(e.headers)
    return status, json.loads(raw) if raw.strip() else None, hdrs
