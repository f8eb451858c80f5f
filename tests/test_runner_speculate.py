"""Speculative decoding through a real runner process (issue 20): the spec's draft model is loaded and
used, /health reports the drafts, and a draft of another vocabulary fails the start with a clear error."""

from __future__ import annotations

from pathlib import Path

import pytest

from ollamalike.config import Config
from ollamalike.errors import RunnerError
from ollamalike.runner.client import RunnerProcess, RunnerSpec

pytestmark = pytest.mark.asyncio


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return Config(home=tmp_path, models_dir=tmp_path / "models")


async def _tokens(proc: RunnerProcess, prompt: str) -> list[int]:
    async for ev in proc.completion(prompt, {"temperature": 0, "num_predict": 32}):
        if ev.get("done"):
            tokens = ev["tokens"]
            assert isinstance(tokens, list)
            return [int(t) for t in tokens if isinstance(t, int)]
    raise AssertionError("no done object")


async def test_a_runner_with_a_draft_model_drafts_and_matches_one_without(config: Config,
                                                                           tiny_chat_gguf: Path) -> None:
    base = RunnerSpec(str(tiny_chat_gguf), ctx_size=512, threads=1)
    plain = await RunnerProcess.start(RunnerSpec(str(tiny_chat_gguf), ctx_size=512, threads=1, speculative="off"),
                                      config)
    drafted = await RunnerProcess.start(RunnerSpec(base.model_path, ctx_size=512, threads=1,
                                                   draft_model_path=str(tiny_chat_gguf)), config)
    try:
        for prompt in ("the cat sat on the mat", "once upon a time"):
            assert await _tokens(drafted, prompt) == await _tokens(plain, prompt)
        health = await drafted.get_health()
        assert health["draft_model"] is True
        assert isinstance(health["spec_accepted"], int) and health["spec_accepted"] > 10
        assert "spec_drafts" not in await plain.get_health()
    finally:
        await drafted.stop()
        await plain.stop()


async def test_a_draft_with_another_vocabulary_fails_the_start(config: Config, tiny_chat_gguf: Path,
                                                               tiny_embed_gguf: Path) -> None:
    spec = RunnerSpec(str(tiny_chat_gguf), ctx_size=512, threads=1, draft_model_path=str(tiny_embed_gguf))
    with pytest.raises(RunnerError, match=r"the draft model .*tiny-embed.gguf cannot be used with this model: "
                                          r"its tokenizer type differs"):
        await RunnerProcess.start(spec, config)
