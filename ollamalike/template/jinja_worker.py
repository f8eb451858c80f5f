"""A chat-template render worker: ``python -m ollamalike.template.jinja_worker PARENT_PID``.

Started and fed by ``jinja_pool``: it reads render requests on stdin and writes replies on its
original stdout (fd 1 is pointed at stderr, so nothing printed can corrupt a frame). Each render
runs under an address-space limit (``RLIMIT_AS``: the worker's size now, plus the memory budget,
plus a few times the request) and an alarm at its time budget plus a second, whose default action
ends the process even inside one long C-level operation. After a limit, or once it has grown, the
worker exits after replying, so its memory goes back to the system. It exits at end of file on
stdin, which is what it sees when the daemon dies.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import resource
import signal
import sys

from ollamalike.errors import BadRequest
from ollamalike.template.jinja import MAX_MEMORY, RECYCLE_GROWTH, render_here
from ollamalike.template.jinja_pool import ERROR, OK, encode_reply, read_frame, vm_status, write_frame

ALARM_GRACE = 1.0  # after the budget; the daemon kills at half of that already


def _reset_peak() -> None:
    # Linux >= 4.0: "5" resets VmHWM, so each reply reports its own render's peak.
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _render(request: bytes) -> tuple[bytes, str, bool]:
    """(kind, text, whether this worker may stay) for one request."""
    args = pickle.loads(request)
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = vm_status("self", "VmSize") * 1024 + MAX_MEMORY + 4 * len(request)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    signal.setitimer(signal.ITIMER_REAL, float(args["budget"]) + ALARM_GRACE)
    try:
        return OK, render_here(**args), True
    except BadRequest as e:
        return ERROR, str(e), True
    except MemoryError:
        return ERROR, "chat template: uses too much memory", False
    except Exception as e:  # whatever else a hostile template provokes is still its fault: a 400
        return ERROR, f"chat template: {type(e).__name__}", False
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def main(argv: list[str]) -> int:
    parent = int(argv[1]) if len(argv) > 1 else 0
    rfd, wfd = 0, os.dup(1)
    os.dup2(2, 1)
    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # ^C in the daemon's terminal is the daemon's to handle
    render_here("{{ messages[0]['content'] }}", [{"role": "user", "content": "warm"}], [], None)
    if parent and os.getppid() != parent:
        return 0  # the daemon died while we started
    baseline = vm_status("self", "VmRSS")
    write_frame(wfd, b"ready")
    while True:
        request = read_frame(rfd)
        if request is None:
            return 0
        _reset_peak()
        kind, text, stays = _render(request)
        peak = vm_status("self", "VmHWM")
        if vm_status("self", "VmRSS") - baseline > RECYCLE_GROWTH // 1024:
            stays = False
        write_frame(wfd, encode_reply(kind, stays, peak, text))
        if not stays:
            return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
