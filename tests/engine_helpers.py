"""In-process engines on real llama.cpp for the speculative-decoding tests (no runner process).

``loaded_engine`` loads a GGUF and starts an ``Engine`` on it; ``generate`` submits one request and
waits for its events; ``kv_matches_cache`` checks that every slot's KV cache holds exactly the
positions its ``cache`` list says (what prefix reuse relies on).
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import llama_cpp

from ollamalike.config import FlashAttention, SpeculativeMode
from ollamalike.runner.draft import DraftModel, load_draft
from ollamalike.runner.engine import Engine
from ollamalike.runner.llama import load_model
from ollamalike.runner.request import Event, Request
from ollamalike.runner.sampling import SamplingParams
from ollamalike.runner.spec import RunnerSpec
from ollamalike.runner.tokens import detokenize, tokenize

TIMEOUT = 600.0  # seconds for one event: the machine is shared


@dataclass
class Result:
    tokens: list[int]
    text: str
    done: Event
    chunks: int


class StepLock:
    """The engine's StepGate in these tests: held through each step, so that what a test inspects after a
    request's last event (the KV cache, the slots) is not mid-step. The runner's Outbox gives the daemon
    the same guarantee: a step's events are delivered at its end."""

    def __init__(self) -> None:
        self.lock = threading.Lock()

    def hold(self) -> None:
        self.lock.acquire()

    def release(self) -> None:
        self.lock.release()


@contextlib.contextmanager
def loaded_engine(path: Path, speculative: SpeculativeMode, parallel: int = 2, ctx_slot: int = 512, threads: int = 1,
                  draft: Path | None = None, flash_attn: FlashAttention = "off") -> Iterator[Engine]:
    spec = RunnerSpec(str(path), ctx_size=ctx_slot * parallel, num_parallel=parallel, threads=threads,
                      speculative=speculative, flash_attn=flash_attn, draft_model_path=str(draft) if draft else "")
    m = load_model(spec, [0.0])
    drafter: DraftModel | None = None
    if draft is not None:
        try:
            drafter = load_draft(m, spec)
        except BaseException:
            m.close()
            raise
    engine = Engine(m, parallel, gate=StepLock(), speculative=speculative, drafter=drafter)
    engine.start()
    try:
        yield engine
    finally:
        engine.stop()
        if drafter is not None:
            drafter.close()
        m.close()


def tok(engine: Engine, text: str) -> list[int]:
    return tokenize(engine.m, text, True)


def text_of(engine: Engine, tokens: list[int]) -> str:
    return detokenize(engine.m, tokens)


def generate(engine: Engine, prompt: list[int], on_event: Callable[[Request, Event], None] | None = None,
             **options: object) -> Result:
    events: queue.SimpleQueue[Event] = queue.SimpleQueue()
    holder: list[Request] = []

    def emit(ev: Event) -> None:
        events.put(ev)
        if on_event is not None:
            on_event(holder[0], ev)

    params = SamplingParams.from_options({"temperature": 0, "num_predict": 32, **options})  # type: ignore[dict-item]
    req = Request(prompt=list(prompt), params=params, grammar=None, emit=emit)
    holder.append(req)
    engine.submit(req)
    parts: list[str] = []
    chunks = 0
    while True:
        ev = events.get(timeout=TIMEOUT)
        if "error" in ev:
            raise AssertionError(ev["error"])
        if ev.get("done"):
            tokens = ev["tokens"]
            assert isinstance(tokens, list)
            return Result(tokens, "".join(parts), ev, chunks)
        content = ev.get("content")
        assert isinstance(content, str)
        parts.append(content)
        chunks += 1


def wait_idle(engine: Engine, started: Callable[[], bool]) -> None:
    """Poll until ``started()`` holds and no slot is busy (a cancelled request emits nothing more)."""
    import time

    deadline = time.monotonic() + 120
    while not (started() and engine.busy_slots() == 0) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert started() and engine.busy_slots() == 0


def kv_matches_cache(engine: Engine) -> None:
    """Each slot's KV cache holds positions 0..len(cache)-1, nothing past them."""
    gate = engine.gate
    if isinstance(gate, StepLock):
        with gate.lock:  # not while a step is still trimming rejected drafts
            kv_matches_cache_now(engine)
    else:
        kv_matches_cache_now(engine)


def kv_matches_cache_now(engine: Engine) -> None:
    for slot in engine.slots:
        pos_max = llama_cpp.llama_memory_seq_pos_max(engine.m.mem, slot.seq)
        assert pos_max == len(slot.cache) - 1, (slot.seq, pos_max, len(slot.cache))
