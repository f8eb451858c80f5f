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


def check_embed_beside_chat(d: Daemon, model: str, messages: list[dict[str, Any]], num_predict: int) -> None:
    """/api/embed on a loaded chat model while a greedy chat streams: no reload (same runner
    process, load_duration ~0), answered before the chat ends, L2-normalised deterministic vectors,
    and the chat's output exactly what it is alone (issue 13)."""
    import math
    import threading
    import time

    chat = {"model": model, "messages": messages, "stream": False,
            "options": {"temperature": 0, "num_predict": num_predict}}
    status, alone = d.request("POST", "/api/chat", chat, timeout=600)
    assert status == 200, alone
    before = sorted(runner_pids(d))
    assert before, "the chat model's runner is not running"
    started = threading.Event()
    result: dict[str, Any] = {}

    def stream_chat() -> None:
        parts = []
        for line in stream_lines(d, "/api/chat", {**chat, "stream": True}, timeout=600):
            obj = json.loads(line)
            parts.append(obj["message"]["content"])
            started.set()
            if obj.get("done"):
                result["final"] = obj
        result["content"] = "".join(parts)
        result["ended"] = time.monotonic()

    thread = threading.Thread(target=stream_chat)
    thread.start()
    try:
        assert started.wait(300), "the chat did not start streaming"
        texts = ["The quick brown fox jumps over the lazy dog.", "Embeddings from a chat model."]
        status, emb = d.request("POST", "/api/embed", {"model": model, "input": texts}, timeout=600)
        answered = time.monotonic()
    finally:
        thread.join(600)
    assert status == 200, emb
    assert "ended" in result and result["final"]["done"] is True
    assert answered < result["ended"], "the embed waited for the generation to finish"
    assert emb["load_duration"] < 50_000_000, f"the model was loaded again: {emb['load_duration']} ns"
    assert sorted(runner_pids(d)) == before, "the embed started another runner"
    vectors = emb["embeddings"]
    assert len(vectors) == 2 and len(vectors[0]) == len(vectors[1]) > 8
    for v in vectors:
        assert abs(math.sqrt(sum(x * x for x in v)) - 1.0) < 1e-4
    assert vectors[0] != vectors[1] and emb["prompt_eval_count"] > 4
    assert result["content"] == alone["message"]["content"], "the embed changed the concurrent chat's output"
    status, again = d.request("POST", "/api/embed", {"model": model, "input": texts[0]}, timeout=600)
    assert status == 200 and all(abs(a - b) < 1e-5 for a, b in zip(again["embeddings"][0], vectors[0], strict=True))
    assert sorted(runner_pids(d)) == before


def with_parser(d: Daemon, src: str, dst: str, parser: str) -> None:
    """``dst``: ``src`` with ``parser`` in its config (what ``PARSER`` in a Modelfile stores)."""
    from ollamalike.store import Store

    store = Store(d.models_dir)
    try:
        _, manifest, _ = store.get_manifest(src)
        config = json.loads(store.read_blob(manifest["config"]["digest"]))
        digest, size = store.add_blob_bytes(json.dumps({**config, "parser": parser}).encode())
        manifest = {**manifest, "config": {**manifest["config"], "digest": digest, "size": size}}
        store.put_manifest(dst, json.dumps(manifest).encode())
    finally:
        store.close()
