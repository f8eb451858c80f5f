"""Benchmark: wall time of ``ollamalike list``, ``ps`` and ``show`` against ``curl`` on the same route.

Starts the real daemon on 127.0.0.1 with a private home, creates a tiny random model and loads it (so
``list``, ``ps`` and ``show`` each print a row or more), then times the console script and curl on
``/api/tags``, ``/api/ps`` and ``/api/show``, interleaved (the order flips every round), and prints a
markdown table of medians. The interpreter's own start-up (``-c pass``, ``-I -S -c pass``) is timed the
same way: it is the floor under any Python CLI. Target (issue 20): a median of 60 ms or less.

    .venv/bin/python bench/cli.py [--rounds 30] [--cli .venv/bin/ollamalike [--cli OTHER ...]]

``--cli`` is a command to time (shell words), repeatable to compare installs in one interleaved run;
default: the ``ollamalike`` console script next to this interpreter. The children run without ``PYTHONDONTWRITEBYTECODE`` (users do not set it; without cached
bytecode every module is compiled on each run) and from a scratch directory.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from common import stop_process, wait_http  # type: ignore[import-not-found]  # noqa: E402

from tests.daemon import free_port  # noqa: E402

MODELFILE = 'FROM {gguf}\nSYSTEM """Be terse."""\nLICENSE """MIT"""\nPARAMETER temperature 0.25\n'


def _child_env(home: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "OLLAMA_HOST")}
    env.update({"OLLAMALIKE_HOME": str(home), "OLLAMALIKE_HOST": f"127.0.0.1:{port}", "PYTHONUNBUFFERED": "1"})
    return env


def _default_cli() -> list[str]:
    script = Path(sys.executable).parent / "ollamalike"
    return [str(script)] if script.exists() else [sys.executable, "-m", "ollamalike"]


def _interpreter(cli: list[str]) -> str:
    """The Python a console script runs (its #! line), else the command's first word (after ``env X=Y``)."""
    words = cli[1:] if Path(cli[0]).name == "env" else cli
    command = next((w for w in words if "=" not in w), cli[0])
    try:
        first = Path(command).read_bytes()[:300].split(b"\n", 1)[0]
    except OSError:
        return command
    return first[2:].decode().strip() if first.startswith(b"#!") and b"python" in first else command


def _editable_finder(python: str) -> str:
    code = ("import sys, glob, os; print(','.join(os.path.basename(p) for d in sys.path "
            "for p in glob.glob(os.path.join(d, '__editable__*finder.py'))))")
    out = subprocess.run([python, "-c", code], capture_output=True, text=True).stdout.strip()
    return out or "none"


def _time(cmd: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the process and its children: user + system)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{shlex.join(cmd)} failed ({proc.returncode}): {proc.stderr.decode(errors='replace')}")
    return elapsed, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


def _setup_model(env: dict[str, str], base: str, scratch: Path) -> None:
    from ollamalike.testmodels import write_tiny_llama

    gguf = write_tiny_llama(scratch / "tiny.gguf")
    (scratch / "Modelfile").write_text(MODELFILE.format(gguf=gguf))
    subprocess.run([sys.executable, "-m", "ollamalike", "create", "tiny", "-f", str(scratch / "Modelfile")],
                   env=env, cwd=REPO_ROOT, check=True, stdout=subprocess.DEVNULL)
    body = json.dumps({"model": "tiny", "prompt": "hi", "stream": False, "keep_alive": -1,
                       "options": {"num_predict": 1}}).encode()
    req = urllib.request.Request(base + "/api/generate", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=300) as resp:
        resp.read()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--cli", action="append", default=[],
                    help="command to time, repeatable (default: the console script next to this Python)")
    args = ap.parse_args()
    clis = [shlex.split(c) for c in args.cli] or [_default_cli()]
    pythons = list(dict.fromkeys(_interpreter(cli) for cli in clis))
    curl = shutil.which("curl")
    if curl is None:
        raise SystemExit("curl is not installed")

    with tempfile.TemporaryDirectory(prefix="bench-cli-") as tmp:
        scratch = Path(tmp)
        port = free_port()
        env = _child_env(scratch / "home", port)
        base = f"http://127.0.0.1:{port}"
        log = (scratch / "daemon.log").open("wb")
        daemon = subprocess.Popen([sys.executable, "-m", "ollamalike", "serve"], env=env, cwd=REPO_ROOT,
                                  stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_http(base + "/", daemon, 120, "ollamalike serve")
            _setup_model(env, base, scratch)
            show_body = json.dumps({"model": "tiny", "verbose": False})
            routes = [("list", ["list"], [curl, "-sf", base + "/api/tags"]),
                      ("ps", ["ps"], [curl, "-sf", base + "/api/ps"]),
                      ("show tiny", ["show", "tiny"], [curl, "-sf", "-d", show_body, base + "/api/show"])]
            items = [(f"{name}:curl", theirs) for name, _, theirs in routes]
            items += [(f"{name}:{i}", [*cli, *words]) for name, words, _ in routes for i, cli in enumerate(clis)]
            for python in pythons:
                items += [(f"{python} -c pass", [python, "-c", "pass"]), (f"{python} -I -S -c pass", [python, "-I", "-S", "-c", "pass"])]
            for _, cmd in items:  # warm-up: bytecode written, caches filled
                _time(cmd, env, scratch)
            times: dict[str, list[float]] = {}
            cpu: dict[str, list[float]] = {}
            for r in range(args.rounds):
                for key, cmd in items if r % 2 == 0 else reversed(items):
                    wall, used = _time(cmd, env, scratch)
                    times.setdefault(key, []).append(wall)
                    cpu.setdefault(key, []).append(used)
        finally:
            stop_process(daemon)
            log.close()

    def ms(key: str, of: dict[str, list[float]] = times) -> float:
        return statistics.median(of[key]) * 1000

    print(f"\n{time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs, load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())} (after the run), {args.rounds} rounds, medians")
    for i, cli in enumerate(clis):
        print(f"- [{i}] `{shlex.join(cli)}` (editable finder on its sys.path: {_editable_finder(_interpreter(cli))})")
    print("\nWall time, and in brackets the CPU time (user + system) of the process, which a loaded machine")
    print("inflates less: on a quiet one the wall time comes close to it.\n")
    print("| command | ollamalike (ms) | curl, same route (ms) | ollamalike - curl (ms) | target |")
    print("|---|---:|---:|---:|---:|")
    for name, _, _ in routes:
        for i in range(len(clis)):
            key = f"{name}:{i}"
            ours, theirs = ms(key), ms(f"{name}:curl")
            tag = f" [{i}]" if len(clis) > 1 else ""
            print(f"| `{name}`{tag} | {ours:.1f} ({ms(key, cpu):.1f}) | {theirs:.1f} ({ms(f'{name}:curl', cpu):.1f}) "
                  f"| {ours - theirs:.1f} | <= 60 |")
    for python in pythons:
        for flags in ("-c pass", "-I -S -c pass"):
            key = f"{python} {flags}"
            print(f"| floor: `{key}` | {ms(key):.1f} ({ms(key, cpu):.1f}) | | | |")


if __name__ == "__main__":
    main()
