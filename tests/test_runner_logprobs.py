"""Logprobs and ``shift: false`` in the runner: the math and the release rule on their own, then a
real runner process with the tiny model (greedy consistency, the same text with and without
logprobs, stop sequences, a full context without shifting, bad request bodies)."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pytest_asyncio

from ollamalike.config import Config
from ollamalike.errors import BadRequest
from ollamalike.runner.client import RunnerProcess, RunnerSpec
from ollamalike.runner.logprobs import LogprobQueue, score
from ollamalike.runner.sampling import TextStream

CTX = 96
GREEDY = {"temperature": 0, "num_predict": 12}


# -- the math and the release rule -------------------------------------------------------------------
def _piece(i: int) -> bytes:
    return ["a", "b", "é", ""][i].encode()


def test_score_is_a_log_softmax_with_ranked_alternatives() -> None:
    logits = np.array([1.0, 3.0, 3.0, -2.0], dtype=np.float32)
    entry = score(logits, 2, 3, _piece)
    total = math.log(sum(math.exp(v) for v in logits))
    assert entry["token"] == "é" and entry["bytes"] == [0xC3, 0xA9]
    assert entry["logprob"] == pytest.approx(3.0 - total)
    tops = entry["top_logprobs"]
    # A tie goes to the lower id, as the greedy sampler picks it.
    assert [t["token"] for t in tops] == ["b", "é", "a"]
    assert [t["logprob"] for t in tops] == pytest.approx([3.0 - total, 3.0 - total, 1.0 - total])
    assert "top_logprobs" not in score(logits, 0, 0, _piece)
    empty = score(logits, 3, 10, _piece)  # more alternatives asked than the vocabulary has
    assert "bytes" not in empty and empty["token"] == "" and len(empty["top_logprobs"]) == 4
    assert sum(math.exp(t["logprob"]) for t in empty["top_logprobs"]) == pytest.approx(1.0)


def test_top_alternatives_far_below_the_peak_are_still_ranked() -> None:
    """Fewer than ``top`` tokens near the most likely one: the rest still come, in order."""
    logits = np.zeros(1000, dtype=np.float32)
    logits[500], logits[900] = 60.0, -3.0
    tops = score(logits, 500, 4, lambda i: str(i).encode())["top_logprobs"]
    assert [t["token"] for t in tops] == ["500", "0", "1", "2"]
    assert tops[0]["logprob"] == pytest.approx(0.0, abs=1e-9) and tops[1]["logprob"] == pytest.approx(-60.0, abs=1e-3)


def test_entries_go_out_with_their_text_and_stop_tokens_are_dropped() -> None:
    text, queue = TextStream(["STOP"]), LogprobQueue(0)
    released: list[str] = []
    for piece in ("Hi", " S", "TO", "P", "more"):
        start = text.decoded
        text.push(piece.encode())
        queue.add(start, {"token": piece, "logprob": -1.0})
        released += [e["token"] for e in queue.release(text.emitted)]
        if text.stopped:
            queue.drop()
            break
    # " S" carried the space that went out before the stop; "TO" and "P" were the stop itself.
    assert released == ["Hi", " S"] and queue.rest() == []
    # A character split over two byte tokens: both entries go out with the character.
    text, queue = TextStream([]), LogprobQueue(0)
    for i, piece in enumerate((b"\xc3", b"\xa9")):
        start = text.decoded
        text.push(piece)
        queue.add(start, {"token": str(i), "logprob": -1.0})
        out = queue.release(text.emitted)
        assert [e["token"] for e in out] == ([] if i == 0 else ["0", "1"])


# -- a real runner ------------------------------------------------------------------------------------

@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def runner(tiny_chat_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RunnerProcess]:
    home = tmp_path_factory.mktemp("lp")
    spec = RunnerSpec(str(tiny_chat_gguf), ctx_size=CTX * 2, num_parallel=2, threads=1)
    proc = await RunnerProcess.start(spec, Config(home=home, models_dir=home / "models"))
    yield proc
    await proc.stop()


async def run(proc: RunnerProcess, prompt: str, options: dict[str, Any], **kw: Any
              ) -> tuple[str, list[dict[str, Any]], dict[str, Any]]:
    text, entries, final = "", [], {}
    async for ev in proc.completion(prompt, options, None, **kw):
        if ev.get("done"):
            final = ev
        else:
            text += ev["content"]
            entries += ev.get("logprobs", [])
            if "logprobs" not in kw:
                assert "logprobs" not in ev  # zero cost, and nothing sent, when not asked for
    return text, entries, final


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("options", [GREEDY, {**GREEDY, "repeat_penalty": 1.5, "repeat_last_n": 8},
                                     {**GREEDY, "repeat_penalty": 1.0}])
async def test_greedy_chosen_token_is_the_top_entry(runner: RunnerProcess, options: dict[str, Any]) -> None:
    text, entries, final = await run(runner, "The sky over the sea", options, logprobs=5)
    assert final["done_reason"] == "length" and len(entries) == final["eval_count"] == 12
    assert "".join(e["token"] for e in entries) == text  # no stop sequence: every token's text, in order
    for e in entries:
        assert e["logprob"] <= 0 and len(e["top_logprobs"]) == 5
        top = e["top_logprobs"][0]
        assert (top["token"], top["logprob"]) == (e["token"], e["logprob"])
        assert [t["logprob"] for t in e["top_logprobs"]] == sorted((t["logprob"] for t in e["top_logprobs"]),
                                                                  reverse=True)
        assert sum(math.exp(t["logprob"]) for t in e["top_logprobs"]) <= 1 + 1e-9
        if "\ufffd" not in e["token"]:
            assert e.get("bytes", []) == list(e["token"].encode())


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("options", [GREEDY, {"temperature": 0.9, "top_k": 20, "top_p": 0.9, "seed": 7,
                                              "num_predict": 16}])
async def test_asking_for_logprobs_changes_nothing_else(runner: RunnerProcess, options: dict[str, Any]) -> None:
    plain, _, f1 = await run(runner, "Once upon a time", options)
    scored, entries, f2 = await run(runner, "Once upon a time", options, logprobs=2)
    assert scored == plain and f1["tokens"] == f2["tokens"] and len(entries) == len(f2["tokens"])
    only, entries0, _ = await run(runner, "Once upon a time", options, logprobs=0)
    assert only == plain and all("top_logprobs" not in e for e in entries0)
    assert [e["logprob"] for e in entries0] == [e["logprob"] for e in entries]


@pytest.mark.asyncio(loop_scope="module")
async def test_a_stop_sequence_takes_its_tokens_entries_with_it(runner: RunnerProcess) -> None:
    full, entries, _ = await run(runner, "The sky over the sea", GREEDY, logprobs=0)
    stop = entries[4]["token"] + entries[5]["token"]  # a stop that starts on a token boundary
    assert stop.strip()
    cut = full.index(stop)
    text, cut_entries, final = await run(runner, "The sky over the sea", {**GREEDY, "stop": [stop]}, logprobs=0)
    assert final["done_reason"] == "stop" and final["stop_sequence"] == stop and text == full[:cut]
    # Exactly the tokens whose text starts before the stop keep their entries (as Ollama's runner).
    starts = [len("".join(e["token"] for e in entries[:i])) for i in range(len(entries))]
    assert cut_entries == [e for e, start in zip(entries, starts, strict=True) if start < cut]


@pytest.mark.asyncio(loop_scope="module")
async def test_shift_false_ends_with_length_at_a_full_context(runner: RunnerProcess) -> None:
    _, _, shifted = await run(runner, "Tell me a long story", {"temperature": 0, "num_predict": CTX + 40})
    assert shifted["eval_count"] == CTX + 40  # the context shifted and generation went on
    _, entries, final = await run(runner, "Tell me a long story", {"temperature": 0, "num_predict": CTX + 40},
                                  shift=False, logprobs=1)
    assert final["done_reason"] == "length"
    # Every cell of the slot is used, plus the last token sampled from the final cell's logits.
    assert final["prompt_eval_count"] + final["eval_count"] == CTX + 1
    assert final["tokens"] == shifted["tokens"][: final["eval_count"]] and len(entries) == final["eval_count"]


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize(("extra", "message"), [
    ({"logprobs": 21}, "logprobs must be"), ({"logprobs": -1}, "logprobs must be"),
    ({"logprobs": True}, "logprobs must be"), ({"logprobs": "3"}, "logprobs must be"),
    ({"shift": "no"}, "shift must be a boolean"),
])
async def test_bad_runner_bodies_are_400(runner: RunnerProcess, extra: dict[str, Any], message: str) -> None:
    body = {"prompt": "hi", "options": {"num_predict": 1}, **extra}
    async with runner._session.post("/completion", json=body) as resp:
        assert resp.status == 400
        assert message in (await resp.json())["error"]
    with pytest.raises(BadRequest):
        await run(runner, "hi", {"num_predict": 1}, logprobs=99)
