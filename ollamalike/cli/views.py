"""What ``list``, ``ps`` and ``show`` print, from the daemon's JSON answers, in Ollama's layout.

Free of click: the fast path (cli/fast.py) and the click commands (cli/models.py, cli/run.py) print
through these same functions, so the two can never print differently.
"""

from __future__ import annotations

import time

from ollamalike.cli.output import human_bytes, human_duration, human_time, indented_table, parse_epoch, table

# Not typing.TYPE_CHECKING: importing typing would cost the fast path ~2 ms (annotations are strings).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from datetime import datetime
    from typing import Any

# -- list ----------------------------------------------------------------------------------------


def _short_id(digest: str) -> str:
    return digest.removeprefix("sha256:")[:12]


def list_table(models: list[dict[str, Any]], prefix: str | None = None) -> str:
    """``GET /api/tags``'s models as NAME/ID/SIZE/MODIFIED rows; ``prefix`` keeps names starting with it."""
    rows = []
    for m in models:
        name = str(m.get("name") or m.get("model") or "")
        if prefix and not name.lower().startswith(prefix.lower()):
            continue
        rows.append([name, _short_id(str(m.get("digest", ""))), human_bytes(m.get("size") or 0), human_time(m.get("modified_at"))])
    return table(["NAME", "ID", "SIZE", "MODIFIED"], rows)


# -- ps ------------------------------------------------------------------------------------------
FOREVER_YEARS = 100


def processor_text(size: int, size_vram: int) -> str:
    if size_vram <= 0:
        return "100% CPU"
    if size_vram >= size:
        return "100% GPU"
    gpu = round(size_vram * 100 / size)
    return f"{100 - gpu}%/{gpu}% CPU/GPU"


def until_text(expires_at: str, now: datetime | None = None) -> str:
    when = parse_epoch(expires_at)
    if when is None:
        return "Unknown"
    left = when - (time.time() if now is None else now.timestamp())
    if left // 86400 > 365 * FOREVER_YEARS:
        return "Forever"
    if left <= 0:
        return "Stopping..."
    return f"{human_duration(left)} from now"


def ps_table(models: list[dict[str, Any]]) -> str:
    rows = []
    for m in models:
        size, vram = int(m.get("size", 0)), int(m.get("size_vram", 0))
        rows.append([
            str(m.get("name", "")),
            str(m.get("digest", "")).removeprefix("sha256:")[:12],
            human_bytes(size),
            # A remote engine's model: the daemon names the engine's host (no memory of ours to split).
            str(m.get("processor") or processor_text(size, vram)),
            str(m.get("context_length", "")),
            until_text(str(m.get("expires_at", ""))),
        ])
    return table(["NAME", "ID", "SIZE", "PROCESSOR", "CONTEXT", "UNTIL"], rows, padding=4)


# -- show ----------------------------------------------------------------------------------------
SHOW_FIELDS = ("license", "modelfile", "parameters", "system", "template")
SHOW_FIELDS_ERROR = "only one of '--license', '--modelfile', '--parameters', '--system', or '--template' can be specified"


def show_text(resp: dict[str, Any], field: str | None, verbose: bool) -> str | None:
    """What ``show`` prints for ``POST /api/show``'s answer: one field (``--license``...) or the sections;
    None for an empty field (nothing is printed, not even a newline)."""
    if field is None:
        return render_show(resp, verbose)
    value = resp.get(field) or ""
    return str(value).rstrip("\n") if value else None


def _parameter_rows(text: str) -> list[list[str]]:
    rows = []
    for line in text.splitlines():
        key, _, value = line.strip().partition(" ")
        if key:
            rows.append([key, value.strip()])
    return rows


def _first_lines(text: str, verbose: bool) -> list[list[str]]:
    lines = text.strip("\n").splitlines()
    if not verbose and len(lines) > 2:
        lines = [*lines[:2], "..."]
    return [[line] for line in lines]


def render_show(resp: dict[str, Any], verbose: bool) -> str:
    """Ollama's ``show`` layout: Model, Capabilities, Parameters, System, License sections."""
    info = resp.get("model_info") or {}
    details = resp.get("details") or {}
    arch = str(info.get("general.architecture") or details.get("family") or "")
    model_rows = [["architecture", arch], ["parameters", str(details.get("parameter_size") or "")]]
    for key, label in (("context_length", "context length"), ("embedding_length", "embedding length")):
        value = info.get(f"{arch}.{key}")
        if value is not None:
            model_rows.append([label, str(value)])
    model_rows.append(["quantization", str(details.get("quantization_level") or "")])
    model_rows.append(["requires", str(resp.get("requires") or "")])  # Ollama's row; left out when empty
    sections: list[tuple[str, list[list[str]]]] = [("Model", [r for r in model_rows if r[1]])]
    capabilities = resp.get("capabilities") or []
    if capabilities:
        sections.append(("Capabilities", [[str(c)] for c in capabilities]))
    if resp.get("projector_info"):
        proj = resp["projector_info"]
        prows = [["architecture", str(proj.get("general.architecture", ""))]]
        for label, key in (("parameters", "general.parameter_count"), ("embedding length", "clip.vision.embedding_length"),
                           ("dimensions", "clip.vision.projection_dim"), ("image size", "clip.vision.image_size")):
            if proj.get(key) is not None:
                prows.append([label, str(proj[key])])
        sections.append(("Projector", prows))
    if resp.get("parameters"):
        sections.append(("Parameters", _parameter_rows(str(resp["parameters"]))))
    if resp.get("system"):
        sections.append(("System", _first_lines(str(resp["system"]), verbose)))
    if resp.get("license"):
        sections.append(("License", _first_lines(str(resp["license"]), verbose)))
    if verbose and info:
        rows = [[str(k), _metadata_value(v)] for k, v in sorted(info.items())]
        sections.append(("Metadata", rows))
    out: list[str] = []
    for title, rows in sections:
        if not rows:
            continue
        out.append(f"  {title}")
        out.extend(indented_table(rows))
        out.append("")
    return "\n".join(out)


def _metadata_value(value: Any) -> str:
    if isinstance(value, list):
        shown = ", ".join(str(v) for v in value[:5])
        return f"[{shown}{', ...' if len(value) > 5 else ''}]"
    if value is None:
        return "[...]"
    return str(value)
