"""The memory planner, table-driven: model size, context and free memory -> layers, processor, errors.

The synthetic model has round numbers so each row can be checked by hand: 10 layers of 100 MiB
weights, 16 MiB of f16 KV cache per layer at 4096 tokens (8 KV heads of 128 dims), a 100 MiB output
layer, 200 MiB of other non-layer tensors and an 80 MiB compute graph; 1540 MiB in all.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from ollamalike.config import Config, load_config
from ollamalike.errors import BadRequest
from ollamalike.gguf_info import GGUFInfo, read_gguf_info
from ollamalike.hardware import SystemInfo
from ollamalike.hardware.cpu import CPU
from ollamalike.hardware.discovery import GIB, GPU, MIB
from ollamalike.hardware.planner import (
    InsufficientMemory,
    choose_num_ctx,
    default_num_ctx,
    estimate,
    plan_load,
    processor_text,
)
from tests.fakes import gguf_info, resolved_model

CUDA = {"backend": "cuda", "gpu_offload": True}
CPU_ONLY = {"backend": "cpu", "gpu_offload": False}
RESERVE = 457  # MiB kept free per CUDA GPU
GRAPH = 4 * 512 * (1 + 4 * 1024 + 4096 * 9)  # bytes, at 4096 tokens


def model(ctx: int = 8192, heads_kv: int = 8, layers: int = 10) -> GGUFInfo:
    return gguf_info(
        architecture="llama", context_length=ctx, embedding_length=1024, block_count=layers, head_count=8,
        head_count_kv=heads_kv, layer_bytes=[100 * MIB] * layers, non_layer_bytes=300 * MIB, output_bytes=100 * MIB,
        model_info={"llama.vocab_size": 32000}, file_size=0,
    )


def system(free_gib: list[float] | None = None, ram_gib: float = 64, backend: dict[str, Any] | None = CUDA,
           swap_gib: float = 0, total_gib: list[float] | None = None) -> SystemInfo:
    free = free_gib or []
    totals = total_gib or [max(f, 8) for f in free]
    gpus = tuple(GPU("cuda", i, f"GPU-{i}", f"gpu{i}", int(t * GIB), int(f * GIB)) for i, (f, t) in enumerate(zip(free, totals, strict=True)))
    cpu = CPU("test cpu", "x86_64", 8, 16, (), 128 * GIB, int(ram_gib * GIB), int(swap_gib * GIB))
    return SystemInfo(cpu, gpus, backend)


def config(**overrides: Any) -> Config:
    return dataclasses.replace(load_config({}), **{"num_parallel": 1, **overrides})


def mib(n: float) -> float:
    return n * MIB / GIB


def test_estimate_by_hand() -> None:
    est = estimate(model(), 4096)
    assert est.layers == (116 * MIB,) * 10  # 100 MiB weights + 4096 x (128 + 128) x 8 heads x 2 bytes
    assert est.kv == 160 * MIB and est.output == 100 * MIB and est.non_layer == 200 * MIB
    assert est.graph == GRAPH
    assert est.total == 1460 * MIB + GRAPH


@pytest.mark.parametrize("cache, per_layer", [("f16", 16 * MIB), ("q8_0", 16 * MIB * 34 // 64), ("q4_0", 16 * MIB * 18 // 64),
                                              ("f32", 32 * MIB)])
def test_kv_cache_types(cache: str, per_layer: int) -> None:
    assert estimate(model(), 4096, cache).kv == 10 * per_layer


def test_kv_grows_with_context_and_shrinks_with_gqa() -> None:
    assert estimate(model(), 8192).kv == 2 * estimate(model(), 4096).kv
    assert estimate(model(heads_kv=2), 4096).kv == estimate(model(), 4096).kv // 4


# free VRAM per GPU (GiB), options -> gpu_layers, processor
FULL = "100% GPU"
PLAN_TABLE = [
    ([4.0], {}, 11, FULL),  # everything fits: all 10 layers and the output layer
    ([mib(RESERVE + 81 + 5 * 116 + 50)], {}, 5, "57%/43% CPU/GPU"),  # room for 5 layers after reserve + graph
    ([mib(RESERVE + 81 + 116)], {}, 1, "87%/13% CPU/GPU"),
    ([0.5], {}, 0, "100% CPU"),  # less than the reserve
    ([], {}, 0, "100% CPU"),  # no GPU
    ([4.0], {"num_gpu": 0}, 0, "100% CPU"),  # CPU only on request
    ([4.0], {"num_gpu": 3}, 3, "72%/28% CPU/GPU"),  # forced layer count
    ([4.0], {"num_gpu": 99}, 11, FULL),  # more than the model has: all
    ([0.5], {"num_gpu": 4}, 4, "65%/35% CPU/GPU"),  # forced even where auto would not offload (as Ollama)
    ([4.0], {"num_gpu": -1}, 11, FULL),  # -1 is auto
]


@pytest.mark.parametrize("free, options, layers, processor", PLAN_TABLE)
def test_plan_table(free: list[float], options: dict[str, Any], layers: int, processor: str) -> None:
    plan = plan_load(model(), {"num_ctx": 4096, **options}, system(free), config())
    assert (plan.gpu_layers, plan.processor) == (layers, processor)
    assert plan.num_ctx == 4096 and 0 <= plan.size_vram <= plan.size
    assert processor_text(plan.size, plan.size_vram) == plan.processor


def test_cpu_only_build_ignores_gpus() -> None:
    plan = plan_load(model(), {"num_ctx": 4096}, system([24.0], backend=CPU_ONLY), config())
    assert (plan.gpu_layers, plan.size_vram, plan.processor) == (0, 0, "100% CPU")
    assert plan_load(model(), {"num_ctx": 4096}, system([24.0], backend=None), config()).processor == "100% CPU"


def test_gpu_overhead_is_reserved() -> None:
    free = [mib(RESERVE + 81 + 5 * 116 + 50)]
    assert plan_load(model(), {"num_ctx": 4096}, system(free), config()).gpu_layers == 5
    tighter = config(gpu_overhead_bytes=250 * MIB)  # OLLAMALIKE_GPU_OVERHEAD
    assert plan_load(model(), {"num_ctx": 4096}, system(free), tighter).gpu_layers == 3


def test_layers_spread_over_two_gpus_by_free_memory() -> None:
    # Neither GPU holds the model alone; together they hold 9 of 10 layers.
    free = [mib(RESERVE + 81 + 5 * 116 + 20), mib(RESERVE + 81 + 4 * 116 + 20)]
    plan = plan_load(model(), {"num_ctx": 4096}, system(free), config())
    assert plan.gpu_layers == 9
    assert plan.tensor_split == pytest.approx((5 / 9, 4 / 9))
    assert plan.size_vram == 9 * 116 * MIB + 2 * GRAPH  # each GPU holds a compute graph


def test_one_gpu_enough_uses_one() -> None:
    plan = plan_load(model(), {"num_ctx": 4096}, system([40.0, 20.0]), config())
    assert plan.gpu_layers == 11 and plan.tensor_split == () and plan.processor == FULL


def test_forced_layers_split_in_proportion_to_free_memory() -> None:
    plan = plan_load(model(), {"num_ctx": 4096, "num_gpu": 6}, system([3.0, 1.0]), config())
    assert plan.gpu_layers == 6 and plan.tensor_split == pytest.approx((4 / 6, 2 / 6))


# errors: free RAM (GiB), swap, free VRAM -> message
def test_too_big_for_ram_names_sizes() -> None:
    with pytest.raises(InsufficientMemory) as e:
        plan_load(model(), {"num_ctx": 4096}, system([], ram_gib=1.0, backend=CPU_ONLY), config())
    assert e.value.status == 500
    assert e.value.message == "model requires more system memory (1.5 GiB) than is available (1.0 GiB)"


def test_swap_counts_and_gpu_takes_the_load() -> None:
    plan_load(model(), {"num_ctx": 4096}, system([], ram_gib=1.0, swap_gib=1.0, backend=CPU_ONLY), config())
    plan = plan_load(model(), {"num_ctx": 4096}, system([4.0], ram_gib=0.1), config())  # all of it on the GPU
    assert plan.processor == FULL


def test_too_big_for_ram_and_vram() -> None:
    with pytest.raises(InsufficientMemory, match=r"model requires more system memory \(0.9 GiB\) than is available "
                                                 r"\(0.5 GiB\); the model needs 1.5 GiB in all and the GPUs have 1.1 GiB free"):
        plan_load(model(), {"num_ctx": 4096}, system([mib(RESERVE + 81 + 5 * 116 + 50)], ram_gib=0.5), config())


def test_longer_context_needs_more_and_offloads_less() -> None:
    free = [mib(RESERVE + 81 + 5 * 116 + 50)]
    short = plan_load(model(), {"num_ctx": 1024}, system(free), config())
    long = plan_load(model(), {"num_ctx": 8192}, system(free), config())
    assert long.size > short.size and long.gpu_layers < short.gpu_layers


def test_parallel_slots_multiply_the_kv_cache() -> None:
    one = plan_load(model(), {"num_ctx": 2048}, system(), config())
    four = plan_load(model(), {"num_ctx": 2048}, system(), config(num_parallel=4))
    assert four.num_ctx == one.num_ctx == 2048
    assert four.size - one.size >= 3 * estimate(model(), 2048).kv


@pytest.mark.parametrize("vram_gib, expected", [([], 4096), ([8.0], 4096), ([22.9], 4096), ([24.0], 32768),
                                                ([12.0, 12.0], 32768), ([40.0], 32768), ([48.0], 262144), ([80.0], 262144)])
def test_default_context_follows_vram(vram_gib: list[float], expected: int) -> None:
    assert default_num_ctx(system(vram_gib, total_gib=vram_gib)) == expected


def test_default_context_ignores_gpus_the_build_cannot_use() -> None:
    assert default_num_ctx(system([80.0], total_gib=[80.0], backend=CPU_ONLY)) == 4096


@pytest.mark.parametrize("options, context_length, train, vram, expected", [
    ({}, 0, 131072, [], 4096),
    ({}, 0, 131072, [80.0], 131072),  # 262144 by VRAM, capped at the training context
    ({}, 0, 2048, [], 2048),
    ({}, 0, 0, [], 4096),  # unknown training context: no cap
    ({}, 8192, 131072, [], 8192),  # OLLAMALIKE_CONTEXT_LENGTH
    ({"num_ctx": 1024}, 8192, 131072, [80.0], 1024),  # the option wins
    ({"num_ctx": 100_000}, 0, 32768, [], 32768),
    ({"num_ctx": 1}, 0, 32768, [], 8),  # a minimum that still works
])
def test_num_ctx_rules(options: dict[str, Any], context_length: int, train: int, vram: list[float], expected: int) -> None:
    got = choose_num_ctx(model(ctx=train), options, config(context_length=context_length), system(vram, total_gib=vram))
    assert got == expected


def test_negative_num_ctx_is_bad_request() -> None:
    with pytest.raises(BadRequest, match="num_ctx"):
        plan_load(model(), {"num_ctx": -5}, system(), config())


def test_real_tiny_gguf_plans_100_percent_cpu(tiny_chat_q4_gguf: Path) -> None:
    info = read_gguf_info(tiny_chat_q4_gguf)
    plan = plan_load(info, {}, system([], backend=CPU_ONLY), config())
    assert plan.processor == "100% CPU" and plan.gpu_layers == 0 and plan.size_vram == 0
    assert plan.num_ctx == min(4096, info.context_length or 4096)
    assert plan.size > info.tensor_bytes  # weights plus KV cache and graph
    on_gpu = plan_load(info, {}, system([8.0]), config())
    assert on_gpu.processor == "100% GPU" and on_gpu.gpu_layers == (info.block_count or 0) + 1


def test_the_split_reaches_the_runner_command_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """layout_load's GPU split and the main_gpu option travel to the runner's arguments."""
    from ollamalike.runner.client import RunnerSpec
    from ollamalike.scheduler import plan as sched_plan

    free = [mib(RESERVE + 81 + 5 * 116 + 20), mib(RESERVE + 81 + 4 * 116 + 20)]
    monkeypatch.setattr(sched_plan.hardware, "system", lambda config, refresh=False: system(free))
    loaded = resolved_model(name="two-gpus:latest", model_path=Path("/models/m.gguf"), info=gguf_info(**vars(model())))
    requested = sched_plan.plan_load(loaded, {"num_ctx": 4096, "main_gpu": 1}, config())
    assert requested.spec.tensor_split == () and requested.spec.main_gpu == 1
    laid = sched_plan.layout_load(requested, loaded, config())
    assert laid.spec.gpu_layers == 9 and laid.spec.tensor_split == pytest.approx((5 / 9, 4 / 9))
    argv = laid.spec.argv("/tmp/r.sock")
    sent = RunnerSpec.from_json(argv[argv.index("--spec") + 1])
    assert sent.tensor_split == pytest.approx((5 / 9, 4 / 9))
    assert sent.main_gpu == 1
    monkeypatch.setattr(sched_plan.hardware, "system", lambda config, refresh=False: system([40.0]))
    alone = sched_plan.layout_load(requested, loaded, config())
    argv = alone.spec.argv("/tmp/r.sock")
    assert alone.spec.tensor_split == () and RunnerSpec.from_json(argv[argv.index("--spec") + 1]).tensor_split == ()


# -- a projector (mmproj) beside the model -----------------------------------------------------------
def test_projector_takes_its_gpu_room_before_the_layers() -> None:
    from ollamalike.hardware.planner import Projector

    free = [mib(RESERVE + 81 + 5 * 116 + 50)]
    without = plan_load(model(), {"num_ctx": 4096}, system(free), config())
    proj = Projector(weights=150 * MIB, graph=50 * MIB)
    with_proj = plan_load(model(), {"num_ctx": 4096}, system(free), config(), projector=proj)
    # 5 * 116 + 50 MiB of room less the projector's 200 MiB: 3 layers of 116 MiB.
    assert (without.gpu_layers, with_proj.gpu_layers) == (5, 3)
    assert with_proj.size == without.size + 200 * MIB
    assert with_proj.size_vram == 3 * 116 * MIB + GRAPH + 200 * MIB  # the projector is on the GPU too


def test_a_projector_too_big_for_the_gpu_keeps_the_model_on_the_cpu() -> None:
    from ollamalike.hardware.planner import Projector

    free = [mib(RESERVE + 81 + 5 * 116 + 50)]
    plan = plan_load(model(), {"num_ctx": 4096}, system(free), config(), projector=Projector(700 * MIB, 0))
    assert (plan.gpu_layers, plan.size_vram, plan.processor) == (0, 0, "100% CPU")
    assert plan.size == plan_load(model(), {"num_ctx": 4096}, system([]), config()).size + 700 * MIB


def test_a_projector_that_does_not_fit_in_ram_is_refused() -> None:
    from ollamalike.hardware.planner import Projector

    cpu_only = system([], ram_gib=1.6, backend=CPU_ONLY)
    plan_load(model(), {"num_ctx": 4096}, cpu_only, config())  # the model alone fits (1.5 GiB)
    with pytest.raises(InsufficientMemory, match=r"requires more system memory \(1.7 GiB\) than is available \(1.6 GiB\)"):
        plan_load(model(), {"num_ctx": 4096}, cpu_only, config(), projector=Projector(200 * MIB, 0))


def test_projector_graph_estimate() -> None:
    from ollamalike.hardware.planner import projector_estimate

    # A gemma3-sized SigLIP (896 px, 14 px patches): its attention scores dominate, about 1 GiB as llama.cpp reports.
    gemma = {"clip.vision.image_size": 896, "clip.vision.patch_size": 14, "clip.vision.embedding_length": 1152,
             "clip.vision.attention.head_count": 16, "clip.vision.feed_forward_length": 4304}
    est = projector_estimate(gemma, 800 * MIB)
    assert est.weights == 800 * MIB and 0.9 * GIB < est.graph < 1.4 * GIB
    assert projector_estimate({}, 10).graph == 0  # nothing known: weights only
    audio = {"clip.audio.num_mel_bins": 128, "clip.audio.embedding_length": 1280,
             "clip.audio.attention.head_count": 20, "clip.audio.feed_forward_length": 5120}
    assert 0.1 * GIB < projector_estimate(audio, 0).graph < 0.5 * GIB


def test_layout_counts_the_real_projector_and_refuses_what_does_not_fit(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The scheduler reads the projector's GGUF (the tiny CLIP): its file and its encoder's graph are in the
    load's size, and a machine with room for the model but not the projector refuses the load."""
    from ollamalike.hardware.planner import projector_estimate
    from ollamalike.scheduler import plan as sched_plan
    from ollamalike.testmodels_mm import write_tiny_projector

    proj = write_tiny_projector(tmp_path / "mmproj.gguf")
    memory = sched_plan.projector_memory(resolved_model(projectors=[proj]))
    # 32 px images in 8 px patches: 16 patches and a class token, 32 wide, 2 heads, 64 feed-forward.
    assert memory.weights == proj.stat().st_size
    assert memory.graph == 4 * (3 * 32 * 32 + 17 * (4 * 32 + 64) + 17 * 17 * 2)
    assert memory == projector_estimate(read_gguf_info(proj).model_info, proj.stat().st_size)
    # The estimates against what mtmd reserves for the tiny projectors (its "compute buffer size" log line,
    # llama.cpp of llama-cpp-python 0.3.36): 0.02 MiB for the CLIP above, 0.08 MiB for the Gemma 3 one, and
    # 279 MiB for the Qwen2-VL one, sized by its warmup image of 46 x 46 merged tokens, not its image_size.
    from ollamalike.testmodels_mm import write_tiny_qwen2vl_projector

    g3 = write_tiny_projector(tmp_path / "g3.gguf", projector_type="gemma3", patch_size=4)
    qwen = write_tiny_qwen2vl_projector(tmp_path / "qwen.gguf")
    for path, reserved in ((proj, 0.02 * MIB), (g3, 0.08 * MIB), (qwen, 279 * MIB)):
        graph = projector_estimate(read_gguf_info(path).model_info, 0).graph
        assert reserved <= graph <= 1.4 * reserved, (path.name, graph / MIB)

    info = gguf_info(**vars(model()))
    plain = resolved_model(name="plain:latest", model_path=Path("/models/m.gguf"), info=info)
    vis = resolved_model(name="vis:latest", model_path=Path("/models/m.gguf"), info=info, projectors=[proj])
    monkeypatch.setattr(sched_plan.hardware, "system", lambda config, refresh=False: system([], backend=CPU_ONLY))
    alone = sched_plan.layout_load(sched_plan.plan_load(plain, {"num_ctx": 4096}, config()), plain, config())
    both = sched_plan.layout_load(sched_plan.plan_load(vis, {"num_ctx": 4096}, config()), vis, config())
    assert both.size == alone.size + memory.total
    tight = system([], ram_gib=(alone.size + memory.total // 2) / GIB, backend=CPU_ONLY)
    monkeypatch.setattr(sched_plan.hardware, "system", lambda config, refresh=False: tight)
    sched_plan.layout_load(sched_plan.plan_load(plain, {"num_ctx": 4096}, config()), plain, config())
    with pytest.raises(InsufficientMemory):
        sched_plan.layout_load(sched_plan.plan_load(vis, {"num_ctx": 4096}, config()), vis, config())
