"""What the scheduler reports: the /api/ps view of a loaded model (what ``ollamalike ps`` prints) and
the load snapshot behind /api/health (``SchedulerSnapshot``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Literal, TypedDict

from ollamalike.remote.engine import Engine
from ollamalike.scheduler.plan import LoadPlan, display_name

if TYPE_CHECKING:
    from ollamalike.jsontypes import JSONObject
    from ollamalike.library.models import ResolvedModel
    from ollamalike.runner.like import RunnerLike

ModelState = Literal["loading", "ready", "draining"]


@dataclass(frozen=True)
class ModelLoad:
    """One loaded (or loading) model: slots in use and free, and requests waiting for it."""

    name: str
    state: ModelState  # draining: being unloaded or replaced, takes no new requests
    busy: int
    free: int
    queued: int


@dataclass(frozen=True)
class SchedulerSnapshot:
    models: tuple[ModelLoad, ...]  # most recently used first
    queued: int  # every waiting request (what max_queue bounds), those waiting for room included
    max_queue: int
    num_parallel: int
    closed: bool  # shut down: no new leases

    @property
    def busy(self) -> int:
        return sum(m.busy for m in self.models)

    @property
    def free(self) -> int:
        return sum(m.free for m in self.models)


def model_load(model: ResolvedModel, state: ModelState, active: int, num_parallel: int, queued: int) -> ModelLoad:
    free = max(0, num_parallel - active) if state == "ready" else 0
    return ModelLoad(name=display_name(model), state=state, busy=active, free=free, queued=queued)


class _PsHead(TypedDict):
    name: str
    model: str
    size: int
    size_vram: int
    digest: str
    details: JSONObject
    expires_at: str
    context_length: int


class PsEntry(_PsHead, total=False):
    """One ``/api/ps`` model; ``processor`` (not one of Ollama's fields) names a remote engine's host."""

    processor: str


def ps_entry(model: ResolvedModel, runner: RunnerLike, plan: LoadPlan, keep_alive: float, expires_at: float | None) -> PsEntry:
    """Sizes as the runner measured them when it says, else the plan's estimate."""
    memory = runner.memory
    entry: PsEntry = {
        "name": display_name(model),
        "model": display_name(model),
        "size": int(memory.get("size") or plan.size),
        "size_vram": int(memory.get("size_vram", plan.size_vram)),
        "digest": str(model.digest).removeprefix("sha256:"),
        "details": dict(model.details),
        "expires_at": expires_text(keep_alive, expires_at),
        "context_length": plan.num_ctx,
    }
    if isinstance(plan.spec, Engine):
        # Not one of Ollama's fields: a remote engine runs it, and `ps` shows that engine's host.
        entry["processor"] = plan.processor
    return entry


def expires_text(keep_alive: float, expires_at: float | None) -> str:
    """RFC 3339 in local time; "forever" is a far-future date, as Ollama reports it."""
    local = datetime.now(timezone.utc).astimezone().tzinfo
    if keep_alive < 0 or expires_at is None:
        return (datetime.now(local) + timedelta(days=365 * 290)).isoformat()
    return datetime.fromtimestamp(expires_at, local).isoformat()
