"""Runner processes as processes: load failures, cancellation, crashes, shutdown, no leftovers;
and embeddings from a BERT runner."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ollamalike.config import Config, FlashAttention
from ollamalike.errors import BadRequest, RunnerError
from ollamalike.runner.client import RunnerProcess, RunnerSpec


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return Config(home=tmp_path, models_dir=tmp_path / "models", load_timeout=60)


def gone(pid: int) -> bool:
    """True when the process no longer exists at all (exited AND reaped: no zombie)."""
    return not Path(f"/proc/{pid}").exists()


async def wait_for(predicate, timeout: float = 5.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return True
        await asyncio.sleep(0.02)
    return False


async def test_bad_model_file_gives_reason(config: Config, tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"NOTAGGUF" + bytes(100))
    with pytest.raises(RunnerError, match="invalid magic"):
        await RunnerProcess.start(RunnerSpec(str(bad)), config)
    with pytest.raises(RunnerError, match="not found"):
        await RunnerProcess.start(RunnerSpec(str(tmp_path / "missing.gguf")), config)
    with pytest.raises(RunnerError, match="invalid choice: 'q5_9'"):
        await RunnerProcess.start(RunnerSpec(str(bad), kv_cache_type="q5_9"), config)
    assert not list((config.run_dir).glob("*.sock"))


async def test_a_crash_while_loading_is_described_and_its_stderr_kept_from_the_client(
    config: Config, tmp_path: Path, tiny_chat_gguf: Path
) -> None:
    # A runner that aborts while loading (as llama.cpp does on a failed GGML_ASSERT) leaves a
    # debugger backtrace on stderr: the error says what happened, never that text.
    fake = tmp_path / "aborting-python"
    fake.write_text("#!/bin/sh\necho 'GGML_ASSERT(n_outputs_max <= cparams.n_outputs_max) failed' >&2\n"
                    "echo '360\t../csu/libc-start.c: No such file or directory.' >&2\nkill -ABRT $$\n")
    fake.chmod(0o755)
    crashing = dataclasses.replace(config, runner_python=str(fake))
    with pytest.raises(RunnerError) as err:
        await RunnerProcess.start(RunnerSpec(str(tiny_chat_gguf)), crashing)
    message = str(err.value)
    assert "model runner crashed while loading (signal SIGABRT)" in message
    assert "libc-start" not in message and "GGML_ASSERT" not in message
    # A spec llama.cpp would abort on is refused when it is made...
    with pytest.raises(RunnerError, match=r"num_batch \(1\) must be at least num_parallel \(4\)"):
        RunnerSpec(str(tiny_chat_gguf), num_batch=1, num_parallel=4)
    # ...and by the runner, whose own refusal is then the reason (the spec is checked on both sides).
    spec = RunnerSpec(str(tiny_chat_gguf), num_batch=4, num_parallel=4)
    object.__setattr__(spec, "num_batch", 1)
    with pytest.raises(RunnerError, match=r"num_batch \(1\) must be at least num_parallel \(4\)"):
        await RunnerProcess.start(spec, config)


async def test_truncated_model_file(config: Config, tmp_path: Path, tiny_chat_gguf: Path) -> None:
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(tiny_chat_gguf.read_bytes()[: tiny_chat_gguf.stat().st_size // 2])
    with pytest.raises(RunnerError, match="failed to load model"):
        await RunnerProcess.start(RunnerSpec(str(cut)), config)


async def test_a_gpu_split_loads_on_a_machine_without_gpus(config: Config, tiny_chat_gguf: Path) -> None:
    # What the scheduler passes for two GPUs; a CPU-only llama.cpp has no device to split over.
    spec = RunnerSpec(str(tiny_chat_gguf), ctx_size=256, threads=1, tensor_split=(0.6, 0.4))
    proc = await RunnerProcess.start(spec, config)
    try:
        chunks = [c async for c in proc.completion("the sky", {"num_predict": 3, "seed": 1})]
        assert chunks[-1]["done"] and chunks[-1]["eval_count"] == 3
    finally:
        await proc.stop()


async def test_cancel_frees_slot_and_kill_gives_error(config: Config, tiny_chat_gguf: Path) -> None:
    spec = RunnerSpec(str(tiny_chat_gguf), ctx_size=256, num_parallel=1, threads=1)
    proc = await RunnerProcess.start(spec, config)
    try:
        # Cancellation: a (practically) endless request is abandoned after two chunks.
        stream = proc.completion("the sky", {"num_predict": -1, "seed": 1})
        got = 0
        async for _ in stream:
            got += 1
            if got == 2:
                break
        await stream.aclose()

        async def idle() -> bool:
            return (await proc.get_health())["slots_busy"] == 0

        assert await wait_for(idle, 2.0), "the cancelled sequence still holds the slot"
        chunks = [c async for c in proc.completion("next one", {"num_predict": 3})]
        assert chunks[-1]["done"] and chunks[-1]["eval_count"] == 3

        # A runner killed mid-stream: the iterator raises RunnerError, and the process is reaped.
        with pytest.raises(RunnerError, match="exited unexpectedly.*SIGKILL"):
            async for _ in proc.completion("the moon", {"num_predict": -1, "seed": 2}):
                os.kill(proc.pid, signal.SIGKILL)
        assert not proc.alive
    finally:
        await proc.stop()
    assert gone(proc.pid)
    # A new runner for the same model works.
    proc2 = await RunnerProcess.start(spec, config)
    try:
        chunks = [c async for c in proc2.completion("again", {"num_predict": 2})]
        assert chunks[-1]["eval_count"] == 2
    finally:
        await proc2.stop()
    assert gone(proc2.pid)
    assert not list(config.run_dir.glob("*.sock"))


async def test_sigterm_and_parent_death_end_the_runner(config: Config, tiny_chat_gguf: Path,
                                                        tmp_path: Path) -> None:
    proc = await RunnerProcess.start(RunnerSpec(str(tiny_chat_gguf), threads=1), config)
    os.kill(proc.pid, signal.SIGTERM)
    await asyncio.wait_for(proc._proc.wait(), 10)
    assert proc._proc.returncode == 0
    await proc.stop()
    assert gone(proc.pid)

    # The runner's parent dies (SIGKILL, no cleanup): the runner notices and exits by itself.
    sock = tmp_path / "orphan.sock"
    script = (
        "import subprocess, sys, time\n"
        f"p = subprocess.Popen([sys.executable, '-m', 'ollamalike.runner', *{RunnerSpec(str(tiny_chat_gguf), threads=1).argv(str(sock))!r}],"
        f" stdin=subprocess.PIPE)\n"
        "print(p.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    child_pid = int(parent.stdout.readline())
    deadline = time.monotonic() + 30
    while not sock.exists() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert sock.exists(), "the orphan-to-be never started serving"
    parent.kill()
    parent.wait()

    async def child_gone() -> bool:
        try:
            with open(f"/proc/{child_pid}/stat") as f:
                return f.read().split(")")[1].split()[0] == "Z"  # exited; init reaps it
        except FileNotFoundError:
            return True

    assert await wait_for(child_gone, 15.0), "orphaned runner kept running"


async def test_embeddings(config: Config, tiny_embed_gguf: Path) -> None:
    spec = RunnerSpec(str(tiny_embed_gguf), ctx_size=256, num_parallel=2, embedding=True, threads=1)
    proc = await RunnerProcess.start(spec, config)
    try:
        texts = ["hello world", "the dog is red", "a", "why is the sky blue"]
        vectors, count = await proc.embed(texts)
        assert len(vectors) == 4 and all(len(v) == 64 for v in vectors)
        for v in vectors:
            assert math.isclose(math.sqrt(sum(x * x for x in v)), 1.0, rel_tol=1e-5)
        assert count == sum([len(await proc.tokenize(t)) for t in texts])
        # The same text alone or in another batch gives the same vector.
        alone, _ = await proc.embed(["the dog is red"])
        assert all(math.isclose(a, b, abs_tol=1e-5) for a, b in zip(alone[0], vectors[1], strict=True))
        assert vectors[0] != vectors[1]
        # Too long: truncated to the per-slot context, or refused when truncate is false.
        long_text = "the dog " * 300
        truncated, n = await proc.embed([long_text])
        assert n == 128 and len(truncated[0]) == 64
        with pytest.raises(BadRequest, match="exceeds maximum context length"):
            await proc.embed([long_text], truncate=False)
        with pytest.raises(BadRequest, match="embeddings only"):
            [c async for c in proc.completion("hi", {})]
        empty, n0 = await proc.embed([])
        assert empty == [] and n0 == 0
    finally:
        await proc.stop()
    assert gone(proc.pid)


def test_runner_cli_rejects_bad_arguments(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "ollamalike.runner", "--spec", RunnerSpec("x").to_json()],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--spec and --socket are required" in r.stderr
    r = subprocess.run([sys.executable, "-m", "ollamalike.runner", "--spec", '{"model_path": "x", "num_parallel": 0}',
                        "--socket", str(tmp_path / "s")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "num_parallel must be at least 1" in r.stderr


def test_runner_info() -> None:
    import json

    r = subprocess.run([sys.executable, "-m", "ollamalike.runner", "--info"], capture_output=True, text=True,
                       timeout=60)
    info = json.loads(r.stdout)
    assert info["backend"] in ("cpu", "cuda", "metal", "rocm", "vulkan", "sycl")
    assert "system_info" in info and isinstance(info["gpu_offload"], bool)


def test_client_module_does_not_import_llama_cpp() -> None:
    code = "import sys, ollamalike.runner.client; print('llama_cpp' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.stdout.strip() == "False"


@pytest.mark.parametrize(("kv", "flash"), [("q8_0", "on"), ("q4_0", "on"), ("q8_0", "auto")])
async def test_quantized_kv_cache_with_flash_attention(config: Config, tmp_path: Path, kv: str,
                                                       flash: FlashAttention) -> None:
    # "auto" (the default) keeps the quantized cache: llama.cpp turns flash attention on for it.
    from ollamalike.testmodels import write_tiny_llama

    model = write_tiny_llama(tmp_path / "hd32.gguf", quant="Q4_0", n_head=2, n_head_kv=1)  # head size 32
    spec = RunnerSpec(str(model), ctx_size=512, num_parallel=2, threads=1, flash_attn=flash,
                      kv_cache_type=kv, use_mmap=False)
    proc = await RunnerProcess.start(spec, config)
    try:
        results = await asyncio.gather(*(
            _final(proc, f"kv {kv} request {i}", {"temperature": 0, "num_predict": 6}) for i in range(3)
        ))
        assert [r["eval_count"] for r in results] == [6, 6, 6]
        assert not any("using f16" in line for line in proc.stderr_tail)
    finally:
        await proc.stop()


async def test_quantized_kv_cache_falls_back_to_f16(config: Config, tiny_chat_gguf: Path) -> None:
    # Head size 16 cannot use 32-wide q8_0 blocks: the runner keeps an f16 cache instead of failing.
    spec = RunnerSpec(str(tiny_chat_gguf), ctx_size=256, threads=1, flash_attn="on", kv_cache_type="q8_0")
    proc = await RunnerProcess.start(spec, config)
    try:
        assert (await _final(proc, "fallback", {"num_predict": 3}))["eval_count"] == 3
        assert any("using f16" in line for line in proc.stderr_tail)
    finally:
        await proc.stop()


async def test_quantized_kv_cache_without_flash_attention_is_f16(config: Config, tmp_path: Path) -> None:
    from ollamalike.testmodels import write_tiny_llama

    model = write_tiny_llama(tmp_path / "hd32.gguf", quant="Q4_0", n_head=2, n_head_kv=1)
    spec = RunnerSpec(str(model), ctx_size=256, threads=1, flash_attn="off", kv_cache_type="q8_0", use_mmap=False)
    proc = await RunnerProcess.start(spec, config)
    try:
        assert (await _final(proc, "no flash", {"num_predict": 3}))["eval_count"] == 3
        assert any("flash attention is off" in line for line in proc.stderr_tail)
    finally:
        await proc.stop()


async def _final(proc: RunnerProcess, prompt: str, options: dict[str, object]) -> dict[str, object]:
    chunks = [c async for c in proc.completion(prompt, dict(options))]
    assert chunks[-1]["done"] is True
    return chunks[-1]


async def test_lora_adapter_changes_output(config: Config, tmp_path: Path, tiny_chat_gguf: Path) -> None:
    from ollamalike.testmodels import write_tiny_lora

    lora = write_tiny_lora(tmp_path / "lora.gguf")
    greedy = {"temperature": 0, "num_predict": 8}
    base = await RunnerProcess.start(RunnerSpec(str(tiny_chat_gguf), threads=1), config)
    try:
        base_tokens = (await _final(base, "Hello world", greedy))["tokens"]
    finally:
        await base.stop()
    adapted = await RunnerProcess.start(RunnerSpec(str(tiny_chat_gguf), threads=1, adapters=[str(lora)]), config)
    try:
        assert (await _final(adapted, "Hello world", greedy))["tokens"] != base_tokens
    finally:
        await adapted.stop()
    bad = tmp_path / "bad-lora.gguf"
    bad.write_bytes(b"GGUF" + bytes(64))
    with pytest.raises(RunnerError, match="failed to load model"):
        await RunnerProcess.start(RunnerSpec(str(tiny_chat_gguf), threads=1, adapters=[str(bad)]), config)

