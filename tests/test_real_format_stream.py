"""Real models: structured output that validates, and streaming over a 262k vocabulary.

Through the real daemon and runners (``real_daemon``: models ``qwen`` and ``gemma``) with the official
``ollama`` and ``openai`` clients.
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest

from tests.daemon import Daemon

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 40},
        "country": {"type": "string", "maxLength": 40},
        "population_millions": {"type": "integer", "minimum": 0, "maximum": 100},
    },
    "required": ["city", "country", "population_millions"],
    "additionalProperties": False,
}


@pytest.mark.parametrize("model", ["qwen", "gemma"])
def test_json_schema_format_validates_native(real_daemon: Daemon, model: str) -> None:
    import ollama

    client = ollama.Client(host=real_daemon.base_url)
    resp = client.chat(model=model, messages=[{"role": "user", "content": "Describe Paris as JSON."}],
                       format=SCHEMA, options={"temperature": 0, "seed": 7, "num_predict": 200})
    data = json.loads(resp.message.content)
    jsonschema.validate(data, SCHEMA)
    assert resp.done_reason == "stop"


@pytest.mark.parametrize("model", ["qwen", "gemma"])
def test_json_schema_format_validates_openai(real_daemon: Daemon, model: str) -> None:
    import openai

    client = openai.OpenAI(base_url=real_daemon.base_url + "/v1", api_key="unused")
    resp = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Describe Rome as JSON."}], temperature=0, seed=3,
        max_tokens=200, response_format={"type": "json_schema", "json_schema": {"name": "city", "schema": SCHEMA}})
    jsonschema.validate(json.loads(resp.choices[0].message.content or ""), SCHEMA)
    assert resp.choices[0].finish_reason == "stop"


@pytest.mark.parametrize("model", ["gemma", "qwen"])
def test_streamed_chunks_are_utf8_and_join_to_the_unstreamed_answer(real_daemon: Daemon, model: str) -> None:
    """Multi-byte text (accents, CJK, emoji) from a large vocabulary: every streamed chunk decodes on
    its own (no split code points), and the chunks join to the non-streamed answer for the same seed."""
    import httpx

    body = {"model": model, "prompt": "Écris une phrase en français, puis en japonais (日本語), puis des emojis 🌍🚀:",
            "raw": True, "options": {"temperature": 0.8, "seed": 1234, "num_predict": 64}}
    whole = httpx.post(real_daemon.base_url + "/api/generate", json={**body, "stream": False}, timeout=300).json()
    chunks: list[bytes] = []
    with httpx.stream("POST", real_daemon.base_url + "/api/generate", json={**body, "stream": True},
                      timeout=300) as resp:
        assert resp.status_code == 200
        for line in resp.iter_lines():
            if line.strip():
                chunks.append(line.encode())
    texts = []
    for raw in chunks:
        obj = json.loads(raw.decode("utf-8"))  # strict: a lone surrogate or broken byte fails here
        text = obj.get("response", "")
        text.encode("utf-8")  # no lone surrogates smuggled through \ud8xx escapes
        texts.append(text)
    assert json.loads(chunks[-1])["done"] is True
    assert "".join(texts) == whole["response"]
    assert whole["eval_count"] == json.loads(chunks[-1])["eval_count"]
    # The answer really exercised multi-byte tokens, or the check above proves little.
    assert any(ord(c) > 127 for c in whole["response"]), whole["response"]
