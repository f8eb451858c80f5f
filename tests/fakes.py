"""Stand-ins for the domain objects below the handlers: the real ``GGUFInfo`` and ``ResolvedModel``
dataclasses with test defaults, and ``StubRunner``, a runner implementing ``RunnerLike`` (the way
httpx's MockTransport implements its transport interface) that tests subclass for what they script."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from ollamalike.gguf_info import GGUFInfo
from ollamalike.library.models import ResolvedModel
from ollamalike.runner.like import RunnerLike
from ollamalike.runner.spec import RunnerSpec


def gguf_info(**fields: Any) -> GGUFInfo:
    """A GGUFInfo that knows only ``fields``: every other size and count is zero (unknown), no tensor index."""
    base: dict[str, Any] = dict(
        version=3, architecture="", parameter_count=0, parameter_size="", file_type="", context_length=None,
        embedding_length=None, block_count=None, head_count=None, head_count_kv=None, chat_template=None,
        bos_token=None, eos_token=None, is_embedding_model=False, model_info={}, file_size=0, alignment=32,
        tensor_count=0, tensor_bytes=0,
    )
    return GGUFInfo(**{**base, **fields})


def resolved_model(name: str = "m:latest", model_path: Path | str = "/models/m.gguf",
                   info: GGUFInfo | None = None, **fields: Any) -> ResolvedModel:
    """A ResolvedModel as ``library.resolve_model`` would build it, from the fields a test cares about."""
    base: dict[str, Any] = dict(
        digest="sha256:" + "ab" * 32, adapters=[], projectors=[], template=None, system=None, parameters={},
        messages=[], details={}, capabilities=[],
    )
    return ResolvedModel(name=name, model_path=Path(model_path), info=info or gguf_info(), **{**base, **fields})


class StubRunner:
    """A runner that is alive until stopped; requests answer trivially (one token per word, an empty
    completion, zero vectors). Subclasses override what their test scripts."""

    def __init__(self, spec: RunnerSpec | None = None, pid: int = 4242) -> None:
        self.spec = spec
        self.pid = pid
        self.alive = True
        self.stopped = False
        self.memory: dict[str, int] = {"size": 0, "size_vram": 0}

    async def completion(self, prompt: str | list[int], options: dict[str, Any] | None = None,
                         format: str | dict[str, Any] | None = None, images: Sequence[Any] = (), *,
                         logprobs: int | None = None, shift: bool = True) -> AsyncIterator[dict[str, Any]]:
        yield {"done": True, "done_reason": "stop", "prompt_eval_count": len(prompt), "eval_count": 0}

    async def tokenize(self, text: str, add_special: bool = True, images: Sequence[Any] = ()) -> list[int]:
        return list(range(len(text.split())))

    async def detokenize(self, tokens: list[int]) -> str:
        return " ".join(str(t) for t in tokens)

    async def embed(self, inputs: list[str], truncate: bool = True) -> tuple[list[list[float]], int]:
        return [[0.0] for _ in inputs], len(inputs)

    async def stop(self) -> None:
        self.stopped = True
        self.alive = False


def _implements_runner_like(runner: StubRunner) -> RunnerLike:
    return runner  # mypy checks StubRunner against the Protocol here
