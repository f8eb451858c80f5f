"""Context shift: a full slot drops the older half of what follows its kept prefix and goes on.

Ollama's behaviour (and llama.cpp's server's): the first ``num_keep`` tokens (BOS included) stay, half of the
rest is removed from the KV cache and the positions after it move back. The engine calls ``context_shift``
when a generating slot has no room for its next token; False means the request must end with "length".
"""

from __future__ import annotations

import llama_cpp

from ollamalike.runner.llama import Loaded
from ollamalike.runner.request import Request
from ollamalike.runner.slots import Slot, keep_count, shift_keep


def context_shift(m: Loaded, slot: Slot[Request]) -> bool:
    """Shift the full ``slot`` in place; False where the request forbids it or it cannot be done."""
    req = slot.req
    assert req is not None
    if req.params.num_predict == -2 or not req.shift:
        return False
    keep = keep_count(req.params.num_keep, req.prompt, m.bos if m.add_bos else None, m.n_ctx_slot)
    # With images, only the text after the last one is discarded (llama.cpp's server never shifts then).
    media_end = max((s.end for s in req.media.spans), default=0) if req.media is not None else 0
    start = shift_keep(keep, media_end, len(slot.cache))
    # (M-RoPE models never shift: llama.cpp cannot shift their positions, and their cells are not positions.)
    if start is None or slot.pos_offset or not llama_cpp.llama_memory_can_shift(m.mem):
        return False
    discard = (len(slot.cache) - start) // 2  # at least 1: shift_keep leaves two cells after the kept part
    llama_cpp.llama_memory_seq_rm(m.mem, slot.seq, start, start + discard)
    llama_cpp.llama_memory_seq_add(m.mem, slot.seq, start + discard, -1, -discard)
    del slot.cache[start : start + discard]
    return True
