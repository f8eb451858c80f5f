"""Issue 21 item 2: a GGUF chat template that builds strings or lists without end is a one-line 400
within its time budget, whatever construct it builds them with, and costs bounded memory that is
given back: templates render in worker processes under an address-space limit and a deadline.

Each hostile template below builds data the sandbox's per-operation caps let through (every single
``*`` and ``+`` stays under them), so only the worker's limits stop it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from ollamalike.errors import BadRequest
from ollamalike.template.jinja import MAX_MEMORY, RECYCLE_GROWTH, TIME_BUDGET, render_jinja
from ollamalike.template.jinja_pool import pool, vm_status
from tests.daemon import pid_alive
from tests.helpers import assert_api_error

MARGIN = 1.5  # seconds past the budget: the kill, and a loaded machine
BIG = "'x' * 4000000"  # just under the sandbox's per-string cap

# (construct, template): each one grows without bound unless the render is stopped from outside.
RUNAWAY = [
    ("tilde doubling", "{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}"
                       "{{ ns.s | length }}"),
    ("tilde growth", f"{{% set ns = namespace(s='') %}}{{% for i in range(100000) %}}{{% set ns.s = ns.s ~ ({BIG}) %}}"
                     "{% endfor %}{{ ns.s | length }}"),
    ("join separator", f"{{{{ range(100000) | join({BIG}) | length }}}}"),
    ("join of a list", f"{{{{ ([{BIG}] * 100000) | join | length }}}}"),
    ("format filter width", "{{ '%999999999s' | format('x') | length }}"),
    ("percent width", "{{ ('%999999999s' % 'x') | length }}"),
    ("percent of big strings", f"{{% set ns = namespace(l=[]) %}}{{% for i in range(100000) %}}"
                               f"{{% set ns.l = ns.l + ['%s%s' % ({BIG}, i)] %}}{{% endfor %}}{{{{ ns.l | length }}}}"),
    ("str.format width", "{{ '{:>999999999}'.format('x') | length }}"),
    ("string times, kept in a list", f"{{% set ns = namespace(l=[]) %}}{{% for i in range(100000) %}}"
                                     f"{{% set ns.l = ns.l + [{BIG} * 1] %}}{{% endfor %}}{{{{ ns.l | length }}}}"),
    ("list times, kept in a list", "{% set ns = namespace(l=[]) %}{% for i in range(100000) %}"
                                   "{% set ns.l = ns.l + [[i] * 4000000] %}{% endfor %}{{ ns.l | length }}"),
    ("string plus, kept in a list", f"{{% set ns = namespace(l=[]) %}}{{% for i in range(100000) %}}"
                                    f"{{% set ns.l = ns.l + [({BIG}) + (i | string)] %}}{{% endfor %}}{{{{ ns.l | length }}}}"),
    ("replace", f"{{{{ ({BIG}) | replace('x', {BIG}) | length }}}}"),
    ("center", "{{ 'x' | center(999999999) | length }}"),
    ("indent", "{{ ('x\\n' * 2000000) | indent(4000) | length }}"),
    # Twice: one wordwrap of this takes about 2 s on a quiet machine, right at the budget.
    ("wordwrap", "{{ ('ab ' * 1300000) | wordwrap(2) | wordwrap(1) | length }}"),
    ("tojson", f"{{{{ ([{BIG}] * 100000) | tojson | length }}}}"),
    ("dict building in a loop", f"{{% set ns = namespace(d={{}}) %}}{{% for i in range(100000) %}}"
                                f"{{% set ns.d = dict(ns.d, **{{'k' ~ i: {BIG} ~ i}}) %}}{{% endfor %}}{{{{ ns.d | length }}}}"),
    ("list of lists doubling", "{% set ns = namespace(l=[1]) %}{% for i in range(64) %}{% set ns.l = [ns.l, ns.l] | list %}"
                               "{% set ns.l = ns.l | sum(start=[]) %}{% endfor %}{{ ns.l | length }}"),
    ("macro recursion doubling", "{% macro r(s, n) %}{% if n > 0 %}{{ r(s ~ s, n - 1) }}{% else %}{{ s | length }}"
                                 "{% endif %}{% endmacro %}{{ r('ab', 64) }}"),
    ("macro output fan-out", f"{{% macro r(n) %}}{{% if n < 40 %}}{{{{ {BIG} }}}}{{{{ r(n + 1) }}}}{{{{ r(n + 1) }}}}"
                             "{% endif %}{% endmacro %}{{ r(0) | length }}"),
    ("call block output", "{% macro w() %}{{ caller() ~ caller() }}{% endmacro %}{% set ns = namespace(s='ab') %}"
                          "{% for i in range(64) %}{% set ns.s %}{% call w() %}{{ ns.s }}{% endcall %}{% endset %}{% endfor %}"
                          "{{ ns.s | length }}"),
]

USER = [{"role": "user", "content": "u"}]
PEAK_BOUND_KB = (MAX_MEMORY + 128 * 1024 * 1024) // 1024  # the limit, plus the worker's own size
KEPT_BOUND_KB = (RECYCLE_GROWTH + 64 * 1024 * 1024) // 1024  # an idle worker: its own size, plus what it may keep


@pytest.fixture(scope="module")
def warm_pool() -> None:
    # The first render starts a worker (an interpreter importing jinja2); the budget is the render's.
    assert render_jinja("{{ messages[0].content }}", USER, [], None) == "u"


@pytest.mark.parametrize("name,template", RUNAWAY, ids=[r[0] for r in RUNAWAY])
def test_runaway_template_is_a_400_within_budget_and_bounded_memory(warm_pool: None, name: str, template: str) -> None:
    _wait_for_a_started_worker()  # the previous case's replacement: its start-up is not this render's time
    started = time.monotonic()
    with pytest.raises(BadRequest) as err:
        render_jinja(template, USER, [], None)
    elapsed = time.monotonic() - started
    message = str(err.value)
    assert message.startswith("chat template: ") and "\n" not in message, message
    assert elapsed < TIME_BUDGET + MARGIN, f"{name}: {elapsed:.2f}s ({message})"
    assert 0 < pool().last_peak_kb < PEAK_BOUND_KB, f"{name}: worker peak {pool().last_peak_kb} kB"
    # What the template built went back: its worker exited, or is kept small for the next render.
    if pid_alive(pool().last_pid):
        assert vm_status(pool().last_pid, "VmRSS") < KEPT_BOUND_KB, f"{name}: worker kept with its memory"
    # The pool is usable at once afterwards.
    assert render_jinja("{{ messages[0].content }}!", USER, [], None) == "u!"


def _wait_for_a_started_worker() -> None:
    deadline = time.monotonic() + 60
    while pool().idle_count() == 0:
        assert time.monotonic() < deadline, "no render worker started"
        time.sleep(0.02)


def test_runaway_templates_leave_the_rendering_process_small(tmp_path: Path) -> None:
    """The process that asks for the renders (the daemon) never holds what a template built: its
    peak RSS (VmHWM) grows by little over all the runaway templates together."""
    script = textwrap.dedent("""
        import json, sys
        from ollamalike.errors import BadRequest
        from ollamalike.template.jinja import render_jinja
        from ollamalike.template.jinja_pool import vm_status
        user = [{"role": "user", "content": "u"}]
        render_jinja("{{ messages[0].content }}", user, [], None)
        before = vm_status("self", "VmHWM")
        errors = []
        for template in json.loads(sys.stdin.read()):
            try:
                render_jinja(template, user, [], None)
                errors.append(None)
            except BadRequest as e:
                errors.append(str(e))
        print(json.dumps({"growth_kb": vm_status("self", "VmHWM") - before, "errors": errors}))
    """)
    heavy = {"tilde doubling", "join of a list", "percent of big strings", "list times, kept in a list", "tojson",
             "macro output fan-out", "wordwrap"}  # the ones that reach the memory limit or the deadline
    templates = [t for name, t in RUNAWAY if name in heavy]
    assert len(templates) == len(heavy)
    done = subprocess.run([sys.executable, "-c", script], input=json.dumps(templates),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert all(e and e.startswith("chat template: ") for e in result["errors"]), result["errors"]
    assert result["growth_kb"] < 64 * 1024, result


def test_normal_renders_stay_fast_and_workers_are_reused(warm_pool: None) -> None:
    tmpl = "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}"
    _wait_for_a_started_worker()
    before = {w.proc.pid for w in pool()._idle}
    timings = []
    for _ in range(20):
        started = time.perf_counter()
        assert render_jinja(tmpl, USER, [], None) == "<user>u"
        timings.append(time.perf_counter() - started)
    timings.sort()
    assert timings[len(timings) // 2] < 0.05, timings
    assert {w.proc.pid for w in pool()._idle} & before  # no new process per render


def test_a_big_legitimate_render_leaves_no_big_worker(warm_pool: None) -> None:
    """A render that needed much memory (a 24 MB prompt is under every cap) succeeds, and no worker
    kept for the next render holds that memory (it gave it back, or it exited)."""
    tmpl = f"{{% for i in range(6) %}}{{{{ {BIG} }}}}{{% endfor %}}"
    assert len(render_jinja(tmpl, USER, [], None)) == 6 * 4000000
    assert render_jinja("{{ messages[0].content }}", USER, [], None) == "u"
    for w in pool()._idle:
        assert vm_status(w.proc.pid, "VmRSS") < KEPT_BOUND_KB, "a grown worker was kept"


def test_a_killed_idle_worker_is_replaced(warm_pool: None) -> None:
    for w in list(pool()._idle):
        w.proc.kill()
        w.proc.wait()
    assert render_jinja("{{ messages[0].content }}", USER, [], None) == "u"


def test_renders_run_alongside_a_runaway_one(warm_pool: None) -> None:
    """While one template runs away, other renders are answered at once (each has its own worker)."""
    runaway = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
    failed: list[str] = []
    thread = threading.Thread(target=lambda: failed.append(_error_of(runaway)))
    thread.start()
    try:
        time.sleep(0.2)  # let it start; the renders below must not wait for it
        _wait_for_a_started_worker()  # the spare the pool starts when its last idle worker is taken
        for _ in range(5):
            started = time.monotonic()
            assert render_jinja("{{ messages[0].content }}", USER, [], None) == "u"
            assert time.monotonic() - started < 1.0
    finally:
        thread.join(timeout=30)
    assert failed and failed[0].startswith("chat template: took too long"), failed


def _error_of(template: str) -> str:
    try:
        render_jinja(template, USER, [], None)
    except BadRequest as e:
        return str(e)
    return "rendered"


def test_outputs_come_back_exactly() -> None:
    """What crosses the pipe is the prompt as rendered: non-ASCII, a lone surrogate made by the
    template itself, NUL and CR bytes, and the request's own types (a tuple stays iterable, ints stay ints)."""
    tmpl = ("{{ messages[0].content }}|{{ '\\ud800' }}|{{ tools[0].n + 1 }}|{{ tools[0].t | join(',') }}"
            "|{{ tools[0].f }}|{{ bos_token }}{{ eos_token }}")
    msgs = [{"role": "user", "content": "é✓日本\x00\r\n"}]
    tools = [{"n": 41, "t": (1, 2), "f": 1.0}]
    assert render_jinja(tmpl, msgs, tools, None, bos_token="<s>", eos_token="</s>") == "é✓日本\x00\r\n|\ud800|42|1,2|1.0|<s></s>"


# -- against the real daemon ------------------------------------------------------------------------------------------
@pytest.mark.e2e
def test_real_daemon_runaway_template_is_a_400_while_tags_answer(daemon: Any, tmp_path: Path) -> None:
    from ollamalike.testmodels import write_tiny_llama

    path = write_tiny_llama(tmp_path / "runaway.gguf", chat_template=RUNAWAY[0][1])
    status, body = daemon.request("POST", "/api/create", {"model": "runaway", "modelfile": f"FROM {path}\n",
                                                         "stream": False})
    assert status == 200, body
    slowest = 0.0
    results: list[tuple[int, Any, float]] = []

    def ask(route: str, payload: dict[str, Any]) -> None:
        started = time.monotonic()
        status, answer = daemon.request("POST", route, payload, timeout=60)
        results.append((status, answer, time.monotonic() - started))

    for route, payload in (("/api/render", {"model": "runaway", "messages": USER}),
                           ("/api/chat", {"model": "runaway", "messages": USER, "stream": False})):
        thread = threading.Thread(target=ask, args=(route, payload))
        thread.start()
        while thread.is_alive():
            started = time.monotonic()
            with urllib.request.urlopen(f"{daemon.base_url}/api/tags", timeout=5) as resp:
                assert resp.status == 200
            slowest = max(slowest, time.monotonic() - started)
            time.sleep(0.05)
        thread.join()
    assert slowest < 1.0, f"/api/tags took {slowest:.2f}s while a template ran away"
    for status, answer, elapsed in results:
        assert_api_error(status, answer, 400, "chat template: ")
        assert elapsed < TIME_BUDGET + MARGIN + 1.0, elapsed


# -- the real Qwen template: unchanged output, still fast -------------------------------------------------------------
def test_qwen_template_renders_as_transformers_and_fast(qwen_gguf: Path, warm_pool: None) -> None:
    from tests.hf_reference import apply_chat_template, to_ollama
    from tests.test_real_templates import QWEN_CASES, gguf_template_and_tokens

    template, bos, eos = gguf_template_and_tokens(qwen_gguf)
    assert template
    from ollamalike.template.values import normalize_messages, validate_tools

    for name, (messages, tools) in QWEN_CASES.items():
        expected = apply_chat_template(template, messages, tools=tools, bos_token=bos, eos_token=eos)
        ours = render_jinja(template, normalize_messages(to_ollama(messages)), validate_tools(tools), None,
                            bos_token=bos, eos_token=eos)
        assert ours == expected, name
    messages, tools = QWEN_CASES["system_two_turns_tools"]
    msgs, tool_list = normalize_messages(to_ollama(messages)), validate_tools(tools)
    _wait_for_a_started_worker()
    timings = []
    for _ in range(30):
        started = time.perf_counter()
        render_jinja(template, msgs, tool_list, None, bos_token=bos, eos_token=eos)
        timings.append(time.perf_counter() - started)
    timings.sort()
    median = timings[len(timings) // 2]
    print(f"qwen render: median {median * 1000:.2f} ms, best {timings[0] * 1000:.2f} ms")
    assert median < 0.05, timings


REFERENCE = Path(__file__).resolve().parent.parent.parent / "shared" / "reference" / "ollama-templates"


@pytest.mark.skipif(not (REFERENCE / "index.json").is_file(), reason="shared/reference is not checked out")
def test_real_world_templates_render_the_same_in_a_worker(warm_pool: None) -> None:
    """The worker changes where a template renders, not what it renders: every real-world Jinja
    template gives byte for byte what the same sandbox gives in this process."""
    from ollamalike.template.jinja import render_here

    exchange = [{"role": "user", "content": "Hello ✓", "tool_calls": []},
                {"role": "assistant", "content": "Hi there", "tool_calls": []},
                {"role": "user", "content": "How are you?", "tool_calls": []}]
    tools = [{"type": "function", "function": {"name": "f", "description": "d", "parameters": {"type": "object"}}}]
    entries = json.loads((REFERENCE / "index.json").read_text())
    assert entries
    for entry in entries:
        for tool_list in ([], tools):
            args = (entry["template"], exchange, tool_list, None)
            assert render_jinja(*args, bos_token="<s>", eos_token="</s>") == \
                render_here(*args, bos_token="<s>", eos_token="</s>"), entry["name"]
