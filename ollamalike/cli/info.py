"""``ollamalike info``: this machine's CPU, memory, GPUs and the llama.cpp backend compiled in.

Runs locally without the daemon (it reads the machine, not the store). The backend comes from
``python -m ollamalike.runner.info`` in a subprocess, so this command never imports llama_cpp.
"""

from __future__ import annotations

import dataclasses
import json

import click

from ollamalike import hardware
from ollamalike.config import load_config
from ollamalike.hardware.discovery import GIB
from ollamalike.hardware.planner import default_num_ctx


def _gib(n: int) -> str:
    return f"{n / GIB:.1f} GiB"


def info_text(system: hardware.SystemInfo, context_length: int = 0) -> str:
    cpu = system.cpu
    lines = [f"CPU:      {cpu.name or cpu.arch} ({cpu.arch}), {cpu.physical_cores} cores, {cpu.threads} threads"]
    if cpu.flags:
        lines.append(f"          features: {' '.join(cpu.flags)}")
    lines.append(f"Memory:   {_gib(cpu.total_memory)} total, {_gib(cpu.free_memory)} available"
                 + (f", {_gib(cpu.free_swap)} swap free" if cpu.free_swap else ""))
    if not system.gpus:
        lines.append("GPUs:     none found")
    for i, gpu in enumerate(system.gpus):
        extra = "".join((f", driver {gpu.driver}" if gpu.driver else "", f", compute {gpu.compute}" if gpu.compute else ""))
        lines.append(f"{'GPUs:' if i == 0 else '':<10}{gpu.library}:{gpu.index} {gpu.name}: {_gib(gpu.total)} total, "
                     f"{_gib(gpu.free)} free (id {gpu.id}{extra})")
    backend = system.backend
    if backend is None:
        lines.append("Backend:  unknown (python -m ollamalike.runner.info failed; is llama-cpp-python installed?)")
    else:
        lines.append(f"Backend:  llama.cpp {backend.get('backend', '?')} (llama-cpp-python {backend.get('llama_cpp_python', '?')}, "
                     f"GPU offload: {'yes' if system.gpu_offload else 'no'})")
        if backend.get("system_info"):
            lines.append(f"          {backend['system_info']}")
    if context_length:
        lines.append(f"Context:  {context_length} tokens (OLLAMALIKE_CONTEXT_LENGTH)")
    else:
        vram = sum(g.total for g in system.usable_gpus)
        basis = f"{_gib(vram)} of usable VRAM" if vram else "no usable VRAM"
        lines.append(f"Context:  {default_num_ctx(system)} tokens by default ({basis})")
    mismatch = hardware.build_mismatch(system)
    if mismatch:
        lines.append(f"Warning:  {mismatch}")
    return "\n".join(lines)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
def info(as_json: bool) -> None:
    """Show this machine's CPU, memory, GPUs and the llama.cpp backend."""
    config = load_config()
    system = hardware.discover(config)
    if as_json:
        data = {
            "cpu": dataclasses.asdict(system.cpu),
            "gpus": [dataclasses.asdict(g) for g in system.gpus],
            "backend": system.backend,
            "default_context_length": config.context_length or default_num_ctx(system),
            "mismatch": hardware.build_mismatch(system),
        }
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(info_text(system, config.context_length))
