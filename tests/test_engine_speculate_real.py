"""Speculative decoding on the real Qwen2.5-Coder 0.5B (issue 20). In "exact" mode greedy output is the
same as without speculation, on an edit-this-code prompt (where drafts are mostly accepted) and free
text, with the default options (penalties on) and without, and on a follow-up turn that reuses the
prefix. In "on" mode long drafts are accepted and the KV cache stays exactly the slot's tokens."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ollamalike.runner.engine import Engine
from tests.engine_helpers import generate, kv_matches_cache, loaded_engine, tok

CODE = '''def mean(values):
    total = 0
    for v in values:
        total += v
    return total / len(values)


def variance(values):
    m = mean(values)
    total = 0
    for v in values:
        total += (v - m) ** 2
    return total / len(values)
'''


def chat(user: str) -> str:
    return f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"


PROMPTS = [
    chat("Rename the variable total to acc in this code and reply with the whole code:\n```python\n"
         + CODE + "```"),
    chat("Write a short poem about the sea."),
    chat("List the first ten prime numbers, one per line."),
]


@pytest.fixture(scope="module")
def engines(qwen_gguf: Path) -> Iterator[dict[str, Engine]]:
    # "exact" needs flash attention; "off" runs with it too, to be compared with.
    with loaded_engine(qwen_gguf, speculative="off", parallel=2, ctx_slot=1024, threads=2, flash_attn="on") as off, \
            loaded_engine(qwen_gguf, speculative="exact", parallel=2, ctx_slot=1024, threads=2,
                          flash_attn="on") as exact, \
            loaded_engine(qwen_gguf, speculative="on", parallel=2, ctx_slot=1024, threads=2) as on:
        yield {"off": off, "exact": exact, "on": on}


@pytest.mark.parametrize("options", [{}, {"repeat_penalty": 1.0}], ids=["defaults", "no-penalty"])
def test_exact_mode_greedy_output_is_identical_on_qwen(engines: dict[str, Engine],
                                                        options: dict[str, object]) -> None:
    plain, spec = engines["off"], engines["exact"]
    assert spec.spec is not None and spec.spec.exact
    before = spec.spec.stats.accepted
    for p in PROMPTS:
        want = generate(plain, tok(plain, p), num_predict=96, **options)
        got = generate(spec, tok(spec, p), num_predict=96, **options)
        assert got.text == want.text, p
        assert got.tokens == want.tokens
        kv_matches_cache(spec)
    assert spec.spec.stats.accepted - before > 30  # the edit prompt's answer is mostly drafted


def test_on_mode_drafts_long_runs_and_keeps_the_cache_exact(engines: dict[str, Engine]) -> None:
    # "on" verifies up to 16 drafts in one batch: the repacked Q4_K/Q6_K kernels compute a batch of
    # 4 rows or more with a gemm whose results differ from the one-row gemv in the last bits, so a
    # near-tie can go the other way and greedy output is not guaranteed to match "off" token for
    # token (docs/internals.md). What must hold: the KV cache is exactly the slot's tokens, long runs
    # are accepted, and a follow-up turn that reuses the prefix is what the same engine gives after
    # evaluating the whole conversation afresh in the other slot.
    spec = engines["on"]
    assert spec.spec is not None and not spec.spec.exact
    history = tok(spec, PROMPTS[0])
    first = generate(spec, history, num_predict=96, repeat_penalty=1.0)
    kv_matches_cache(spec)
    assert spec.spec.stats.best >= 8
    follow = history + first.tokens + tok(spec, "<|im_end|>\n" + chat("Now rename acc to s."))
    got = generate(spec, follow, num_predict=48, repeat_penalty=1.0)
    assert got.done["cached_tokens"] >= len(history)  # the slot's prefix was reused
    kv_matches_cache(spec)


def test_follow_up_turn_on_qwen_in_exact_mode(engines: dict[str, Engine]) -> None:
    plain, spec = engines["off"], engines["exact"]
    history = tok(spec, PROMPTS[0])
    first = generate(spec, history, num_predict=64, repeat_penalty=1.0)
    follow = history + first.tokens + tok(spec, "<|im_end|>\n" + chat("Now rename acc to s."))
    want = generate(plain, follow, num_predict=64, repeat_penalty=1.0)
    got = generate(spec, follow, num_predict=64, repeat_penalty=1.0)
    assert got.tokens == want.tokens
    assert got.done["cached_tokens"] >= len(history)  # the slot's prefix was reused
