"""End-to-end helpers: run the REAL daemon (``python -m ollamalike serve``) in a subprocess.

``start_daemon(home)`` picks a free 127.0.0.1 port, starts the daemon with a private
``OLLAMALIKE_HOME``, polls ``GET /`` until it answers and returns a ``Daemon``. ``Daemon.stop()``
sends SIGTERM (or the signal given), waits, asserts exit status 0 and that no process the daemon
started (runners) survives it. ``Daemon.cli(*args)`` runs the CLI against the daemon.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
STARTUP_TIMEOUT = 60.0
STOP_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def descendants(pid: int) -> list[int]:
    """All live descendant pids of ``pid`` (from /proc: no psutil dependency)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name may contain spaces or parentheses: fields start after the last ')'.
        fields = stat[stat.rfind(")") + 2 :].split()
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    out: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def runner_descendants(pid: int) -> list[int]:
    """``descendants`` less the chat-template render workers (``ollamalike.template.jinja_worker``),
    which the daemon keeps for Jinja templates whatever models are loaded, and the hardware probe
    (``ollamalike.runner.info``), which the daemon runs once in the background after it starts."""
    out = []
    for child in descendants(pid):
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"ollamalike.template.jinja_worker" not in cmdline and b"ollamalike.runner.info" not in cmdline:
            out.append(child)
    return out


def pid_alive(pid: int) -> bool:
    """True for a running process; a zombie (exited, not yet reaped) counts as gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2 :].split()[0] != "Z"


def daemon_env(home: Path, port: int, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "OLLAMALIKE_HOME": str(home),
            "OLLAMALIKE_MODELS": str(home / "models"),
            "OLLAMALIKE_HOST": f"127.0.0.1:{port}",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.pop("OLLAMA_HOST", None)
    env.update(extra or {})
    return env


@dataclass
class Daemon:
    proc: subprocess.Popen[bytes]
    port: int
    home: Path
    env: dict[str, str]
    log_path: Path
    children_seen: set[int] = field(default_factory=set)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def models_dir(self) -> Path:
        return Path(self.env.get("OLLAMALIKE_MODELS") or self.home / "models")

    def logs(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def request(self, method: str, path: str, body: Any = None, timeout: float = 120.0) -> tuple[int, Any]:
        """(status, parsed JSON or text) without raising on HTTP errors."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base_url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        try:
            return status, json.loads(raw) if raw.strip() else None
        except ValueError:
            return status, raw.decode("utf-8", "replace")

    def cli(
        self,
        *args: str,
        input: str | None = None,
        cwd: Path | str | None = None,
        timeout: float = 120.0,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``ollamalike ARGS`` against this daemon; returns the completed process (text mode)."""
        run_env = dict(self.env)
        run_env.update(env or {})
        self.note_children()
        return subprocess.run(
            [sys.executable, "-m", "ollamalike", *args],
            input=input,
            capture_output=True,
            text=True,
            env=run_env,
            cwd=str(cwd) if cwd is not None else None,
            timeout=timeout,
        )

    def note_children(self) -> None:
        """Remember the daemon's current children (runners) so ``stop`` can check they are gone."""
        if self.proc.poll() is None:
            self.children_seen.update(descendants(self.proc.pid))

    def stop(self, sig: int = signal.SIGTERM, check: bool = True) -> int:
        """Signal the daemon, wait for it, and (with ``check``) assert a clean exit with no survivors."""
        self.note_children()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired as e:
                self.proc.kill()
                self.proc.wait()
                if check:
                    raise AssertionError(f"daemon did not exit within {STOP_TIMEOUT}s of signal {sig}\n{self.logs()}") from e
        code = self.proc.returncode
        deadline = time.monotonic() + 10.0
        survivors = [p for p in self.children_seen if pid_alive(p)]
        while survivors and time.monotonic() < deadline:
            time.sleep(0.05)
            survivors = [p for p in survivors if pid_alive(p)]
        for pid in survivors:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        if check:
            assert code == 0, f"daemon exited with status {code}\n{self.logs()}"
            assert not survivors, f"daemon left child processes running: {survivors}\n{self.logs()}"
        return code


def start_daemon(home: Path, extra_env: dict[str, str] | None = None, port: int | None = None) -> Daemon:
    """Start ``ollamalike serve`` with a private home and wait until ``GET /`` answers."""
    home.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    env = daemon_env(home, port, extra_env)
    log_path = home / "daemon-test.log"
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ollamalike", "serve"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=str(REPO_ROOT),
        )
    daemon = Daemon(proc=proc, port=port, home=home, env=env, log_path=log_path)
    wait_ready(daemon)
    return daemon


def wait_ready(daemon: Daemon, timeout: float = STARTUP_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    delay = 0.02
    while time.monotonic() < deadline:
        if daemon.proc.poll() is not None:
            raise AssertionError(f"daemon exited with status {daemon.proc.returncode} on start\n{daemon.logs()}")
        try:
            with urllib.request.urlopen(daemon.base_url + "/", timeout=2.0) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(delay)
        delay = min(delay * 1.5, 0.25)
    daemon.stop(signal.SIGKILL, check=False)
    raise AssertionError(f"daemon not ready within {timeout}s\n{daemon.logs()}")
