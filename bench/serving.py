"""Serving benchmark: our daemon vs llama-cpp-python's own server, llama.cpp's llama-server and raw ``Llama``.

Run: ``.venv/bin/python bench/serving.py [--quick] [--model PATH|starter|qwen|gemma|bench] [--with-llama-server]
[--workloads main,cold,edit,returning|all] [--profile]`` (needs the ``bench`` extra for llama_cpp.server). The
model defaults to the real Qwen2.5-Coder 0.5B when it is fetched (docs/models.md), else the ~100M-parameter
random Q4_0 llama under bench/out/. The same threads and per-request context for all; the contenders are
described in bench/serving_contenders.py, llama-server and llama-bench are built by bench/llamacpp_build.py.
Workloads:
  main       single stream (time to first token, client-side decode tokens/s; llama-bench pp/tg beside it);
             1/4/8 concurrent clients (aggregate tokens/s, median latency and TTFT); peak RSS;
  cold       model not loaded -> first token, and where our time goes (bench/serving_cold.py);
  edit       edit-this-code, single-stream decode (bench/serving_workloads.py);
  returning  a 2k-token conversation returning after its slot was taken (bench/serving_workloads.py).
Greedy sampling, a fixed token budget per request, token counts checked from the servers' own answers.
Contenders take turns in a rotating order in every repetition, each measurement waits for a quiet machine
(``--quiet-wait``), and the tables are medians; with llama-server, a targets table gives issue 20's ratios
as medians of per-repetition ratios. Writes bench/out/serving.png. Traffic goes to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any

import aiohttp
from common import (  # type: ignore[import-not-found]
    MODEL_CHOICES,
    OUT,
    Quiet,
    describe_model,
    memory_mib,
    reset_peak_rss,
    resolve_model,
    run_concurrent,
    stop_process,
    wait_http,
)
from serving_contenders import (  # type: ignore[import-not-found]
    KINDS,
    Raw,
    Runner,
    chat_kinds,
    chat_runners,
    create_model,
    good_prompts,
    prompt,
    runners,
    start_llama_cpp_server,
    start_llama_server,
)
from serving_report import Concurrent, Results, Targets, main_targets, plot, report  # type: ignore[import-not-found]

from tests.daemon import Daemon, free_port, runner_descendants, start_daemon

WORKLOADS = ("main", "cold", "edit", "returning")


def daemon_env(args: argparse.Namespace, parallel: int) -> dict[str, str]:
    return {"OLLAMALIKE_NUM_PARALLEL": str(parallel), "OLLAMALIKE_NUM_THREADS": str(args.threads),
            "OLLAMALIKE_KEEP_ALIVE": "-1", "OLLAMALIKE_MAX_LOADED_MODELS": "1"}


async def measure(run: dict[tuple[str, str], Runner], prompts: list[str], args: argparse.Namespace, quiet: Quiet,
                  bench: Any) -> tuple[Results, Concurrent, dict[str, list[float]]]:
    n = args.tokens
    texts = iter(prompts)  # every request gets its own prompt, shared by the contenders compared
    for key in run:  # warm-up: loads our model, fills caches and thread pools everywhere
        if key[0] in args.kinds:
            await run[key](prompt(f"warm {key[0]} {key[1]}"), n)
    whos = list(dict.fromkeys(who for _kind, who in run))
    servers = [w for w in whos if w != "raw"]
    single: Results = {key: [] for key in run if key[0] in args.kinds}
    rates: dict[str, list[float]] = {}
    for rep in range(args.reps):
        shift = rep % (len(whos) + (bench is not None))
        order = [*whos, "bench"] if bench is not None else whos
        for kind in args.kinds:
            text = next(texts)
            for who in order[shift:] + order[:shift]:
                quiet.wait()
                if who == "bench":
                    if kind == args.kinds[0]:  # one llama-bench run (pp and tg) per repetition
                        for name, rate in (await asyncio.to_thread(bench)).items():
                            rates.setdefault(name, []).append(rate)
                    continue
                single[(kind, who)].append(await run[(kind, who)](text, n))
        print(f"  single stream: repetition {rep + 1}/{args.reps} done", file=sys.stderr)
    conc: Concurrent = {}
    for rep in range(args.reps):
        for i, clients in enumerate(args.clients):
            for kind in args.kinds:
                shift = (rep + i) % len(servers)
                batch = [next(texts) for _ in range(clients)]
                for who in servers[shift:] + servers[:shift]:
                    jobs = [lambda t=t, f=run[(kind, who)]: f(t, n) for t in batch]  # type: ignore[misc]
                    quiet.wait()
                    conc.setdefault((kind, who, clients), []).append(await run_concurrent(jobs))
        print(f"  concurrency: repetition {rep + 1}/{args.reps} done", file=sys.stderr)
    return single, conc, rates


async def profile(run: dict[tuple[str, str], Runner], daemon: Daemon, args: argparse.Namespace) -> str:
    """One extra batch of the highest concurrency, not counted above, with py-spy on our runner."""
    from serving_profile import Profile, analyse, find_py_spy  # type: ignore[import-not-found]

    py_spy = find_py_spy(args.py_spy)
    if py_spy is None:
        return ("profile skipped: py-spy not found (install the bench extra: .venv/bin/pip install -e '.[bench]', "
                "or give --py-spy PATH)")
    kids = runner_descendants(daemon.proc.pid)
    if len(kids) != 1:
        return f"profile skipped: expected one runner process under the daemon, found {kids}"
    clients = max(args.clients)
    OUT.mkdir(parents=True, exist_ok=True)
    rec = Profile(py_spy, kids[0], OUT / "serving-profile.txt")
    try:
        await asyncio.sleep(1.0)  # py-spy attaches (and reads the runner's symbols) before the batch starts
        jobs = [lambda i=i: run[("completion", "ours")](prompt(f"profile {i}"), args.tokens) for i in range(clients)]
        await run_concurrent(jobs)
    finally:
        raw = rec.stop()
    if raw is None:
        return f"profile failed: py-spy wrote nothing; its output: {rec.log.read_text(errors='replace')[-600:]}"
    return (f"### profile: py-spy --native on our runner (pid {kids[0]}) during {clients} concurrent "
            f"/api/generate streams (raw stacks: {rec.out})\n\n{analyse(raw)}")


async def main_phase(args: argparse.Namespace, path: Path, home: Path, llama: Any, quiet: Quiet,
                     targets: Targets) -> list[str]:
    raw = Raw(path, args.ctx, args.threads)
    args.kinds = chat_kinds(raw, args.tokens)
    notes = [] if args.kinds == KINDS else [
        "(no chat rows: this model's greedy chat answer ends at once, a base model's EOS; completions only)"]
    count = len(args.kinds) * args.reps * (1 + sum(args.clients))
    prompts = good_prompts(raw, count, args.tokens, path, args.kinds)
    parallel = max(args.clients)
    procs = {"server": start_llama_cpp_server(path, pyport := free_port(), args.ctx, args.threads,
                                              home / "llama_cpp.server.log")}
    urls = {"server": f"http://127.0.0.1:{pyport}"}
    if llama is not None:
        port = free_port()
        procs["llama"] = start_llama_server(llama.server, path, port, args.ctx, parallel, args.threads,
                                            home / "llama-server.log")
        urls["llama"] = f"http://127.0.0.1:{port}"
    daemon: Daemon | None = None
    try:
        daemon = start_daemon(home / "ours", daemon_env(args, parallel))
        for who, proc in procs.items():
            health = "/v1/models" if who == "server" else "/health"
            try:
                wait_http(urls[who] + health, proc, 300, who)
            except RuntimeError as e:
                tail = (home / ("llama_cpp.server.log" if who == "server" else "llama-server.log")).read_text(
                    errors="replace").splitlines()[-15:]
                hint = ["(is the bench extra installed? .venv/bin/pip install -e '.[bench]')"] if who == "server" else []
                raise RuntimeError("\n".join([str(e), *tail, *hint])) from None
        bench = None
        if llama is not None:
            from serving_workloads import llama_bench  # type: ignore[import-not-found]

            def bench() -> dict[str, float]:
                return llama_bench(llama.bench, path, args.threads, args.bench_pp, args.bench_tg)

        timeout = aiohttp.ClientTimeout(total=1800)
        async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=0)) as session:
            await create_model(session, daemon.base_url, path, args.ctx)
            # The peak compared is the serving one: reading the GGUF's metadata at create (its whole
            # vocabulary as Python strings) is a passing peak of the daemon's, reported apart.
            create_peak = memory_mib([daemon.proc.pid])[0]
            if reset_peak_rss(daemon.proc.pid):
                notes.append(f"ours: the daemon's peak RSS while creating the model was {create_peak:.0f} MiB; "
                             "its peak below counts from after the create (the runner starts after it)")
            run = runners(session, daemon.base_url, urls, raw, raw.count, args.ours_options)
            single, conc, rates = await measure(run, prompts, args, quiet, bench)
            daemon.note_children()
            kids = runner_descendants(daemon.proc.pid)
            mem: dict[str, Any] = {w: memory_mib([p.pid]) for w, p in procs.items()}
            mem.update(ours=memory_mib([daemon.proc.pid, *kids]), pids=[daemon.proc.pid, *kids],
                       daemon=memory_mib([daemon.proc.pid]), runner=memory_mib(kids))
            prof = await profile(run, daemon, args) if args.profile else None
    finally:
        if daemon is not None:
            daemon.stop(check=False)
        for proc in procs.values():
            stop_process(proc)
    servers = list(procs)
    out = [*notes, report(single, conc, mem, raw.rss_growth_kib / 1024, servers, args)]
    if rates:
        out.append("llama-bench (medians over repetitions, tokens/s): "
                   + ", ".join(f"{name} {sorted(v)[len(v) // 2]:.1f}" for name, v in rates.items()))
    if llama is not None:
        tg = next((v for name, v in rates.items() if name.startswith("tg")), [])
        main_targets(targets, single, conc, mem, tg, args.clients)
    if prof:
        out.append(prof)
    plot(conc, single, args.clients, servers, OUT / "serving.png", path.name)
    out.append(f"plot: {OUT / 'serving.png'}")
    return out


async def long_phase(args: argparse.Namespace, path: Path, home: Path, llama: Any, quiet: Quiet,
                     targets: Targets) -> list[str]:
    """edit and returning: servers with --long-ctx per slot and --long-slots slots."""
    from serving_workloads import measure_edit, measure_returning  # type: ignore[import-not-found]

    slots = args.long_slots
    proc = None
    urls: dict[str, str] = {}
    daemon: Daemon | None = None
    out: list[str] = []
    try:
        daemon = start_daemon(home / "ours-long", daemon_env(args, slots))
        if llama is not None:
            port = free_port()
            proc = start_llama_server(llama.server, path, port, args.long_ctx, slots, args.threads,
                                      home / "llama-server-long.log")
            urls["llama"] = f"http://127.0.0.1:{port}"
            wait_http(urls["llama"] + "/health", proc, 300, "llama-server")
        timeout = aiohttp.ClientTimeout(total=1800)
        async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=0)) as session:
            await create_model(session, daemon.base_url, path, args.long_ctx)
            run = chat_runners(session, daemon.base_url, urls, lambda text: len(text.split()), args.ours_options)
            for who in run:  # warm-up, and our model's load
                await run[who]([{"role": "user", "content": f"warm {who}"}], 4)
            if "edit" in args.workloads:
                table, _ = await measure_edit(run, args.reps, args.edit_tokens, quiet)
                out.append(table)
            if "returning" in args.workloads:
                out.append(await measure_returning(run, args.reps, args.history_words, slots, 16, quiet, targets))
    finally:
        if daemon is not None:
            daemon.stop(check=False)
        if proc is not None:
            stop_process(proc)
    return out


async def cold_phase(args: argparse.Namespace, path: Path, home: Path, llama: Any, quiet: Quiet,
                     targets: Targets) -> list[str]:
    from serving_cold import measure_cold  # type: ignore[import-not-found]

    env = daemon_env(args, max(args.clients))
    timeout = aiohttp.ClientTimeout(total=1800)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        if "main" not in args.workloads:  # the main phase leaves the model made in home/ours
            daemon = start_daemon(home / "ours", env)
            try:
                await create_model(session, daemon.base_url, path, args.ctx)
            finally:
                daemon.stop(check=False)
        return [await measure_cold(session, home / "ours", env, llama.server if llama else None, path, args.ctx,
                                   max(args.clients), args.threads, args.reps, quiet, targets)]


async def run_all(args: argparse.Namespace) -> int:
    path = resolve_model(args.model)
    llama = None
    if args.with_llama_server:
        from llamacpp_build import ensure_built  # type: ignore[import-not-found]

        llama = ensure_built(args.build_jobs)
    started = datetime.datetime.now(datetime.timezone.utc)
    load_before = os.getloadavg()
    quiet = Quiet(args.quiet_below, args.quiet_wait)
    targets = Targets()
    # Each part is printed as soon as it is measured: a long run that is cut short keeps what it had.
    print(f"\nserving benchmark, {started:%Y-%m-%d %H:%M} UTC, {platform.machine()} with {os.cpu_count()} cores "
          f"(load average {load_before[0]:.1f} before)")
    print(f"model {describe_model(path)}, threads={args.threads}, context {args.ctx} per request "
          f"(ours and llama-server: {max(args.clients)} slots; edit/returning: {args.long_slots} slots of "
          f"{args.long_ctx}), greedy, {args.tokens} tokens per request, medians over {args.reps} repetitions, "
          f"workloads {','.join(args.workloads)}" + (f", env {' '.join(args.env)}" if args.env else "")
          + (f", ours options {json.dumps(args.ours_options)}" if args.ours_options else ""))
    if llama is not None:
        print(f"llama-server and llama-bench: {llama.describe()}; llama-server defaults otherwise (flash attention auto)")
    print("", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        home = Path(tmp)
        wanted = set(args.workloads)
        phases = [({"main"}, main_phase), ({"cold"}, cold_phase), ({"edit", "returning"}, long_phase)]
        for names, phase in phases:
            if names & wanted:
                print("\n\n".join(await phase(args, path, home, llama, quiet, targets)) + "\n", flush=True)
    if targets.rows:
        print("### issue 20 targets\n\n" + targets.table() + "\n")
    elapsed = (datetime.datetime.now(datetime.timezone.utc) - started).total_seconds()
    print(f"{elapsed:.0f}s, load average {os.getloadavg()[0]:.1f} after; {quiet.summary()}")
    return 0


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer tokens and repetitions, shorter waits")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--tokens", type=int, default=None, help="tokens per request (default 64, quick 32)")
    ap.add_argument("--reps", type=int, default=None, help="repetitions/rounds of every workload (default 5, quick 3)")
    ap.add_argument("--clients", default="1,4,8", help="concurrency levels, comma-separated")
    ap.add_argument("--ctx", type=int, default=512, help="context per request (per slot)")
    ap.add_argument("--model", default=None, help=f"{MODEL_CHOICES} (default: qwen when fetched, else bench)")
    ap.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                    help="environment for all contenders (e.g. OMP_WAIT_POLICY=PASSIVE); repeatable")
    ap.add_argument("--ours-option", action="append", default=[], metavar="KEY=VALUE",
                    help="an Ollama option for our native requests (/api/generate, /api/chat); JSON values; repeatable")
    ap.add_argument("--with-llama-server", action="store_true",
                    help="add llama.cpp's llama-server and llama-bench, built once under bench/out/ (minutes)")
    ap.add_argument("--build-jobs", type=int, default=os.cpu_count() or 2, help="compile jobs for that build")
    ap.add_argument("--workloads", default="main", help=f"comma-separated of {','.join(WORKLOADS)}, or all")
    ap.add_argument("--profile", action="store_true", help="py-spy on our runner during one extra batch (main)")
    ap.add_argument("--py-spy", default=None, metavar="PATH", help="the py-spy binary (default: the venv's, or PATH)")
    ap.add_argument("--quiet-below", type=float, default=0.15, help="CPU busy fraction that counts as quiet")
    ap.add_argument("--quiet-wait", type=float, default=None,
                    help="seconds to wait for a quiet machine before each measurement (default 60, quick 10; 0: none)")
    ap.add_argument("--bench-pp", type=int, default=None, help="llama-bench prompt tokens (default 512, quick 128)")
    ap.add_argument("--bench-tg", type=int, default=None, help="llama-bench generated tokens (default 128, quick 32)")
    ap.add_argument("--long-ctx", type=int, default=4096, help="context per slot for edit/returning")
    ap.add_argument("--long-slots", type=int, default=2, help="slots for edit/returning")
    ap.add_argument("--edit-tokens", type=int, default=None, help="edit-this-code answer budget (default 400, quick 64)")
    ap.add_argument("--history-words", type=int, default=None,
                    help="returning conversation's history in words (default 1600: about 2k tokens; quick 400)")
    args = ap.parse_args()
    quick = args.quick
    args.tokens = args.tokens or (32 if quick else 64)
    args.reps = args.reps or (3 if quick else 5)
    args.quiet_wait = args.quiet_wait if args.quiet_wait is not None else (10.0 if quick else 60.0)
    args.bench_pp = args.bench_pp or (128 if quick else 512)
    args.bench_tg = args.bench_tg or (32 if quick else 128)
    args.edit_tokens = args.edit_tokens or (64 if quick else 400)
    args.history_words = args.history_words or (400 if quick else 1600)
    try:
        args.clients = sorted({int(c) for c in args.clients.split(",")})
    except ValueError:
        ap.error("--clients takes comma-separated integers, e.g. 1,4,8")
    args.workloads = list(WORKLOADS) if args.workloads == "all" else args.workloads.split(",")
    if set(args.workloads) - set(WORKLOADS):
        ap.error(f"--workloads takes {','.join(WORKLOADS)} or all")
    for item in args.env:
        key, sep, value = item.partition("=")
        if not sep or not key:
            ap.error(f"--env takes KEY=VALUE, got {item!r}")
        # Set before llama_cpp (and its OpenMP runtime) loads here, and inherited by every server.
        os.environ[key] = value
    args.ours_options = {}
    for item in args.ours_option:
        key, sep, value = item.partition("=")
        if not sep or not key:
            ap.error(f"--ours-option takes KEY=VALUE, got {item!r}")
        try:
            args.ours_options[key] = json.loads(value)
        except ValueError:
            args.ours_options[key] = value
    if args.tokens < 2 or args.reps < 1 or args.threads < 1 or args.clients[0] < 1 or args.ctx < 128:
        ap.error("--tokens >= 2, --reps >= 1, --threads >= 1, --clients >= 1 and --ctx >= 128 are required")
    if args.profile and "main" not in args.workloads:
        ap.error("--profile profiles the main workload's highest concurrency: add main to --workloads")
    return args


def main() -> int:
    return asyncio.run(run_all(parse_args()))


if __name__ == "__main__":
    sys.exit(main())
