"""The engine loop: continuous batching of many sequences through one llama.cpp context.

One thread owns the context. Each step it builds ONE ``llama_batch``: the next token of every
generating slot plus prompt chunks of slots still evaluating their prompt (``prefill``: a bounded
budget per step, oldest first),
calls ``llama_decode`` once, and samples for every slot that asked for logits (``picker``). A request joins
between steps, so a new prompt is evaluated while the others keep generating. Finished slots keep
their tokens/KV so a later request with a shared prefix evaluates only the rest; what a slot loses to
another request is kept in host RAM (``promptcache.PromptCache``) and brought back when it returns.

Other threads talk to it only through ``submit``/``cancel``/``embed``/``cancel_embed`` (thread-safe);
results go back through each request's ``emit`` callback, which must itself be thread-safe; each step
holds the ``gate`` (if given) so that its emits can reach the daemon together. Embed
jobs are served one chunk per loop turn, between generation steps (``embed.EmbedQueue``).
"""

from __future__ import annotations

import functools
import queue
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field

import llama_cpp
import numpy as np
import numpy.typing as npt

from ollamalike.runner.constrained import build_grammar
from ollamalike.runner.embed import EmbedJob, EmbedQueue
from ollamalike.runner.llama import Loaded
from ollamalike.runner.logprobs import LogprobQueue, score
from ollamalike.runner.picker import TokenPicker
from ollamalike.runner.prefill import plan_prefill, prefill_budget
from ollamalike.runner.promptcache import PromptCache
from ollamalike.runner.request import NO_GATE, Event, Request, StepGate
from ollamalike.runner.sampling import SamplingParams, TextStream, build_sampler
from ollamalike.runner.shift import context_shift
from ollamalike.runner.slots import Slot, choose_slot
from ollamalike.runner.speculate import Drafter, Speculator, spec_history, speculator
from ollamalike.runner.tokens import PieceCache
from ollamalike.runner.vision import Vision, advance_images


@dataclass
class _Stats:
    steps: int = 0
    decoded_tokens: int = 0
    queued: int = 0
    errors: list[str] = field(default_factory=list)


class Engine:
    def __init__(self, loaded: Loaded, parallel: int, vision: Vision | None = None,
                 gate: StepGate | None = None, prompt_cache: int = 0, speculative: str = "on",
                 drafter: Drafter | None = None) -> None:
        self.m = loaded
        self.gate = gate or NO_GATE
        self.vision = vision
        self.prompt_cache = PromptCache(loaded, prompt_cache) if prompt_cache > 0 and loaded.mem is not None else None
        self.slots: list[Slot[Request]] = [Slot(seq=i) for i in range(max(1, parallel))]
        self.batch = llama_cpp.llama_batch_init(loaded.n_batch, 0, 1)
        self._incoming: queue.SimpleQueue[Request | EmbedJob | None] = queue.SimpleQueue()
        self._waiting: list[Request] = []
        self._wake = threading.Event()
        self._stop = False
        self._piece = PieceCache(loaded)
        self.stats = _Stats()
        self.picker = TokenPicker(loaded)
        self.embeds = EmbedQueue(loaded, self.batch, len(self.slots), self.embedding_limit(), self.embedding_runner)
        self.thread = threading.Thread(target=self._run, name="engine", daemon=True)
        # Speculative decoding: prompt lookup and/or a draft model (runner/speculate.py).
        self.spec: Speculator[Request] | None = None
        if not self.embedding_runner:
            self.spec = speculator(loaded, len(self.slots), speculative, drafter)

    # --- thread-safe API -------------------------------------------------------------------
    def start(self) -> None:
        self.thread.start()

    def submit(self, req: Request) -> None:
        self._incoming.put(req)
        self._wake.set()

    def cancel(self, req: Request) -> None:
        req.cancelled = True
        self._wake.set()

    def embed(self, job: EmbedJob) -> None:
        self._incoming.put(job)
        self._wake.set()

    def cancel_embed(self, job: EmbedJob) -> None:
        """The client went away: the job is dropped before its next chunk (``done`` is not called)."""
        job.cancelled = True
        self._wake.set()

    def busy_slots(self) -> int:
        return sum(1 for s in self.slots if s.req is not None)

    def stop(self) -> None:
        self._stop = True
        self._incoming.put(None)
        self._wake.set()
        if self.thread.is_alive() and threading.current_thread() is not self.thread:
            self.thread.join(timeout=10)

    # --- the loop --------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while not self._stop:
                try:
                    self.gate.hold()
                    try:
                        self._drain_incoming()
                        busy = self._step()
                    finally:
                        self.gate.release()  # the step's events leave together, before an embed chunk
                    # One embed chunk per generation step: neither waits for the other to finish.
                    busy = self.embeds.step() or busy
                except Exception as e:  # a bug must not hang every client: fail the active requests, go on
                    traceback.print_exc(file=sys.stderr)
                    self._fail_active(f"internal error in the runner: {e}")
                    busy = False
                if not busy:
                    self._wake.wait(timeout=1.0)
                    self._wake.clear()
        finally:
            for slot in self.slots:
                if slot.req is not None:
                    self._finish(slot, error="runner is shutting down")
            for req in self._waiting:
                req.emit({"error": "runner is shutting down"})
            self.embeds.close("runner is shutting down")
            llama_cpp.llama_batch_free(self.batch)

    def _drain_incoming(self) -> None:
        while True:
            try:
                item = self._incoming.get_nowait()
            except queue.Empty:
                break
            if item is None:
                return
            if isinstance(item, EmbedJob):
                self.embeds.add(item)
            else:
                self._waiting.append(item)
        self._waiting = [r for r in self._waiting if not r.cancelled]
        while self._waiting:
            slot = choose_slot(self.slots, self._waiting[0].prompt)
            if slot is None:
                break
            self._admit(slot, self._waiting.pop(0))
        self.stats.queued = len(self._waiting)

    def _admit(self, slot: Slot[Request], req: Request) -> None:
        m = self.m
        prompt = req.prompt
        if len(prompt) >= m.n_ctx_slot:
            # The daemon owns truncation (inference/service.py); the server refuses such prompts
            # before they are queued, so this only guards the engine's own invariant.
            req.emit({"error": f"the prompt has {len(prompt)} tokens: more than the slot's context "
                               f"of {m.n_ctx_slot} leaves room for"})
            return
        n = slot.common_prefix(prompt)
        if self.prompt_cache is not None:  # may swap the slot's sequence for a longer cached prefix
            n = self.prompt_cache.before_admit(slot, prompt, n, restore=req.media is None)
        if n >= len(prompt):
            n = len(prompt) - 1  # the last prompt token must be evaluated again to get logits
        if req.media is not None:
            n = req.media.align(n)  # an image is reused whole or encoded again
        # The reused prefix is this prompt's: its images say where its positions stand (M-RoPE).
        offset = req.media.offset_before(n) if req.media is not None else 0
        if n < len(slot.cache):
            if not llama_cpp.llama_memory_seq_rm(m.mem, slot.seq, n - offset, -1):
                n = offset = 0
                llama_cpp.llama_memory_seq_rm(m.mem, slot.seq, -1, -1)
            del slot.cache[n:]
        slot.pos_offset = offset
        try:
            grammar = build_grammar(m.vocab, req.grammar) if req.grammar is not None else None
        except Exception as e:
            req.emit({"error": str(e)})
            return
        # The penalty window is primed with the whole prompt, whether it was cached or not.
        sampler = build_sampler(req.params, m.vocab, m.n_vocab, [t for t in prompt if t >= 0])
        slot.begin(req, prompt, n, sampler, TextStream(req.params.stop), self._limit(req.params), grammar)
        slot.logprobs = LogprobQueue(req.logprobs) if req.logprobs is not None else None
        if n == len(prompt) - 1:
            self._queue_last_prompt_token(slot)

    @staticmethod
    def _queue_last_prompt_token(slot: Slot[Request]) -> None:
        """The rest of the prompt is in the cache: its last token goes into the next step."""
        slot.next_token = slot.prompt[-1]
        slot.prompt_done = len(slot.prompt)
        slot.prompt_evaluated += 1

    def _limit(self, p: SamplingParams) -> int:
        if p.num_predict == -2:
            return self.m.n_ctx_slot  # "fill the context": ends with "length" when the slot is full
        if p.num_predict < 0:
            return 10 * self.m.n_ctx_slot  # unlimited, but never an endless loop (as Ollama)
        return p.num_predict

    def _step(self) -> bool:
        """One llama_decode over every active slot. Returns False when there was nothing to do."""
        m = self.m
        batch = self.batch
        # Images first, each decoded on its own: the text before them is in the KV cache by now.
        imaged = self.vision is not None and advance_images(self.vision, self.slots, m, self._queue_last_prompt_token,
                                                            self._fail_slot)
        singles: set[int] = set()  # the slots (seq ids) with one token: a generated one or a prompt's last
        for slot in self.slots:
            req = slot.req
            if req is None:
                continue
            if req.cancelled:
                self._finish(slot, reason="cancelled", emit=False)
                continue
            if slot.next_token is None:
                continue
            if len(slot.cache) >= m.n_ctx_slot and not self._make_room(slot):
                continue
            singles.add(slot.seq)
        chunks = plan_prefill(self.slots, prefill_budget(m.n_batch, len(singles)), shared=bool(singles))
        # Written in sequence order: over per-slot KV streams llama.cpp splits a batch into micro-batches
        # of consecutive sequences with equal token counts, and tokens out of order make more of them
        # (each one a pass over the weights).
        n = 0
        now = time.perf_counter_ns()
        for slot in self.slots:
            if slot.seq in chunks:
                n = self._put_chunk(slot, chunks[slot.seq], n, now)
            elif slot.seq in singles:
                if slot.in_prompt and slot.t_prompt == 0:
                    slot.t_prompt = now  # the whole prompt but its last token was cached
                assert slot.next_token is not None
                self._put(n, slot.next_token, slot.next_pos, slot.seq, True)
                slot.logit_index = n
                slot.cache.append(slot.next_token)
                slot.next_token = None
                n += 1
        if self.spec is not None:  # after the rows above: verified in this same step
            n = self.spec.add_drafts(self.slots, batch, n, m.n_batch, spec_history)
        if n == 0:
            return imaged
        batch.n_tokens = n
        rc = llama_cpp.llama_decode(m.ctx, batch)
        self.stats.steps += 1
        self.stats.decoded_tokens += n
        if rc != 0:
            self._fail_batch(rc)
            return True
        now = time.perf_counter_ns()
        for slot in self.slots:
            if slot.req is None or slot.logit_index < 0:
                continue
            idx, slot.logit_index = slot.logit_index, -1
            if slot.in_prompt:
                slot.in_prompt = False
                slot.prompt_ns = now - slot.t_prompt
                slot.t_gen = now
            if slot.limit <= 0:
                self._finish(slot, reason="length")
                continue
            if self.spec is not None and self.spec.drafted(slot):
                if not self.spec.verify(slot, idx, self.picker.pick, self._on_token,
                                        functools.partial(self._seq_rm, slot.seq)):
                    self._restart(slot)
                continue
            token, scored = self.picker.pick(slot, idx)
            self._on_token(slot, token, scored)
        return True

    def _seq_rm(self, seq: int, p0: int, p1: int) -> bool:
        return bool(llama_cpp.llama_memory_seq_rm(self.m.mem, seq, p0, p1))

    def _restart(self, slot: Slot[Request]) -> None:
        """The KV cache could not drop rejected drafts: the slot's sequence is gone; a request still
        running ends with an error."""
        llama_cpp.llama_memory_seq_rm(self.m.mem, slot.seq, -1, -1)
        slot.cache.clear()
        if slot.req is not None:
            self._finish(slot, error="the KV cache could not drop rejected draft tokens")

    def _put(self, i: int, token: int, pos: int, seq: int, logits: bool) -> None:
        batch = self.batch
        batch.token[i] = token
        batch.pos[i] = pos
        batch.n_seq_id[i] = 1
        batch.seq_id[i][0] = seq
        batch.logits[i] = logits

    def _put_chunk(self, slot: Slot[Request], take: int, n: int, now: int) -> int:
        """``take`` more of the slot's prompt into the batch at ``n``; returns the next free index.

        A chunk that ends the prompt (a shared step, prefill.plan_prefill) has logits at its last token;
        otherwise a chunk that reaches the prompt's last token leaves it for a later step, decoded on its
        own as a generated token is, exactly as when the rest of the prompt was cached."""
        if slot.t_prompt == 0:
            slot.t_prompt = now
        base, done = slot.next_pos, slot.prompt_done
        last = done + take == len(slot.prompt)
        for i in range(take):
            self._put(n + i, slot.prompt[done + i], base + i, slot.seq, last and i == take - 1)
        slot.cache.extend(slot.prompt[done : done + take])
        slot.prompt_done += take
        slot.prompt_evaluated += take
        if last:
            slot.logit_index = n + take - 1
        elif slot.prompt_done == len(slot.prompt) - 1:
            self._queue_last_prompt_token(slot)
        return n + take

    def _on_token(self, slot: Slot[Request], token: int, scored: npt.NDArray[np.float32] | None = None) -> None:
        """``scored``: the logits the logprobs come from, when the request asked for them."""
        req, stream = slot.req, slot.text
        assert req is not None and stream is not None
        if llama_cpp.llama_vocab_is_eog(self.m.vocab, token):
            self._finish(slot, reason="stop")  # as Ollama: no logprob entry for an end-of-generation token
            return
        slot.generated.append(token)
        start = stream.decoded
        text = stream.push(self._piece(token))
        event: Event = {"content": text}
        queue = slot.logprobs
        if queue is not None and scored is not None:
            queue.add(start, score(scored, token, queue.top, self._piece))
            released = queue.release(stream.emitted)
            if stream.stopped:
                queue.drop()  # the tokens left made up the stop sequence
            if released:
                event["logprobs"] = released
        if text or "logprobs" in event:
            req.emit(event)
        if stream.stopped:
            self._finish(slot, reason="stop")
        elif len(slot.generated) >= slot.limit:
            self._finish(slot, reason="length")
        else:
            slot.next_token = token

    def _make_room(self, slot: Slot[Request]) -> bool:
        """The slot's context is full: shift it (Ollama's context shift) or end with "length"."""
        if context_shift(self.m, slot):
            return True
        self._finish(slot, reason="length")
        return False

    def _fail_active(self, reason: str) -> None:
        for slot in self.slots:
            if slot.req is not None:
                self._fail_slot(slot, reason)

    def _fail_slot(self, slot: Slot[Request], reason: str) -> None:
        """End the slot's request with ``reason`` and drop its KV cache (its state is unknown)."""
        slot.logit_index = -1
        llama_cpp.llama_memory_seq_rm(self.m.mem, slot.seq, -1, -1)
        slot.cache.clear()
        slot.pos_offset = 0
        self._finish(slot, error=reason)

    def _fail_batch(self, rc: int) -> None:
        reason = "out of KV cache space" if rc == 1 else f"llama_decode failed with status {rc}"
        self.stats.errors.append(reason)
        for slot in self.slots:
            if slot.req is not None and (slot.logit_index >= 0 or slot.in_prompt):
                self._fail_slot(slot, reason)

    def _finish(self, slot: Slot[Request], reason: str = "stop", error: str | None = None, emit: bool = True) -> None:
        req = slot.req
        if req is None:
            return
        if error is not None:
            req.emit({"error": error})
        elif emit:
            assert slot.text is not None  # set with the request (Slot.begin)
            tail = slot.text.flush()
            rest = slot.logprobs.rest() if slot.logprobs is not None else []
            if tail or rest:
                req.emit({"content": tail, "logprobs": rest} if rest else {"content": tail})
            now = time.perf_counter_ns()
            req.emit({
                "done": True,
                "done_reason": reason,
                # As Ollama: the whole prompt, cached or not; the cached part is said separately.
                "prompt_eval_count": len(req.prompt),
                "cached_tokens": len(req.prompt) - slot.prompt_evaluated,
                "stop_sequence": slot.text.matched,
                "prompt_eval_duration": slot.prompt_ns if not slot.in_prompt else (now - slot.t_prompt if slot.t_prompt else 0),
                "eval_count": len(slot.generated),
                "eval_duration": (now - slot.t_gen) if slot.t_gen else 0,
                "tokens": list(slot.generated),
                "prompt_tokens": len(req.prompt),
            })
        slot.end()

    # --- embeddings (runner/embed.py) ------------------------------------------------------
    def embedding_limit(self) -> int:
        """The longest input an embed takes: an embedding model's batch, or a chat model's slot context."""
        from ollamalike.runner.embed import embedding_limit

        return embedding_limit(self.m)

    @property
    def embedding_runner(self) -> bool:
        return bool(self.m.opts is not None and self.m.opts.embedding)
