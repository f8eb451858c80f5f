"""The draft model of speculative decoding (a Modelfile's ``DRAFT`` layer): load, vocabulary check, proposals.

``load_draft`` loads the draft GGUF as a second model with its own context (one KV sequence per
target slot, the same per-slot context) and refuses a draft whose vocabulary is not the target's:
a draft token id must mean the same text in both models, or its proposals would be nonsense (never
wrong output: the target verifies every token, but slower than no draft). ``DraftModel.propose``
brings the draft's sequence up to the slot's tokens (evaluating only what its own cache lacks) and
then picks ``k`` tokens greedily, one draft decode each. It runs on the engine thread only.
"""

from __future__ import annotations

from collections.abc import Sequence

import llama_cpp

from ollamalike.runner.llama import Loaded, LoadError, install_log_capture, new_context
from ollamalike.runner.spec import RunnerSpec

VOCAB_SIZE_SLACK = 128  # as llama.cpp allows: padding tokens at the end of one vocabulary
_CHECK_FROM = 5  # the first ids are control tokens models of one family may name differently


def vocab_mismatch(target: llama_cpp.llama_vocab_p, draft: llama_cpp.llama_vocab_p) -> str | None:
    """Why ``draft`` cannot propose tokens for ``target``, or None when their vocabularies agree."""
    if llama_cpp.llama_vocab_type(target) != llama_cpp.llama_vocab_type(draft):
        return "its tokenizer type differs from the model's"
    nt, nd = llama_cpp.llama_vocab_n_tokens(target), llama_cpp.llama_vocab_n_tokens(draft)
    if abs(nt - nd) > VOCAB_SIZE_SLACK:
        return f"its vocabulary has {nd} tokens, the model's {nt}"
    if llama_cpp.llama_vocab_get_add_bos(target) != llama_cpp.llama_vocab_get_add_bos(draft) or (
        llama_cpp.llama_vocab_get_add_bos(target) and llama_cpp.llama_vocab_bos(target) != llama_cpp.llama_vocab_bos(draft)
    ):
        return "its beginning-of-text token differs from the model's"
    for i in range(_CHECK_FROM, min(nt, nd)):
        if llama_cpp.llama_vocab_get_text(target, i) != llama_cpp.llama_vocab_get_text(draft, i):
            text = (llama_cpp.llama_vocab_get_text(target, i) or b"").decode("utf-8", "replace")
            return f"token {i} differs ({text[:20]!r} in the model)"
    return None


class DraftModel:
    """A loaded draft model: its context holds one sequence per target slot."""

    def __init__(self, model: llama_cpp.llama_model_p, ctx: llama_cpp.llama_context_p, n_batch: int,
                 n_slots: int, n_vocab_target: int) -> None:
        self.model = model
        self.ctx = ctx
        self.vocab = llama_cpp.llama_model_get_vocab(model)
        self.mem = llama_cpp.llama_get_memory(ctx)
        self.n_batch = n_batch
        self.n_vocab_target = n_vocab_target
        self.caches: list[list[int]] = [[] for _ in range(n_slots)]
        self.batch: llama_cpp.llama_batch | None = llama_cpp.llama_batch_init(n_batch, 0, 1)
        chain_params = llama_cpp.llama_sampler_chain_default_params()
        chain_params.no_perf = True
        greedy = llama_cpp.llama_sampler_chain_init(chain_params)
        llama_cpp.llama_sampler_chain_add(greedy, llama_cpp.llama_sampler_init_greedy())
        self.greedy: llama_cpp.llama_sampler_p | None = greedy
        self.decodes = 0

    def forget(self, seq: int) -> None:
        llama_cpp.llama_memory_seq_rm(self.mem, seq, -1, -1)
        self.caches[seq].clear()

    def _decode(self, seq: int, tokens: Sequence[int]) -> bool:
        """Append ``tokens`` to the draft's sequence, logits for the last one."""
        cache = self.caches[seq]
        batch = self.batch
        assert batch is not None  # until close
        for start in range(0, len(tokens), self.n_batch):
            chunk = tokens[start : start + self.n_batch]
            base = len(cache)
            for i, t in enumerate(chunk):
                batch.token[i] = t
                batch.pos[i] = base + i  # type: ignore[call-overload]  # llama-cpp-python's stub types pos wrongly
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = seq
                batch.logits[i] = 0
            batch.logits[len(chunk) - 1] = 1
            batch.n_tokens = len(chunk)
            self.decodes += 1
            if llama_cpp.llama_decode(self.ctx, batch) != 0:
                self.forget(seq)
                return False
            cache.extend(chunk)
        return True

    def propose(self, seq: int, history: Sequence[int], k: int) -> list[int]:
        if not history or any(t < 0 for t in history[-1:]):
            return []
        cache = self.caches[seq]
        n = 0
        for a, b in zip(cache, history, strict=False):
            if a != b:
                break
            n += 1
        n = min(n, len(history) - 1)  # the last token is decoded again for its logits
        if n < len(cache):
            if not llama_cpp.llama_memory_seq_rm(self.mem, seq, n, -1):
                self.forget(seq)
                n = 0
            del cache[n:]
        if not self._decode(seq, history[n:]):
            return []
        out: list[int] = []
        assert self.greedy is not None  # until close
        while True:
            token = int(llama_cpp.llama_sampler_sample(self.greedy, self.ctx, -1))
            if token >= self.n_vocab_target or llama_cpp.llama_vocab_is_eog(self.vocab, token):
                break
            out.append(token)
            if len(out) >= k or not self._decode(seq, [token]):
                break
        return out

    def close(self) -> None:
        if self.greedy is not None:
            llama_cpp.llama_sampler_free(self.greedy)
            self.greedy = None
        if self.batch is not None:
            llama_cpp.llama_batch_free(self.batch)
            self.batch = None
        if self.ctx:
            llama_cpp.llama_free(self.ctx)
            self.ctx = llama_cpp.llama_context_p(0)
        if self.model:
            llama_cpp.llama_model_free(self.model)
            self.model = llama_cpp.llama_model_p(0)


def load_draft(target: Loaded, opts: RunnerSpec, verbose: bool = False) -> DraftModel:
    """Load ``opts.draft_model_path`` beside ``target``. LoadError: unreadable, or another vocabulary."""
    capture = install_log_capture(verbose)
    path = opts.draft_model_path
    mparams = llama_cpp.llama_model_default_params()
    # The draft is small: all of it on the GPU when the target uses one, else none.
    mparams.n_gpu_layers = -1 if opts.gpu_layers != 0 else 0
    mparams.use_mmap = opts.use_mmap
    model = llama_cpp.llama_model_load_from_file(path.encode(), mparams)
    if not model:
        raise LoadError("failed to load the draft model: " + capture.reason(path))
    try:
        why = vocab_mismatch(target.vocab, llama_cpp.llama_model_get_vocab(model))
        if why is not None:
            raise LoadError(f"the draft model {path} cannot be used with this model: {why}")
        # The same context per slot as the target (a slot's tokens all fit), no adapters, f16 KV.
        dopts = RunnerSpec(model_path=path, ctx_size=opts.ctx_size, num_parallel=opts.num_parallel,
                           num_batch=opts.num_batch, threads=opts.threads, flash_attn=opts.flash_attn)
        ctx, n_batch = new_context(model, dopts)
        if not ctx:
            raise LoadError(capture.reason("failed to create the draft model's context (out of memory?)"))
    except BaseException:
        llama_cpp.llama_model_free(model)
        raise
    return DraftModel(model, ctx, n_batch, max(1, opts.num_parallel), target.n_vocab)

