"""The install smoke test: passes on this build, and names the signal when a build crashes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from ollamalike.runner.smoke import describe_failure, run_smoke


def test_smoke_passes_here() -> None:
    proc = subprocess.run([sys.executable, "-m", "ollamalike.runner.smoke"], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("llama.cpp smoke test passed (")
    assert "tokens/s" in lines[0]


def test_sigill_in_child_is_reported(tmp_path: Path) -> None:
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\nkill -ILL $$\n")
    fake.chmod(0o755)
    ok, message = run_smoke(python=str(fake))
    assert not ok
    assert message.startswith("llama.cpp smoke test failed: killed by SIGILL")
    assert "./install.sh --rebuild" in message


def test_failure_descriptions() -> None:
    assert describe_failure(1, "loading\nerror: failed to load model\n") == "error: failed to load model"
    assert describe_failure(3, "") == "exited with status 3"
    assert "SIGSEGV" in describe_failure(-11, "")
