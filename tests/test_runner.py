"""The runner with real llama.cpp and the generated tiny models: batching, reuse, sampling, grammars.

One 4-slot runner is shared by the module (tests use distinct prompts so they do not depend on
each other's cached prefixes, except where prefix reuse is the point).
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import pytest_asyncio

from ollamalike.config import Config
from ollamalike.errors import BadRequest
from ollamalike.runner.client import RunnerProcess, RunnerSpec

pytestmark = pytest.mark.asyncio(loop_scope="module")

PARALLEL = 4
CTX_SLOT = 256
GREEDY = {"temperature": 0, "num_predict": 24}


@pytest.fixture(scope="module")
def runner_config(tmp_path_factory: pytest.TempPathFactory) -> Config:
    home = tmp_path_factory.mktemp("rh")
    return Config(home=home, models_dir=home / "models")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def runner(tiny_chat_gguf: Path, runner_config: Config) -> AsyncIterator[RunnerProcess]:
    spec = RunnerSpec(str(tiny_chat_gguf), ctx_size=CTX_SLOT * PARALLEL, num_parallel=PARALLEL, threads=1)
    proc = await RunnerProcess.start(spec, runner_config)
    yield proc
    await proc.stop()


async def collect(proc: RunnerProcess, prompt: str | list[int], options: dict[str, Any] | None = None,
                  fmt: str | dict[str, Any] | None = None) -> tuple[list[str], dict[str, Any]]:
    chunks: list[str] = []
    final: dict[str, Any] = {}
    async for ev in proc.completion(prompt, options or {}, fmt):
        if ev.get("done"):
            final = ev
        else:
            chunks.append(ev["content"])
    assert final, "stream ended without a done object"
    return chunks, final


async def test_health_reports_load(runner: RunnerProcess) -> None:
    h = await runner.get_health()
    assert h["status"] == "ok" and h["progress"] == 1.0
    assert h["n_ctx_slot"] == CTX_SLOT and h["parallel"] == PARALLEL
    assert runner.memory["size"] > 0 and runner.alive


async def test_greedy_generation_and_counts(runner: RunnerProcess) -> None:
    chunks, final = await collect(runner, "Hello world", GREEDY)
    assert final["done_reason"] == "length"
    assert final["eval_count"] == 24 == len(final["tokens"])
    assert final["prompt_eval_count"] == 3  # BOS + two pieces
    assert final["prompt_eval_duration"] > 0 and final["eval_duration"] > 0
    assert "".join(chunks) == await runner.detokenize(final["tokens"])


async def test_batched_equals_solo(runner: RunnerProcess) -> None:
    prompts = ["the cat is", "once upon a time there was", "why is the sky blue", "one two three four"]
    solo = {}
    for p in prompts:
        _, final = await collect(runner, p + " solo", GREEDY)
        solo[p] = final["tokens"]
    sampled = {"temperature": 0.9, "seed": 11, "num_predict": 24}
    _, solo_sampled = await collect(runner, "a sampled story", sampled)
    results = await asyncio.gather(
        *(collect(runner, p + " solo", GREEDY) for p in prompts), collect(runner, "a sampled story", sampled)
    )
    for p, (_, final) in zip(prompts, results[:-1], strict=True):
        assert final["tokens"] == solo[p], p
    assert results[-1][1]["tokens"] == solo_sampled["tokens"]


async def test_eight_concurrent_streams(runner: RunnerProcess) -> None:
    before = await runner.get_health()
    results = await asyncio.gather(
        *(collect(runner, f"stream number {i} says", {"temperature": 0.7, "seed": i, "num_predict": 16 + i})
          for i in range(8))
    )
    for i, (chunks, final) in enumerate(results):
        assert final["done_reason"] == "length"
        assert final["eval_count"] == 16 + i == len(final["tokens"])
        assert "".join(chunks) == await runner.detokenize(final["tokens"])
    after = await runner.get_health()
    steps = after["steps"] - before["steps"]
    tokens = after["decoded_tokens"] - before["decoded_tokens"]
    assert tokens / steps > 2, "sequences were not decoded together"
    assert after["slots_busy"] == 0 and after["queued"] == 0


async def test_prefix_reuse(runner: RunnerProcess) -> None:
    base = await runner.tokenize("the little dog and the big cat were in the house with the red tree")
    _, first = await collect(runner, base, {"temperature": 0, "num_predict": 4})
    # prompt_eval_count is the whole prompt (as Ollama); cached_tokens says what the cache served.
    assert first["prompt_eval_count"] == len(base)
    assert first["cached_tokens"] <= 1  # another slot may already hold BOS
    extra = await runner.tokenize(" where is the moon", add_special=False)
    _, second = await collect(runner, base + extra, {"temperature": 0, "num_predict": 4})
    assert second["prompt_eval_count"] == len(base) + len(extra)
    assert second["cached_tokens"] == len(base)
    _, again = await collect(runner, base + extra, {"temperature": 0, "num_predict": 4})
    assert again["prompt_eval_count"] == len(base) + len(extra)
    assert again["cached_tokens"] == len(base) + len(extra) - 1  # the last token is evaluated again for logits
    assert again["tokens"] == second["tokens"]


async def test_seed_reproducibility(runner: RunnerProcess) -> None:
    opts = {"temperature": 1.0, "top_k": 0, "top_p": 1.0, "seed": 1234, "num_predict": 20}
    _, a = await collect(runner, "tell me a story", opts)
    _, b = await collect(runner, "tell me a story", opts)
    _, c = await collect(runner, "tell me a story", {**opts, "seed": 4321})
    assert a["tokens"] == b["tokens"]
    assert a["tokens"] != c["tokens"]


@pytest.mark.parametrize("opts", [
    {"mirostat": 1, "mirostat_tau": 3.0, "mirostat_eta": 0.2},
    {"mirostat": 2},
    {"top_k": 5, "top_p": 0.5, "min_p": 0.05, "typical_p": 0.8},
    {"repeat_penalty": 1.5, "repeat_last_n": -1, "presence_penalty": 0.5, "frequency_penalty": 0.5},
])
async def test_sampler_options_generate(runner: RunnerProcess, opts: dict[str, Any]) -> None:
    _, a = await collect(runner, "green yellow black", {**opts, "seed": 5, "num_predict": 12})
    _, b = await collect(runner, "green yellow black", {**opts, "seed": 5, "num_predict": 12})
    assert a["eval_count"] == 12 and a["tokens"] == b["tokens"]


async def test_repeat_penalty_changes_greedy_output(runner: RunnerProcess) -> None:
    _, plain = await collect(runner, "he was", {"temperature": 0, "repeat_penalty": 1.0, "num_predict": 40})
    _, pen = await collect(runner, "he was", {"temperature": 0, "repeat_penalty": 5.0, "repeat_last_n": 64,
                                                "num_predict": 40})
    assert plain["tokens"] != pen["tokens"]
    assert len(set(pen["tokens"])) >= len(set(plain["tokens"]))


async def test_stop_sequence_across_tokens_never_emitted(runner: RunnerProcess) -> None:
    chunks, _ = await collect(runner, "the sun and the moon", {"temperature": 0, "num_predict": 30})
    # A stop string made of the end of one chunk and the start of the next spans a token boundary.
    i = next(i for i in range(2, len(chunks) - 1) if len(chunks[i]) >= 2 and len(chunks[i + 1]) >= 2)
    stop = chunks[i][-2:] + chunks[i + 1][:2]
    full = "".join(chunks)
    expected = full[: full.index(stop)]
    got, final = await collect(runner, "the sun and the moon", {"temperature": 0, "num_predict": 30,
                                                                   "stop": ["zzzz", stop]})
    assert final["done_reason"] == "stop"
    assert "".join(got) == expected
    assert all(stop not in c for c in got)


async def test_streamed_utf8_is_whole_characters(runner: RunnerProcess) -> None:
    # A grammar forces characters the vocabulary only has as byte tokens (3 tokens per CJK char).
    text = "日本語 ✓ naïve"
    chunks, final = await collect(runner, "say it", {"temperature": 0, "num_predict": 60},
                                  {"type": "string", "enum": [text]})
    assert final["done_reason"] == "stop"
    assert "".join(chunks) == json.dumps(text, ensure_ascii=False)
    assert len(final["tokens"]) > len(chunks), "some characters should have spanned several tokens"
    assert all("\ufffd" not in c for c in chunks)


async def test_json_format_is_valid_json(runner: RunnerProcess) -> None:
    chunks, final = await collect(runner, "answer in json", {"temperature": 0.3, "seed": 2, "num_predict": 200},
                                  "json")
    assert final["done_reason"] == "stop", "".join(chunks)
    json.loads("".join(chunks))


async def test_json_schema_format_validates(runner: RunnerProcess) -> None:
    schema = {
        "type": "object",
        "properties": {
            "ok": {"type": "boolean"},
            "count": {"type": "integer"},
            "color": {"type": "string", "enum": ["red", "green", "blue"]},
            # Bounds the converter alone ignores (see runner/schema.py): random weights would
            # otherwise wander anywhere in the integers.
            "stars": {"type": "integer", "minimum": 1, "maximum": 5},
            "offset": {"type": "integer", "exclusiveMinimum": -20, "maximum": -3},
        },
        "required": ["ok", "count", "color", "stars", "offset"],
    }
    for seed in (1, 2, 3, 4):
        chunks, final = await collect(runner, "give me json", {"temperature": 0.8, "seed": seed,
                                                                "num_predict": 200}, schema)
        assert final["done_reason"] == "stop"
        jsonschema.validate(json.loads("".join(chunks)), schema)


async def test_context_shift_and_fill(runner: RunnerProcess) -> None:
    prompt = await runner.tokenize("the story of the sky")
    _, long = await collect(runner, prompt, {"temperature": 0.8, "seed": 9, "num_predict": CTX_SLOT + 40})
    assert long["done_reason"] == "length" and long["eval_count"] == CTX_SLOT + 40
    _, fill = await collect(runner, prompt + [600], {"temperature": 0, "num_predict": -2})
    assert fill["done_reason"] == "length"
    assert fill["eval_count"] == CTX_SLOT - len(prompt)  # the last sampled token needs no cell


async def test_long_prompt_is_refused_not_cut(runner: RunnerProcess) -> None:
    # Issue 19: truncation is the daemon's; the runner used to cut a second time with other rules.
    words = await runner.tokenize(" the dog" * 200, add_special=False)
    with pytest.raises(BadRequest, match="too long for the slot's context"):
        await collect(runner, [1, *words], {"temperature": 0, "num_predict": 3, "num_keep": 5})
    # Exactly full leaves no cell to generate into: refused too; one fewer fits.
    with pytest.raises(BadRequest, match="too long"):
        await collect(runner, [1, *words[: CTX_SLOT - 1]], {"num_predict": 1})
    _, final = await collect(runner, [1, *words[: CTX_SLOT - 2]], {"temperature": 0, "num_predict": 3})
    assert final["prompt_tokens"] == CTX_SLOT - 1
    assert final["eval_count"] >= 1
    assert runner.alive


@pytest.mark.parametrize(("prompt", "options", "fmt", "message"), [
    ([1, 10**7], {}, None, "out of range"),
    ("hi", {"mirostat": 7}, None, "mirostat"),
    ("hi", {"temperature": "hot"}, None, "temperature"),
    ("hi", {}, "yaml", "invalid format"),
    ("hi", {}, {"type": "object", "properties": {"a": {"$ref": "#/nowhere"}}}, "schema"),
])
async def test_bad_requests(runner: RunnerProcess, prompt: Any, options: dict[str, Any], fmt: Any,
                            message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        await collect(runner, prompt, options, fmt)
    assert runner.alive
    _, final = await collect(runner, "still fine", {"num_predict": 2})
    assert final["eval_count"] == 2


async def test_tokenize_detokenize_roundtrip(runner: RunnerProcess) -> None:
    tokens = await runner.tokenize("Hello world ✓")
    assert tokens[0] == 1
    assert await runner.detokenize(tokens[1:]) == " Hello world ✓"  # pieces keep SentencePiece's space
    assert await runner.detokenize(tokens) == "<s> Hello world ✓"
    with pytest.raises(BadRequest):
        await runner.detokenize([-5])
    # A chat model's runner embeds too (issue 13: it used to refuse, and the daemon reloaded the model).
    vectors, count = await runner.embed(["hi"])
    assert len(vectors) == 1 and count == len(await runner.tokenize("hi"))


async def test_new_request_joins_while_others_generate(runner: RunnerProcess) -> None:
    order: list[str] = []

    async def run(name: str, prompt: str, n: int, started: asyncio.Event | None = None) -> None:
        count = 0
        async for ev in runner.completion(prompt, {"temperature": 0.7, "seed": 4, "num_predict": n}):
            count += 1
            if started is not None and count == 3:
                started.set()
            if ev.get("done"):
                order.append(name)

    started = asyncio.Event()
    long_task = asyncio.create_task(run("long", "a long story about the sea", 150, started))
    await asyncio.wait_for(started.wait(), 30)
    await run("short", "a short one", 5)
    assert order == ["short"], "the short request had to wait for the long one"
    await long_task
    assert order == ["short", "long"]


async def test_empty_prompt_starts_from_bos(runner: RunnerProcess) -> None:
    for prompt in ("", []):
        _, final = await collect(runner, prompt, {"temperature": 0, "num_predict": 2})
        assert final["prompt_tokens"] == 1 and final["eval_count"] == 2
    _, zero = await collect(runner, "nothing to generate", {"num_predict": 0})
    assert zero["eval_count"] == 0 and zero["done_reason"] == "length"


async def test_greedy_fresh_equals_cached_with_default_penalties(runner: RunnerProcess) -> None:
    # A prompt long enough to be decoded in big batches: a token's logits depend on the batch it is
    # computed in, so the prompt's last token is always decoded on its own, as in the cached case.
    # The default penalties (repeat_penalty 1.1 over the last 64 tokens) are primed from the whole
    # prompt either way.
    prompt = "fresh or cached: " + " ".join(f"{w} dog {i}" for i, w in enumerate(["red", "blue", "big"] * 12))
    opts = {"temperature": 0, "num_predict": 24}
    _, fresh = await collect(runner, prompt, opts)
    _, cached = await collect(runner, prompt, opts)
    assert fresh["cached_tokens"] <= 1 and cached["cached_tokens"] == cached["prompt_eval_count"] - 1
    assert fresh["prompt_eval_count"] == cached["prompt_eval_count"] > 100
    assert cached["tokens"] == fresh["tokens"]


async def test_embeddings_from_a_chat_runner_beside_a_generation(runner: RunnerProcess) -> None:
    # Issue 13: a chat model's runner embeds in a context of its own on the same weights, while a
    # generation is in flight; the generation's greedy output is what it is alone.
    opts = {"temperature": 0, "num_predict": 48}
    _, alone = await collect(runner, "a generation that an embedding runs beside", opts)
    first_chunk = asyncio.Event()
    chunks: list[str] = []

    async def generate() -> dict[str, Any]:
        final: dict[str, Any] = {}
        async for ev in runner.completion("a generation that an embedding runs beside", opts):
            if ev.get("done"):
                final = ev
            else:
                chunks.append(ev["content"])
                first_chunk.set()
        return final

    task = asyncio.create_task(generate())
    await asyncio.wait_for(first_chunk.wait(), 30)
    texts = ["the dog is red", "a", "why is the sky blue " * 40]
    vectors, count = await runner.embed(texts)
    assert not task.done() or len(chunks) < 48, "the embed did not run while the generation was in flight"
    beside = await task
    assert beside["tokens"] == alone["tokens"]
    assert count == sum([len(await runner.tokenize(t)) for t in texts])
    assert len(vectors) == 3 and len({len(v) for v in vectors}) == 1
    for v in vectors:
        assert abs(math.sqrt(sum(x * x for x in v)) - 1.0) < 1e-5
    again, _ = await runner.embed(["the dog is red"])
    assert again[0] == pytest.approx(vectors[0], abs=1e-6)
    assert vectors[0] != vectors[1]
    h = await runner.get_health()
    assert h["slots_busy"] == 0 and h["embedding"] is False
    # Too long for the slot context: truncated, or refused when truncate is false.
    long_text = "the dog " * 300
    truncated, n = await runner.embed([long_text])
    assert n == CTX_SLOT and len(truncated[0]) == len(vectors[0])
    with pytest.raises(BadRequest, match="exceeds maximum context length"):
        await runner.embed([long_text], truncate=False)
