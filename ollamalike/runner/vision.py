"""The runner's image path: llama.cpp's mtmd (libmtmd) beside the model, for models with a projector.

``Vision.open(loaded, path)`` loads the projector (an mmproj GGUF) against the loaded text model.
``Vision.tokenize(text, images)`` turns a prompt whose images are marked ``[img-N]`` (Ollama's tags; N
indexes ``images``) into a ``MediaPrompt``: mtmd's chunks (text tokens, and one chunk per image, with any
wrapper tokens the model wants around it) plus one flat position list for the engine. Text positions
hold their token ids; an image's positions hold one negative id derived from the image's pixels
(sha256), so the engine's prefix cache compares images by content like text: the same image in the
next turn is not encoded again. ``Vision.eval_image(...)`` encodes one image chunk and decodes its
embeddings into a sequence's KV cache (mtmd's helper). A non-causal image (Gemma 3) must fit one
micro-batch (else a 400 from ``tokenize``). An M-RoPE model's image (Qwen2-VL) has one entry per KV
cell in the position list but advances the decoder position by fewer (``Span.n_pos``): slots keep the
difference (``Slot.pos_offset``) so that the text after it is decoded where mtmd left off.

The images arrive already decoded and checked by the daemon (``ollamalike/media.py``, Pillow): raw RGB
pixels, so no image parser runs in this process. Audio clips (a projector with an audio encoder) arrive
as mono float32 samples, tagged like images; they are resampled here to the projector's rate.
"""

from __future__ import annotations

import ctypes
import hashlib
import re
import secrets
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

import llama_cpp

from ollamalike.runner.llama import Loaded, LoadError, install_log_capture
from ollamalike.runner.slots import Slot

_TAG = re.compile(r"\[img-(\d+)\]")


class MediaError(ValueError):
    """A request's images cannot be used as given (a 400 for the client)."""


@dataclass(frozen=True)
class RawImage:
    """Decoded pixels: ``width * height * 3`` bytes of RGB, row by row."""

    width: int
    height: int
    rgb: bytes

    @property
    def digest(self) -> str:
        return hashlib.sha256(f"{self.width}x{self.height}:".encode() + self.rgb).hexdigest()


@dataclass(frozen=True)
class RawAudio:
    """Decoded audio: mono float32 samples (little-endian bytes) at ``rate`` Hz."""

    rate: int
    samples: bytes

    @property
    def digest(self) -> str:
        return hashlib.sha256(f"audio@{self.rate}:".encode() + self.samples).hexdigest()


Media = RawImage | RawAudio


def position_key(image_id: str, part: int) -> int:
    """The negative id the positions of an image chunk carry (never a real token id): from the image's
    digest and which of its chunks this is (a model may cut one image into several)."""
    h = hashlib.sha256(f"{image_id}:{part}".encode()).digest()
    return -1 - int.from_bytes(h[:7], "big")


@dataclass
class Span:
    """One image chunk of a prompt: entries ``start .. start + n_tokens - 1`` of its flat list (one per KV cell).

    ``n_pos``: how far the image advances the decoder's position; ``n_tokens`` but for M-RoPE models
    (Qwen2-VL), whose image is a grid of ``nx`` x ``ny`` tokens placed over ``max(nx, ny)`` positions."""

    start: int
    n_tokens: int
    chunk: int  # mtmd_input_chunk pointer, owned by the MediaPrompt's chunk list
    n_pos: int = -1  # -1: n_tokens

    @property
    def positions(self) -> int:
        return self.n_tokens if self.n_pos < 0 else self.n_pos

    @property
    def end(self) -> int:
        return self.start + self.n_tokens


@dataclass
class MediaPrompt:
    """A tokenized prompt with images: the flat position list and the image chunks in it."""

    tokens: list[int]
    spans: list[Span] = field(default_factory=list)

    def span_at(self, pos: int) -> Span | None:
        for s in self.spans:
            if s.start == pos:
                return s
        return None

    def next_start(self, pos: int) -> int:
        """Where the next image at or after ``pos`` begins (the prompt's length when none does)."""
        return min((s.start for s in self.spans if s.start >= pos), default=len(self.tokens))

    def align(self, n: int) -> int:
        """A reusable prefix never ends inside an image: move ``n`` back to the start of one it cuts."""
        for s in self.spans:
            if s.start < n < s.end:
                return s.start
        return n

    def offset_before(self, n: int) -> int:
        """Entries minus decoder positions of the images before entry ``n`` (an image boundary): the entry
        ``n`` is decoded at position ``n - offset_before(n)``. 0 but for M-RoPE models."""
        return sum(s.n_tokens - s.positions for s in self.spans if s.end <= n)


def tag_order(text: str, count: int) -> tuple[str, list[int]]:
    """Each ``[img-N]`` tag (N < count, first use) replaced by the media marker, and the image order.

    mtmd takes the images in the order their markers appear in the text; a tag for an image that was
    not sent stays text. Every image must be tagged once."""
    order: list[int] = []

    def swap(m: re.Match[str]) -> str:
        n = int(m.group(1))
        if n >= count or n in order:
            return m.group(0)
        order.append(n)
        return MARKER

    out = _TAG.sub(swap, text)
    missing = sorted(set(range(count)) - set(order))
    if missing:
        raise MediaError(f"image {missing[0]} has no [img-{missing[0]}] tag in the prompt")
    return out, order


# Per process and random: a client's text can never contain it by chance (or on purpose).
MARKER = f"<__ollamalike_media_{secrets.token_hex(8)}__>"


class Vision:
    def __init__(self, ctx: int, loaded: Loaded) -> None:
        from llama_cpp import mtmd_cpp

        self.ctx = ctx
        self.m = loaded
        self.vision = bool(mtmd_cpp.mtmd_support_vision(ctx))
        self.audio = bool(mtmd_cpp.mtmd_support_audio(ctx))
        # A non-causal image (Gemma 3) is decoded in one micro-batch: llama.cpp asserts n_ubatch >= its tokens.
        self.n_ubatch = int(llama_cpp.llama_n_ubatch(loaded.ctx))

    @classmethod
    def open(cls, loaded: Loaded, path: str, threads: int, use_gpu: bool, verbose: bool = False) -> Vision:
        capture = install_log_capture(verbose)
        try:
            # Only here: a runner without a projector works on a build without libmtmd.
            from llama_cpp import mtmd_cpp
        except (ImportError, OSError, FileNotFoundError):
            raise LoadError("this llama.cpp build has no libmtmd (images need it): run ./install.sh --rebuild") from None
        params = mtmd_cpp.mtmd_context_params_default()
        params.use_gpu = use_gpu
        params.print_timings = verbose
        params.n_threads = max(1, threads)
        params.media_marker = MARKER.encode()
        params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
        ctx = mtmd_cpp.mtmd_init_from_file(path.encode(), loaded.model, params)
        if not ctx:
            raise LoadError(capture.reason(f"failed to load the projector {path}"))
        return cls(ctx, loaded)

    def close(self) -> None:
        from llama_cpp import mtmd_cpp

        if self.ctx:
            mtmd_cpp.mtmd_free(self.ctx)
            self.ctx = 0

    def tokenize(self, text: str, images: Sequence[Media], add_special: bool = True) -> MediaPrompt:
        """The prompt as mtmd chunks. Safe beside the engine thread (it reads the projector's settings only)."""
        from llama_cpp import mtmd_cpp

        if any(isinstance(m, RawImage) for m in images) and not self.vision:
            raise MediaError("this model's projector does not take images")
        if any(isinstance(m, RawAudio) for m in images) and not self.audio:
            raise MediaError("this model's projector does not take audio")
        marked, order = tag_order(text, len(images))
        ordered = [images[i] for i in order]
        rate = int(mtmd_cpp.mtmd_get_audio_sample_rate(self.ctx)) if self.audio else 0
        bitmaps: list[int] = []
        try:
            for item in ordered:
                bitmaps.append(_bitmap(item) if isinstance(item, RawImage) else _audio_bitmap(item, rate))
        except BaseException:
            for b in bitmaps:
                mtmd_cpp.mtmd_bitmap_free(b)
            raise
        chunks = mtmd_cpp.mtmd_input_chunks_init()
        if not chunks:
            for b in bitmaps:
                mtmd_cpp.mtmd_bitmap_free(b)
            raise MemoryError("mtmd could not allocate input chunks")
        data = marked.encode("utf-8", errors="replace")
        inp = mtmd_cpp.mtmd_input_text()
        inp.text = data
        inp.text_len = len(data)
        inp.add_special = add_special
        inp.parse_special = True
        try:
            arr = (mtmd_cpp.mtmd_bitmap_p_ctypes * max(1, len(bitmaps)))(*bitmaps)
            rc = mtmd_cpp.mtmd_tokenize(self.ctx, chunks, ctypes.byref(inp), arr, len(bitmaps))
        finally:
            for b in bitmaps:
                mtmd_cpp.mtmd_bitmap_free(b)
        prompt = MediaPrompt(tokens=[])
        # The chunk list lives as long as the prompt (the engine encodes from it); freed with it.
        weakref.finalize(prompt, mtmd_cpp.mtmd_input_chunks_free, chunks)
        if rc != 0:
            raise MediaError(f"the images could not be prepared for the model (mtmd_tokenize status {rc})")
        parts: dict[str, int] = {}
        for i in range(mtmd_cpp.mtmd_input_chunks_size(chunks)):
            chunk = mtmd_cpp.mtmd_input_chunks_get(chunks, i)
            kind = mtmd_cpp.mtmd_input_chunk_get_type(chunk)
            if kind == mtmd_cpp.MTMD_INPUT_CHUNK_TYPE_TEXT:
                n = ctypes.c_size_t()
                ptr = mtmd_cpp.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(n))
                prompt.tokens.extend(ptr[j] for j in range(n.value))
                continue
            n_pos = int(mtmd_cpp.mtmd_input_chunk_get_n_pos(chunk))
            n_tokens = int(mtmd_cpp.mtmd_input_chunk_get_n_tokens(chunk))
            if n_tokens > self.n_ubatch and mtmd_cpp.mtmd_decode_use_non_causal(self.ctx, chunk):
                raise MediaError(f"an image takes {n_tokens} tokens and this model's projector needs all of an "
                                 f"image's tokens in one batch: set num_batch to at least {n_tokens} "
                                 f"(it is {self.n_ubatch})")
            image_id = (mtmd_cpp.mtmd_input_chunk_get_id(chunk) or b"").decode()
            part = parts[image_id] = parts.get(image_id, -1) + 1
            key = position_key(image_id, part)
            prompt.spans.append(Span(len(prompt.tokens), n_tokens, int(chunk), n_pos))
            prompt.tokens.extend([key] * n_tokens)
        if prompt.spans and prompt.tokens[-1] < 0:
            raise MediaError("the prompt ends with an image: put some text after it")
        return prompt

    def eval_image(self, span: Span, n_past: int, seq: int, n_batch: int) -> int:
        """Encode one image and decode it into ``seq`` at ``n_past``; returns the next position."""
        from llama_cpp import mtmd_cpp

        new_past = llama_cpp.llama_pos(0)
        rc = mtmd_cpp.mtmd_helper_eval_chunk_single(
            self.ctx, self.m.ctx, ctypes.c_void_p(span.chunk), n_past, seq, n_batch, False, ctypes.byref(new_past))
        if rc != 0:
            raise RuntimeError(f"evaluating an image failed (mtmd status {rc})")
        return int(new_past.value)


def _audio_bitmap(clip: RawAudio, rate: int) -> int:
    """Audio at the projector's sample rate (linear resampling), as an mtmd bitmap."""
    import numpy as np
    from llama_cpp import mtmd_cpp

    if clip.rate <= 0 or len(clip.samples) % 4 or not clip.samples:
        raise MediaError("audio samples do not match their rate and format")
    samples = np.frombuffer(clip.samples, dtype="<f4")
    if rate > 0 and clip.rate != rate:
        n = max(1, round(len(samples) * rate / clip.rate))
        samples = np.interp(np.arange(n) * (clip.rate / rate), np.arange(len(samples)), samples).astype(np.float32)
    data = np.ascontiguousarray(samples, dtype=np.float32)
    buf = (ctypes.c_float * len(data)).from_buffer_copy(data.tobytes())
    bitmap = mtmd_cpp.mtmd_bitmap_init_from_audio(len(data), buf)
    if not bitmap:
        raise MemoryError("mtmd could not allocate an audio clip")
    mtmd_cpp.mtmd_bitmap_set_id(bitmap, clip.digest.encode())
    return int(bitmap)


def _bitmap(img: RawImage) -> int:
    from llama_cpp import mtmd_cpp

    if img.width <= 0 or img.height <= 0 or len(img.rgb) != img.width * img.height * 3:
        raise MediaError("image pixels do not match its width and height")
    buf = (ctypes.c_uint8 * len(img.rgb)).from_buffer_copy(img.rgb)
    bitmap = mtmd_cpp.mtmd_bitmap_init(img.width, img.height, buf)
    if not bitmap:
        raise MemoryError("mtmd could not allocate an image")
    mtmd_cpp.mtmd_bitmap_set_id(bitmap, img.digest.encode())
    return int(bitmap)


class MediaRequest(Protocol):
    """What ``advance_images`` reads of a slot's request (the engine's ``Request``)."""

    @property
    def media(self) -> MediaPrompt | None: ...
    @property
    def cancelled(self) -> bool: ...


R = TypeVar("R", bound=MediaRequest)


def advance_images(vision: Vision, slots: Sequence[Slot[R]], m: Loaded, prompt_done: Callable[[Slot[R]], None],
                   fail: Callable[[Slot[R], str], None]) -> bool:
    """Evaluate the image each prompt-evaluating slot has reached (engine thread, between steps).

    The text before an image was decoded in an earlier step, so the image's embeddings attend to it.
    ``prompt_done(slot)`` queues the prompt's last token once only it is left; ``fail(slot, reason)``
    ends a request whose image could not be evaluated. True when an image was evaluated."""
    did = False
    for slot in slots:
        req = slot.req
        if req is None or req.media is None or req.cancelled or not slot.in_prompt or slot.next_token is not None:
            continue
        media = req.media
        span = media.span_at(slot.prompt_done)
        if span is None:
            continue
        if slot.t_prompt == 0:
            slot.t_prompt = time.perf_counter_ns()
        pos = slot.next_pos
        try:
            after = vision.eval_image(span, pos, slot.seq, m.n_batch)
        except RuntimeError as e:
            fail(slot, str(e))
            continue
        slot.cache.extend(slot.prompt[span.start : span.end])
        slot.pos_offset += span.n_tokens - (after - pos)  # M-RoPE: fewer positions than cells
        slot.prompt_done += span.n_tokens
        slot.prompt_evaluated += span.n_tokens
        if slot.prompt_done == len(slot.prompt) - 1:
            prompt_done(slot)
        did = True
    return did
