"""Shared set-up for the serving end-to-end tests: one real daemon per module with tiny models.

``serving_daemon`` starts ``ollamalike serve`` with a private home and creates ``tiny`` (the tiny
llama chat model), ``tools`` (the same weights with a TEMPLATE using .Tools) and ``emb`` (the tiny
BERT embedding model) through the real ``ollamalike create`` command.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.daemon import Daemon, start_daemon

TOOLS_TEMPLATE = (
    '{{ if .Tools }}Tools:{{ range .Tools }} {{ .Function.Name }}{{ end }}\n{{ end }}'
    "{{ range .Messages }}{{ .Role }}: {{ .Content }}\n{{ end }}assistant: "
)


def create_model(d: Daemon, name: str, modelfile: str, workdir: Path) -> None:
    path = workdir / f"{name.replace(':', '_').replace('/', '_')}.Modelfile"
    path.write_text(modelfile)
    result = d.cli("create", name, "-f", str(path))
    assert result.returncode == 0, result.stderr + result.stdout


def start_serving_daemon(home: Path, chat_gguf: Path, embed_gguf: Path | None = None,
                         env: dict[str, str] | None = None, tools: bool = False) -> Daemon:
    d = start_daemon(home, env)
    try:
        create_model(d, "tiny", f"FROM {chat_gguf}\n", home)
        if tools:
            create_model(d, "tools", f'FROM {chat_gguf}\nTEMPLATE """{TOOLS_TEMPLATE}"""\n', home)
        if embed_gguf is not None:
            create_model(d, "emb", f"FROM {embed_gguf}\n", home)
    except BaseException:
        print(d.logs())
        d.stop(check=False)
        raise
    return d


def stream_lines(d: Daemon, path: str, body: dict[str, Any], timeout: float = 120.0) -> Iterator[bytes]:
    """Raw NDJSON lines (bytes, newline stripped) of a streamed response; asserts HTTP 200."""
    conn = http.client.HTTPConnection("127.0.0.1", d.port, timeout=timeout)
    try:
        conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        resp = conn.getresponse()
        assert resp.status == 200, resp.read()
        assert resp.getheader("Content-Type", "").startswith("application/x-ndjson")
        while True:
            line = resp.readline()
            if not line:
                return
            assert line.endswith(b"\n")
            yield line[:-1]
    finally:
        conn.close()


def runner_pids(d: Daemon) -> list[int]:
    from tests.daemon import runner_descendants

    return runner_descendants(d.proc.pid)
