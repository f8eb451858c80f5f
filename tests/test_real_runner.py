"""The runner with a real model (Qwen2.5-Coder 0.5B) through the real daemon (issue 13, issue 21 item 12).

- /api/embed on the loaded chat model answers beside a streaming chat: no reload, and the chat's
  greedy output is what it is alone;
- greedy output is the same whether the prompt was evaluated fresh or served from the prefix
  cache, with the default penalties; prompt_eval_count is the whole prompt both times and OpenAI's
  usage says the cached part;
- num_batch values llama.cpp would abort on are a clear 400, and no runner stderr reaches a client.
"""

from __future__ import annotations

import time
from typing import Any

import openai
import pytest

from tests.daemon import Daemon
from tests.helpers import assert_api_error
from tests.infer_helpers import check_embed_beside_chat
from tests.realmodels import QWEN

pytestmark = pytest.mark.e2e

# A system prompt long enough (~400 tokens) that a fresh evaluation decodes it in big batches: a
# token's logits depend on the batch it is computed in, which made greedy output differ from the
# cached case (where only the last token is evaluated again).
SYSTEM = "You are a helpful assistant. " + " ".join(f"Rule {i}: be kind and brief." for i in range(40))


def _chat(d: Daemon, question: str, **options: Any) -> dict[str, Any]:
    status, body = d.request("POST", "/api/chat", {
        "model": QWEN, "stream": False, "options": {"temperature": 0, "num_predict": 40, **options},
        "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}],
    }, timeout=600)
    assert status == 200, body
    return body


def _unload(d: Daemon) -> None:
    status, body = d.request("POST", "/api/generate", {"model": QWEN, "keep_alive": 0}, timeout=120)
    assert status == 200 and body["done_reason"] == "unload", body
    for _ in range(600):
        status, ps = d.request("GET", "/api/ps")
        if not any(m["name"].startswith(QWEN) for m in ps["models"]):
            return
        time.sleep(0.05)
    raise AssertionError("qwen did not unload")


def test_greedy_output_is_the_same_fresh_and_from_the_prefix_cache(real_daemon: Daemon) -> None:
    # With this prompt the cached answer differed from the fresh one before the fix.
    _unload(real_daemon)  # nothing cached: the whole prompt is evaluated
    fresh = _chat(real_daemon, "Write a short poem about the sea.")
    cached = _chat(real_daemon, "Write a short poem about the sea.")
    assert cached["message"]["content"] == fresh["message"]["content"]
    assert fresh["prompt_eval_count"] == cached["prompt_eval_count"] > 300  # the whole prompt, both times
    assert fresh["load_duration"] > 0 and cached["load_duration"] < fresh["load_duration"]


def test_openai_usage_says_the_whole_prompt_and_the_cached_part(real_daemon: Daemon) -> None:
    client = openai.OpenAI(base_url=f"{real_daemon.base_url}/v1", api_key="unused", max_retries=0)
    messages: Any = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Name one colour."}]
    first = client.chat.completions.create(model=QWEN, messages=messages, max_tokens=4, temperature=0)
    second = client.chat.completions.create(model=QWEN, messages=messages, max_tokens=4, temperature=0)
    assert first.usage is not None and second.usage is not None
    assert first.usage.prompt_tokens == second.usage.prompt_tokens > 300
    assert second.usage.prompt_tokens_details is not None
    assert second.usage.prompt_tokens_details.cached_tokens == second.usage.prompt_tokens - 1
    assert second.choices[0].message.content == first.choices[0].message.content


def test_embed_on_the_loaded_chat_model_beside_a_chat(real_daemon: Daemon) -> None:
    check_embed_beside_chat(real_daemon, QWEN, [{"role": "user", "content": "Explain recursion to a child."}],
                            num_predict=48)


@pytest.mark.parametrize("num_batch", [1, 3])
def test_num_batch_below_the_parallel_sequences_is_refused(real_daemon: Daemon, num_batch: int) -> None:
    # llama.cpp aborts on it (a GGML_ASSERT); the client used to get the abort's backtrace as a 500.
    status, body = real_daemon.request("POST", "/api/generate", {
        "model": QWEN, "prompt": "Hi", "stream": False, "options": {"num_batch": num_batch, "num_predict": 2},
    }, timeout=300)
    message = assert_api_error(status, body, 400, "num_batch")
    assert "parallel" in message and "libc" not in message and ".c:" not in message


def test_a_huge_num_batch_is_clamped_to_the_context(real_daemon: Daemon) -> None:
    # It used to ask the memory planner for 928883 GiB (a 500); llama.cpp clamps it to the context.
    status, body = real_daemon.request("POST", "/api/generate", {
        "model": QWEN, "prompt": "What is the capital of France? One word.", "stream": False,
        "options": {"num_batch": 1e9, "num_ctx": 1024, "num_predict": 4, "temperature": 0},
    }, timeout=600)
    assert status == 200, body
    assert "Paris" in body["response"]
