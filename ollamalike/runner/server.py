"""The runner's socket server: HTTP with NDJSON streams over a Unix domain socket.

Routes: GET /health (status loading|ok, load progress, memory, slots), POST /completion (NDJSON:
{"content"} chunks, each with its tokens' "logprobs" when the body asked for them, then a
{"done": true, ...} object, or an {"error"} line), POST /tokenize,
POST /detokenize, POST /embedding (completion and tokenize take ``images``: decoded RGB pixels, placed
at the prompt's ``[img-N]`` tags; see runner/vision.py) (an embedding model's runner, or beside the generations of a
chat model's), POST /shutdown. The model loads in a worker thread (started by ``__main__`` before
this module is imported: ``llama.Preload``) while /health already answers; the engine runs in its own thread and talks back through one
``outbox.Outbox`` (one loop wake-up per engine step for all streams). A client that goes away cancels
its sequence.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys

import llama_cpp
from aiohttp import web

from ollamalike.errors import BadRequest
from ollamalike.jsontypes import JSONObject
from ollamalike.runner.draft import DraftModel, load_draft
from ollamalike.runner.embed import EmbedJob
from ollamalike.runner.engine import Engine
from ollamalike.runner.llama import Loaded, LoadError, Preload, load_model
from ollamalike.runner.logprobs import MAX_TOP_LOGPROBS
from ollamalike.runner.outbox import Outbox
from ollamalike.runner.request import Event, Request
from ollamalike.runner.sampling import SamplingParams, grammar_for_format
from ollamalike.runner.spec import RunnerSpec
from ollamalike.runner.tokens import detokenize, tokenize
from ollamalike.runner.vision import Media, MediaError, MediaPrompt, RawAudio, RawImage, Vision

NDJSON = "application/x-ndjson"
HEARTBEAT = 0.25  # seconds between the spaces an embed answer starts with while it is computed


class RunnerServer:
    def __init__(self, spec: RunnerSpec, verbose: bool = False, preload: Preload | None = None) -> None:
        self.opts = spec
        self.verbose = verbose
        self.status = "loading"
        self.error: str | None = None
        self.preload = preload
        self.progress = preload.progress if preload is not None else [0.0]
        self.loaded: Loaded | None = None
        self.engine: Engine | None = None
        self.vision: Vision | None = None
        self.outbox: Outbox | None = None
        self.draft: DraftModel | None = None
        self.stopping = asyncio.Event()

    # --- lifecycle -------------------------------------------------------------------------
    async def load(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            if self.preload is not None:
                self.loaded = await asyncio.wrap_future(self.preload.future)
            else:
                self.loaded = await loop.run_in_executor(None, load_model, self.opts, self.progress, self.verbose)
            if self.opts.projectors:
                self.vision = await loop.run_in_executor(None, _open_vision, self.loaded, self.opts, self.verbose)
            if self.opts.draft_model_path and self.opts.speculative != "off":
                self.draft = await loop.run_in_executor(None, load_draft, self.loaded, self.opts, self.verbose)
        except LoadError as e:
            if self.vision is not None:
                self.vision.close()
                self.vision = None
            if self.loaded is not None:
                self.loaded.close()
                self.loaded = None
            self.status, self.error = "error", str(e)
            print(f"error: {e}", file=sys.stderr, flush=True)
            self.stopping.set()
            return
        self.outbox = Outbox(loop)
        self.engine = Engine(self.loaded, self.opts.num_parallel, self.vision, self.outbox,
                             prompt_cache=0 if self.opts.embedding else self.opts.prompt_cache,
                             speculative=self.opts.speculative, drafter=self.draft)
        self.engine.start()
        self.status = "ok"

    def close(self) -> None:
        if self.engine is not None:
            self.engine.stop()
        if self.vision is not None:
            self.vision.close()
        if self.draft is not None:
            self.draft.close()
        if self.loaded is not None:
            self.loaded.close()

    def app(self) -> web.Application:
        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_get("/health", self.health)
        app.router.add_post("/completion", self.completion)
        app.router.add_post("/tokenize", self.tokenize)
        app.router.add_post("/detokenize", self.detokenize)
        app.router.add_post("/embedding", self.embedding)
        app.router.add_post("/shutdown", self.shutdown)
        return app

    def _ready(self) -> tuple[Loaded, Engine]:
        if self.loaded is None or self.engine is None:
            raise _http_error(503, self.error or "model is still loading")
        return self.loaded, self.engine

    # --- routes ----------------------------------------------------------------------------
    async def health(self, _request: web.Request) -> web.Response:
        body: dict[str, object] = {"status": self.status, "progress": round(self.progress[0], 4), "pid": os.getpid()}
        if self.error:
            body["error"] = self.error
        if self.loaded is not None and self.engine is not None:
            m = self.loaded
            body.update(
                memory={"size": m.size, "size_vram": m.size_vram},
                n_ctx=m.n_ctx, n_ctx_slot=m.n_ctx_slot, n_batch=m.n_batch, parallel=len(self.engine.slots),
                embedding=self.opts.embedding, vision=bool(self.vision and self.vision.vision),
                audio=bool(self.vision and self.vision.audio), slots_busy=self.engine.busy_slots(),
                queued=self.engine.stats.queued, steps=self.engine.stats.steps,
                decoded_tokens=self.engine.stats.decoded_tokens,
                embed_inputs_pending=self.engine.embeds.inputs_pending,
                embed_inputs_done=self.engine.embeds.inputs_embedded,
            )
            if self.engine.prompt_cache is not None:
                body["prompt_cache"] = self.engine.prompt_cache.report()
            spec = self.engine.spec
            if spec is not None:
                body.update(draft_model=self.draft is not None, spec_drafts=spec.stats.drafts,
                            spec_proposed=spec.stats.proposed, spec_accepted=spec.stats.accepted)
        return web.json_response(body)

    async def tokenize(self, request: web.Request) -> web.Response:
        m, _ = self._ready()
        body = await _json(request)
        content = body.get("content")
        if not isinstance(content, str):
            raise _http_error(400, "content must be a string")
        add_special = bool(body.get("add_special", True))
        images = _images(body.get("images"))
        if images:
            media = await self._media(content, images, add_special)
            return web.json_response({"tokens": media.tokens})
        return web.json_response({"tokens": tokenize(m, content, add_special)})

    async def _media(self, text: str, images: list[Media], add_special: bool = True) -> MediaPrompt:
        """The prompt through mtmd (off the event loop: images are resized and normalised here)."""
        if self.vision is None:
            raise _http_error(400, "this model is missing data required for image input")
        vision = self.vision
        try:
            return await asyncio.get_running_loop().run_in_executor(None, vision.tokenize, text, images, add_special)
        except MediaError as e:
            raise _http_error(400, str(e)) from None

    async def detokenize(self, request: web.Request) -> web.Response:
        m, _ = self._ready()
        tokens = (await _json(request)).get("tokens")
        return web.json_response({"content": detokenize(m, _check_tokens(m, tokens))})

    async def embedding(self, request: web.Request) -> web.StreamResponse:
        m, engine = self._ready()
        body = await _json(request)
        raw = body.get("input")
        inputs = [s for s in raw if isinstance(s, str)] if isinstance(raw, list) else []
        if not isinstance(raw, list) or len(inputs) != len(raw):
            raise _http_error(400, "input must be a list of strings")
        truncate = bool(body.get("truncate", True))
        # Off the loop (llama_tokenize drops the GIL): many long inputs must not stall the streams
        # of the generations this runner serves meanwhile.
        token_lists = await asyncio.to_thread(_embed_tokens, m, inputs, engine.embedding_limit(), truncate)
        if not token_lists:
            return web.json_response({"embeddings": [], "prompt_eval_count": 0})
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[tuple[list[list[float]] | None, str | None]] = loop.create_future()

        def done(vectors: list[list[float]] | None, error: str | None) -> None:
            def settle() -> None:
                if not fut.done():
                    fut.set_result((vectors, error))

            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is waiting
                loop.call_soon_threadsafe(settle)

        job = EmbedJob(token_lists, done)
        engine.embed(job)
        try:
            # The answer is one JSON object, preceded by a space every HEARTBEAT seconds while the job
            # runs (JSON allows leading whitespace). Those writes are how a client that hung up is
            # noticed: a request whose body was large is not read any further, so its end of file is not.
            resp = web.StreamResponse(headers={"Content-Type": "application/json"})
            await resp.prepare(request)
            while True:
                try:
                    vectors, error = await asyncio.wait_for(asyncio.shield(fut), HEARTBEAT)
                    break
                except asyncio.TimeoutError:
                    await resp.write(b" ")
        finally:
            if not fut.done():  # the client went away: the engine drops the job at its next chunk
                engine.cancel_embed(job)
        if error is not None or vectors is None:
            answer: dict[str, object] = {"error": error or "embedding failed"}
        else:
            answer = {"embeddings": vectors, "prompt_eval_count": sum(len(t) for t in token_lists)}
        await resp.write(json.dumps(answer).encode())
        await resp.write_eof()
        return resp

    async def completion(self, request: web.Request) -> web.StreamResponse:
        m, engine = self._ready()
        if self.opts.embedding:
            raise _http_error(400, "this runner serves embeddings only; it cannot generate text")
        body = await _json(request)
        prompt = body.get("prompt", "")
        images = _images(body.get("images"))
        media: MediaPrompt | None = None
        if images:
            if not isinstance(prompt, str):
                raise _http_error(400, "a prompt with images must be text")
            media = await self._media(prompt, images)
            tokens = media.tokens
        else:
            tokens = tokenize(m, prompt, True, True) if isinstance(prompt, str) else _check_tokens(m, prompt)
        if not tokens:
            if m.bos < 0:
                raise _http_error(400, "the prompt is empty and this model has no BOS token to start from")
            tokens = [m.bos]
        if len(tokens) >= m.n_ctx_slot:
            # Truncation is the daemon's (it knows the messages and num_keep): a prompt that leaves
            # no cell to generate into is refused, never cut, so the context handed back is exact.
            raise _http_error(400, f"the prompt has {len(tokens)} tokens, too long for the slot's context of "
                                   f"{m.n_ctx_slot}: at most {m.n_ctx_slot - 1} leave room to generate")
        options = body.get("options") or {}
        if not isinstance(options, dict):
            raise _http_error(400, "options must be an object")
        try:
            params = SamplingParams.from_options(options)
            grammar = grammar_for_format(body.get("format"))
        except BadRequest as e:
            raise _http_error(400, str(e)) from None
        logprobs = body.get("logprobs")
        if logprobs is not None and (isinstance(logprobs, bool) or not isinstance(logprobs, int)
                                     or not 0 <= logprobs <= MAX_TOP_LOGPROBS):
            raise _http_error(400, f"logprobs must be null or the number of top logprobs, 0 to {MAX_TOP_LOGPROBS}")
        shift = body.get("shift", True)
        if not isinstance(shift, bool):
            raise _http_error(400, "shift must be a boolean")
        events: asyncio.Queue[Event] = asyncio.Queue()
        assert self.outbox is not None  # made with the engine
        req = Request(prompt=tokens, params=params, grammar=grammar, emit=self.outbox.sender(events),
                      logprobs=logprobs, shift=shift,
                      media=media)
        engine.submit(req)
        finished = False
        try:
            resp = web.StreamResponse(headers={"Content-Type": NDJSON})
            await resp.prepare(request)
            while True:
                event = await events.get()
                parts = [event]
                while not events.empty():  # send what piled up in one write
                    parts.append(events.get_nowait())
                await resp.write(b"".join(json.dumps(p).encode() + b"\n" for p in parts))
                if any(p.get("done") or "error" in p for p in parts):
                    finished = True
                    break
            await resp.write_eof()
            return resp
        finally:
            if not finished:
                engine.cancel(req)

    async def shutdown(self, _request: web.Request) -> web.Response:
        self.stopping.set()
        return web.json_response({"status": "stopping"})


async def _json(request: web.Request) -> JSONObject:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise _http_error(400, "request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise _http_error(400, "request body must be a JSON object")
    return body


def _embed_tokens(m: Loaded, inputs: list[str], limit: int, truncate: bool) -> list[list[int]]:
    """Each input's tokens, cut to ``limit`` (keeping a closing SEP/EOS) or refused when ``truncate`` is off."""
    keep_last = bool(llama_cpp.llama_vocab_get_add_sep(m.vocab) or llama_cpp.llama_vocab_get_add_eos(m.vocab))
    token_lists = []
    for text in inputs:
        toks = tokenize(m, text, True, False) or ([m.bos] if m.bos >= 0 else [])
        if not toks:
            raise _http_error(400, "cannot embed an empty input with this model")
        if len(toks) > limit:
            if not truncate:
                raise _http_error(400, "input length exceeds maximum context length")
            toks = toks[: limit - 1] + [toks[-1]] if keep_last else toks[:limit]
        token_lists.append(toks)
    return token_lists


def _open_vision(m: Loaded, spec: RunnerSpec, verbose: bool) -> Vision:
    from ollamalike.runner.llama import _default_threads

    return Vision.open(m, spec.projectors[0], spec.threads or _default_threads(), spec.gpu_layers != 0, verbose)


def _images(value: object) -> list[Media]:
    """The wire's media: images [{"width", "height", "data": base64 RGB}] and audio clips [{"kind": "audio",
    "rate", "data": base64 float32 mono}] (the daemon decoded and checked them)."""
    import base64
    import binascii

    if value is None:
        return []
    if not isinstance(value, list):
        raise _http_error(400, "images must be a list")
    out: list[Media] = []
    for item in value:
        if isinstance(item, dict) and item.get("kind") == "audio":
            out.append(_audio(item))
            continue
        w = item.get("width") if isinstance(item, dict) else None
        h = item.get("height") if isinstance(item, dict) else None
        data = item.get("data") if isinstance(item, dict) else None
        if not (isinstance(w, int) and isinstance(h, int) and isinstance(data, str) and w > 0 and h > 0):
            raise _http_error(400, "each image needs an integer width and height and base64 RGB data")
        try:
            rgb = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise _http_error(400, "image data is not valid base64") from None
        if len(rgb) != w * h * 3:
            raise _http_error(400, f"image data is {len(rgb)} bytes, not {w}x{h} RGB")
        out.append(RawImage(w, h, rgb))
    return out


def _audio(item: dict[str, object]) -> RawAudio:
    import base64
    import binascii

    rate, data = item.get("rate"), item.get("data")
    if not (isinstance(rate, int) and rate > 0 and isinstance(data, str)):
        raise _http_error(400, "an audio clip needs an integer rate and base64 float32 data")
    try:
        samples = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise _http_error(400, "audio data is not valid base64") from None
    if not samples or len(samples) % 4:
        raise _http_error(400, "audio data is not float32 samples")
    return RawAudio(rate, samples)


def _check_tokens(m: Loaded, tokens: object) -> list[int]:
    if not isinstance(tokens, list) or not all(isinstance(t, int) and not isinstance(t, bool) for t in tokens):
        raise _http_error(400, "tokens must be a list of integers")
    bad = [t for t in tokens if not 0 <= t < m.n_vocab]
    if bad:
        raise _http_error(400, f"token id {bad[0]} is out of range for a vocabulary of {m.n_vocab}")
    return list(tokens)


def _http_error(status: int, message: str) -> web.HTTPException:
    cls = {400: web.HTTPBadRequest, 500: web.HTTPInternalServerError, 503: web.HTTPServiceUnavailable}[status]
    return cls(text=json.dumps({"error": message}), content_type="application/json")
