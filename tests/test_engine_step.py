"""The engine's per-step work, in process on real llama.cpp: the greedy fast path (the same tokens as the
sampler chain, ties included), the prefill budget and its oldest-first order (observed in the batches
handed to ``llama_decode``), and the outbox that carries a step's events to the event loop together."""

from __future__ import annotations

import asyncio
import ctypes
import threading
from collections.abc import Iterator
from pathlib import Path

import llama_cpp
import numpy as np
import pytest

from ollamalike.runner.engine import Engine
from ollamalike.runner.llama import Loaded, load_model
from ollamalike.runner.outbox import Outbox
from ollamalike.runner.picker import plain_greedy
from ollamalike.runner.prefill import PREFILL_SHARE, plan_prefill, prefill_budget
from ollamalike.runner.request import Event, Request
from ollamalike.runner.sampling import SamplingParams
from ollamalike.runner.slots import Slot
from ollamalike.runner.spec import RunnerSpec
from ollamalike.runner.tokens import tokenize

TIMEOUT = 300.0  # the machine is shared and loaded


def _load(path: Path, parallel: int = 4, ctx: int = 4096, batch: int = 512) -> Loaded:
    return load_model(RunnerSpec(str(path), ctx_size=ctx, num_parallel=parallel, num_batch=batch, threads=2), [0.0])


@pytest.fixture(scope="module")
def tiny(tiny_chat_gguf: Path) -> Iterator[Loaded]:
    m = _load(tiny_chat_gguf)
    yield m
    m.close()


class _Run:
    """One request's events, collected on the engine thread."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.done = threading.Event()

    def emit(self, event: Event) -> None:
        self.events.append(event)
        if event.get("done") or "error" in event:
            self.done.set()

    def tokens(self) -> list[int]:
        assert self.done.wait(TIMEOUT), "the request did not finish"
        final = self.events[-1]
        assert final.get("done") is True, final
        tokens = final["tokens"]
        assert isinstance(tokens, list)
        return [int(t) for t in tokens]


def _submit(engine: Engine, prompt: list[int], **options: object) -> _Run:
    run = _Run()
    params = SamplingParams.from_options({"temperature": 0, "repeat_penalty": 1.0, **options})  # type: ignore[dict-item]
    engine.submit(Request(prompt=prompt, params=params, grammar=None, emit=run.emit))
    return run


def _greedy_both_ways(m: Loaded, prompts: list[str], n: int) -> tuple[list[list[int]], list[list[int]]]:
    """Each prompt's greedy tokens with the fast path and through the sampler chain (fresh KV each)."""
    out: list[list[list[int]]] = []
    for fast in (True, False):
        llama_cpp.llama_memory_clear(m.mem, True)
        engine = Engine(m, 4, speculative="off")  # the picker alone: drafts change the batches
        engine.picker.fast = fast
        engine.start()
        try:
            # One at a time: requests sharing a step change its batch, and with it a quantized model's logits.
            out.append([_submit(engine, tokenize(m, p), num_predict=n).tokens() for p in prompts])
        finally:
            engine.stop()
    return out[0], out[1]


def test_plain_greedy_is_only_the_bare_greedy_chain() -> None:
    assert plain_greedy(SamplingParams(temperature=0, repeat_penalty=1.0))
    assert not plain_greedy(SamplingParams(temperature=0))  # Ollama's default repeat_penalty 1.1
    assert not plain_greedy(SamplingParams(temperature=0, repeat_penalty=1.0, presence_penalty=0.5))
    assert not plain_greedy(SamplingParams(temperature=0, repeat_penalty=1.0, frequency_penalty=0.5))
    assert not plain_greedy(SamplingParams(temperature=0.7, repeat_penalty=1.0))


def test_greedy_sampler_and_argmax_agree_on_ties() -> None:
    # llama.cpp's greedy sampler keeps the first of equal logits; so must the fast path's argmax.
    logits = np.array([0.5, 3.0, -1.0, 3.0, 3.0, 2.9], dtype=np.float32)
    data = (llama_cpp.llama_token_data * logits.size)(*[llama_cpp.llama_token_data(i, float(v), 0.0)
                                                         for i, v in enumerate(logits)])
    arr = llama_cpp.llama_token_data_array(data=ctypes.cast(data, llama_cpp.llama_token_data_p), size=logits.size,
                                           selected=-1, sorted=False)
    greedy = llama_cpp.llama_sampler_init_greedy()
    try:
        llama_cpp.llama_sampler_apply(greedy, ctypes.byref(arr))
    finally:
        llama_cpp.llama_sampler_free(greedy)
    assert arr.selected == int(logits.argmax()) == 1


def test_greedy_fast_path_matches_the_sampler_chain_on_the_tiny_model(tiny: Loaded) -> None:
    prompts = ["hello there", "the quick brown fox", "once upon a time", "a b c d e f"]
    fast, chain = _greedy_both_ways(tiny, prompts, 32)
    assert all(len(t) > 0 for t in fast)
    assert fast == chain


@pytest.mark.parametrize("model", ["qwen_gguf", "gemma_gguf"])
def test_greedy_fast_path_matches_the_sampler_chain_on_real_models(model: str, request: pytest.FixtureRequest) -> None:
    path: Path = request.getfixturevalue(model)
    m = _load(path, ctx=2048)
    try:
        prompts = ["def fibonacci(n):", "The capital of France is", "Once upon a time, a little dog"]
        fast, chain = _greedy_both_ways(m, prompts, 24)
        assert all(len(t) > 0 for t in fast)
        assert fast == chain
    finally:
        m.close()


# --- the prefill budget --------------------------------------------------------------------------


def _slot(seq: int, prompt_len: int, done: int = 0) -> Slot[Request]:
    slot: Slot[Request] = Slot(seq=seq)
    req = Request(prompt=list(range(prompt_len)), params=SamplingParams(), grammar=None, emit=lambda e: None)
    slot.begin(req, req.prompt, done, None, None, 10)  # type: ignore[arg-type]
    return slot


def test_prefill_budget_is_the_batch_when_idle_and_a_share_while_generating() -> None:
    assert prefill_budget(512, 0) == 512
    assert prefill_budget(512, 3) == 512 // PREFILL_SHARE
    assert prefill_budget(8, 7) == 1  # never more than the batch has room for
    assert prefill_budget(8, 8) == 0


def test_prefill_plan_is_oldest_first_within_the_budget() -> None:
    # Admitted in the order a, b, c (sequence ids deliberately out of that order). Two prompts share
    # these steps: a chunk that ends its prompt takes the last token too.
    a, b, c = _slot(2, 100), _slot(0, 50), _slot(1, 30)
    assert plan_prefill([b, c, a], 120) == {2: 100, 0: 20}  # all of a, then b's share
    assert plan_prefill([b, c, a], 1000) == {2: 100, 0: 50, 1: 30}
    b.prompt_done = 49
    b.next_token = 49  # b's body is done; its last token waits for the next step: no chunk for it
    assert plan_prefill([b, c, a], 120) == {2: 100, 1: 20}
    assert plan_prefill([b, c, a], 0) == {}


def test_a_lone_prompt_leaves_its_last_token_for_a_step_of_its_own() -> None:
    # Nothing else in the step: the last token is decoded alone, as when the rest came from the cache.
    a = _slot(0, 100)
    assert plan_prefill([a], 1000) == {0: 99}
    assert plan_prefill([a], 60) == {0: 60}  # a chunk short of the end is the same either way
    # A stream generating beside it: the step is shared, so the prompt ends in this step, with logits.
    assert plan_prefill([a], 1000, shared=True) == {0: 100}
    # Two prompts: the one that ends in this step takes its last token; the other is cut by the budget.
    b = _slot(1, 50)
    assert plan_prefill([a, b], 120) == {0: 100, 1: 20}
    assert plan_prefill([a, b], 100) == {0: 100}  # b waits for the next step; a ends in this one


def test_engine_steps_respect_the_prefill_budget_oldest_first(tiny: Loaded, monkeypatch: pytest.MonkeyPatch) -> None:
    steps: list[tuple[int, list[int]]] = []  # (tokens with logits, the sequence of each prompt token)
    real_decode = llama_cpp.llama_decode

    def decode(ctx: llama_cpp.llama_context_p, batch: llama_cpp.llama_batch) -> int:
        n = batch.n_tokens
        steps.append((sum(1 for i in range(n) if batch.logits[i]),
                      [batch.seq_id[i][0] for i in range(n) if not batch.logits[i]]))
        return int(real_decode(ctx, batch))

    llama_cpp.llama_memory_clear(tiny.mem, True)
    monkeypatch.setattr(llama_cpp, "llama_decode", decode)
    engine = Engine(tiny, 4)
    engine.start()
    try:
        streaming = _submit(engine, tokenize(tiny, "a stream that keeps generating"), num_predict=200)
        while not streaming.events:  # it is generating
            assert not streaming.done.is_set()
            streaming.done.wait(0.01)
        mark = len(steps)
        words = " ".join(f"w{i}" for i in range(150))
        first = _submit(engine, tokenize(tiny, "first " + words), num_predict=2)
        second = _submit(engine, tokenize(tiny, "second " + words), num_predict=2)
        for run in (first, second, streaming):
            run.tokens()
    finally:
        engine.stop()
    budget = prefill_budget(tiny.n_batch, 1)
    steps = steps[mark:]
    mixed = [seqs for outputs, seqs in steps if outputs and seqs]
    assert mixed, "no prompt chunk was evaluated beside a generating stream"
    assert all(len(seqs) <= budget for seqs in mixed)
    assert any(len(seqs) == budget for seqs in mixed)  # the long prompts were cut into budget-sized chunks
    # Oldest first: the first prompt's chunks all come before the second's, which then follows on.
    order = [s for _, seqs in steps for s in seqs]
    first_seq, second_seq = order[0], order[-1]
    assert first_seq != second_seq
    last_first = max(i for i, s in enumerate(order) if s == first_seq)
    first_second = min(i for i, s in enumerate(order) if s == second_seq)
    assert last_first < first_second


def test_a_prompt_ends_in_its_chunk_beside_a_stream_and_in_a_step_of_its_own_alone(
        tiny: Loaded, monkeypatch: pytest.MonkeyPatch) -> None:
    steps: list[list[tuple[int, bool]]] = []  # per step: (sequence, logits) of every row
    real_decode = llama_cpp.llama_decode

    def decode(ctx: llama_cpp.llama_context_p, batch: llama_cpp.llama_batch) -> int:
        steps.append([(batch.seq_id[i][0], bool(batch.logits[i])) for i in range(batch.n_tokens)])
        return int(real_decode(ctx, batch))

    llama_cpp.llama_memory_clear(tiny.mem, True)
    monkeypatch.setattr(llama_cpp, "llama_decode", decode)
    engine = Engine(tiny, 4, speculative="off")
    engine.start()
    try:
        lone_prompt = tokenize(tiny, "a lone prompt of several words")
        lone = _submit(engine, lone_prompt, num_predict=200)
        while not lone.events:
            assert not lone.done.is_set()
            lone.done.wait(0.01)
        mark = len(steps)
        joining_prompt = tokenize(tiny, "another prompt joins the stream")
        joining = _submit(engine, joining_prompt, num_predict=2)
        joining.tokens()
    finally:
        engine.stop()
    # Alone: the prompt but its last token in the first step (no logits), the last token alone next.
    first, second = steps[0], steps[1]
    assert len(first) == len(lone_prompt) - 1 and not any(lg for _, lg in first)
    assert second == [(first[0][0], True)]
    # Beside the generating stream: the whole prompt in one step, logits at its last token only.
    seq = next(s for step in steps[mark:] for s, _ in step if s != first[0][0])
    step = next(step for step in steps[mark:] if any(s == seq for s, _ in step))
    mine = [lg for s, lg in step if s == seq]
    assert len(mine) == len(joining_prompt) and mine[-1] and not any(mine[:-1])
    assert any(s != seq for s, _ in step)  # the stream's token shared the step


# --- the outbox --------------------------------------------------------------------------------------


def test_outbox_delivers_a_steps_events_in_order_on_one_wakeup() -> None:
    async def main() -> tuple[list[list[Event]], int, int]:
        loop = asyncio.get_running_loop()
        box = Outbox(loop)
        queues: list[asyncio.Queue[Event]] = [asyncio.Queue() for _ in range(8)]
        senders = [box.sender(q) for q in queues]
        n_steps, per_step = 50, 3

        def engine() -> None:  # as the engine thread: hold, emit for every stream, release
            for step in range(n_steps):
                box.hold()
                for k in range(per_step):
                    for i, send in enumerate(senders):
                        send({"content": f"{i}:{step}:{k}"})
                box.release()
            for i, send in enumerate(senders):
                send({"done": True, "stream": i})  # outside a held step: still delivered

        thread = threading.Thread(target=engine)
        thread.start()
        got: list[list[Event]] = []
        for q in queues:
            events: list[Event] = []
            while not events or not events[-1].get("done"):
                events.append(await asyncio.wait_for(q.get(), TIMEOUT))
            got.append(events)
        thread.join()
        return got, box.wakeups, n_steps

    got, wakeups, n_steps = asyncio.run(main())
    for i, events in enumerate(got):
        assert [e["content"] for e in events[:-1]] == [f"{i}:{s}:{k}" for s in range(n_steps) for k in range(3)]
        assert events[-1] == {"done": True, "stream": i}
    # At most one wake-up per held step (fewer when the loop was slower than the steps), plus the last emits.
    assert wakeups <= n_steps + 8


def test_outbox_keeps_each_senders_order_across_threads() -> None:
    async def main() -> list[list[Event]]:
        box = Outbox(asyncio.get_running_loop())
        queues: list[asyncio.Queue[Event]] = [asyncio.Queue() for _ in range(4)]

        def producer(i: int) -> None:
            send = box.sender(queues[i])
            for k in range(500):
                send({"content": str(k)})
            send({"done": True})

        threads = [threading.Thread(target=producer, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        out = []
        for q in queues:
            events: list[Event] = []
            while not events or not events[-1].get("done"):
                events.append(await asyncio.wait_for(q.get(), TIMEOUT))
            out.append(events)
        for t in threads:
            t.join()
        return out

    for events in asyncio.run(main()):
        assert [e["content"] for e in events[:-1]] == [str(k) for k in range(500)]
