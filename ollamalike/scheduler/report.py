"""The /api/ps view of a loaded model (what ``ollamalike ps`` prints)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from ollamalike.scheduler.plan import LoadPlan, display_name


def ps_entry(model: Any, runner: Any, plan: LoadPlan, keep_alive: float, expires_at: float | None) -> dict[str, Any]:
    """Sizes as the runner measured them when it says, else the plan's estimate."""
    memory = getattr(runner, "memory", None) or {}
    return {
        "name": display_name(model),
        "model": display_name(model),
        "size": int(memory.get("size") or plan.size),
        "size_vram": int(memory.get("size_vram", plan.size_vram)),
        "digest": str(model.digest).removeprefix("sha256:"),
        "details": dict(getattr(model, "details", None) or {}),
        "expires_at": expires_text(keep_alive, expires_at),
        "context_length": plan.num_ctx,
    }


def expires_text(keep_alive: float, expires_at: float | None) -> str:
    """RFC 3339 in local time; "forever" is a far-future date, as Ollama reports it."""
    local = datetime.now(timezone.utc).astimezone().tzinfo
    if keep_alive < 0 or expires_at is None:
        return (datetime.now(local) + timedelta(days=365 * 290)).isoformat()
    return datetime.fromtimestamp(expires_at, local).isoformat()
