"""logprobs, truncate: false and shift: false on the real models (Qwen2.5-Coder 0.5B, 151k vocabulary;
Gemma 3 270M base, 262k vocabulary) through the real daemon and the official clients.

What only real weights show: the numbers mean something (a well-known continuation is the top
token with a high probability), they are taken after the repetition penalty (a penalised token's
logprob drops), and the consistency rules hold on large vocabularies.
"""

from __future__ import annotations

import json
import math
from typing import Any

import openai
import pytest

from tests.daemon import Daemon
from tests.helpers import assert_api_error
from tests.infer_helpers import stream_lines
from tests.realmodels import GEMMA, QWEN

pytestmark = pytest.mark.e2e

PARIS = "The Eiffel Tower is in the city of"


def _generate(d: Daemon, model: str, prompt: str, stream: bool = False, **fields: Any) -> Any:
    body = {"model": model, "prompt": prompt, "raw": True, "stream": stream, **fields}
    if stream:
        return [json.loads(line) for line in stream_lines(d, "/api/generate", body, timeout=600)]
    status, out = d.request("POST", "/api/generate", body, timeout=600)
    assert status == 200, out
    return out


def _check_greedy(entries: list[dict[str, Any]], top: int) -> None:
    for e in entries:
        tops = e["top_logprobs"]
        assert len(tops) == top and e["logprob"] <= 0
        assert (tops[0]["token"], tops[0]["logprob"]) == (e["token"], e["logprob"])
        assert sum(math.exp(t["logprob"]) for t in tops) <= 1 + 1e-9
        if "\ufffd" not in e["token"]:
            assert e.get("bytes", []) == list(e["token"].encode())


@pytest.mark.parametrize("model", [QWEN, GEMMA])
def test_real_logprobs_are_meaningful_and_consistent(real_daemon: Daemon, model: str) -> None:
    opts = {"temperature": 0, "num_predict": 6}
    whole = _generate(real_daemon, model, PARIS, options=opts, logprobs=True, top_logprobs=5)
    entries = whole["logprobs"]
    assert len(entries) == whole["eval_count"] and "".join(e["token"] for e in entries) == whole["response"]
    _check_greedy(entries, 5)
    first = entries[0]
    assert "Paris" in first["token"] and math.exp(first["logprob"]) > 0.3, first
    chunks = _generate(real_daemon, model, PARIS, stream=True, options=opts, logprobs=True, top_logprobs=5)
    assert [e for c in chunks for e in c.get("logprobs", [])] == entries


def test_real_logprobs_are_taken_after_the_repetition_penalty(real_daemon: Daemon) -> None:
    model = QWEN  # Gemma 270M (a base model) does not answer this prompt with " Paris"
    prompt = "I love Paris. " + PARIS  # " Paris", with its space, is in the penalty window
    plain = _generate(real_daemon, model, prompt, options={"temperature": 0, "num_predict": 1, "repeat_penalty": 1.0},
                      logprobs=True, top_logprobs=20)
    token = plain["logprobs"][0]["token"]
    assert "Paris" in token, plain["logprobs"][0]
    penalised = _generate(real_daemon, model, prompt, logprobs=True, top_logprobs=20,
                          options={"temperature": 0, "num_predict": 1, "repeat_penalty": 3.0})
    before = plain["logprobs"][0]["logprob"]
    after = {t["token"]: t["logprob"] for t in penalised["logprobs"][0]["top_logprobs"]}.get(token, -math.inf)
    assert after < before - 0.5, (before, after)
    _check_greedy(penalised["logprobs"], 20)  # still: the chosen token is the penalised logits' top


def test_real_chat_logprobs_through_the_openai_client(real_daemon: Daemon) -> None:
    client = openai.OpenAI(base_url=f"{real_daemon.base_url}/v1", api_key="x", max_retries=0, timeout=600)
    messages: Any = [{"role": "user", "content": "What is the capital of France? One word."}]
    resp = client.chat.completions.create(model=QWEN, messages=messages, temperature=0, max_tokens=8,
                                          logprobs=True, top_logprobs=3)
    logprobs = resp.choices[0].logprobs
    assert logprobs is not None and logprobs.content
    content = logprobs.content
    assert "".join(t.token for t in content) == resp.choices[0].message.content
    assert "Paris" in resp.choices[0].message.content and resp.usage is not None
    assert len(content) == resp.usage.completion_tokens
    for t in content:
        assert len(t.top_logprobs) == 3 and t.top_logprobs[0].token == t.token and t.top_logprobs[0].logprob == t.logprob
        assert bytes(t.bytes or []) == t.token.encode()
    stream = client.chat.completions.create(model=QWEN, messages=messages, temperature=0, max_tokens=8,
                                            logprobs=True, top_logprobs=3, stream=True)
    streamed = [t for ch in stream if ch.choices and ch.choices[0].logprobs for t in ch.choices[0].logprobs.content or []]
    assert [(t.token, t.logprob) for t in streamed] == [(t.token, t.logprob) for t in content]


def test_real_truncate_false_and_shift_false(real_daemon: Daemon) -> None:
    opts = {"num_ctx": 128, "temperature": 0}
    long_prompt = "Count with me: " + ", ".join(str(i) for i in range(400))
    status, err = real_daemon.request("POST", "/api/chat", {
        "model": QWEN, "stream": False, "truncate": False, "options": {**opts, "num_predict": 1},
        "messages": [{"role": "user", "content": long_prompt}]}, timeout=600)
    assert_api_error(status, err, 400, "the input length exceeds the context length")
    full = _generate(real_daemon, QWEN, "Count from 1 to 1000, one number per line:\n1\n2\n", shift=False,
                     options={**opts, "num_predict": 1000})
    assert full["done_reason"] == "length"
    assert full["prompt_eval_count"] + full["eval_count"] == 128 + 1
