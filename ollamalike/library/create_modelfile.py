"""The legacy /api/create shape: a Modelfile's text, its FROM, ADAPTER and DRAFT lines resolved.

Each FROM line is a model name or, for a client allowed to name server paths (``Access``), a file:
a GGUF (model or projector), a safetensors directory or a split GGUF's first shard. Files of every
FROM line are merged (what ``show --modelfile`` prints for a model with a projector); of the model
names the last one wins, as in Ollama. Ollama silently drops the files when a name is also given;
that is refused here instead, since the model built would not be the one the Modelfile describes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ollamalike import modelfile
from ollamalike.errors import BadRequest
from ollamalike.library.create_convert import CheckpointInput, local_split, shards_by_content
from ollamalike.library.create_paths import is_dir, local_path, refuse_server_path
from ollamalike.library.request import Access, CreateRequest
from ollamalike.modelfile import check_draft_path


@dataclass
class ModelfileSources:
    """What a Modelfile's lines name: files on this machine, or model names."""

    mf: modelfile.Modelfile
    from_name: str | None = None
    model_files: list[Path] = field(default_factory=list)
    checkpoint: CheckpointInput | None = None
    adapter_files: list[Path] = field(default_factory=list)
    lora_dirs: list[Path] = field(default_factory=list)  # PEFT adapter directories, converted at create
    draft_file: Path | None = None
    draft_name: str | None = None


def resolve_modelfile(request: CreateRequest, access: Access) -> ModelfileSources:
    """Parse ``request.modelfile`` and sort its FROM/ADAPTER/DRAFT values into files and names."""
    assert request.modelfile is not None
    mf = modelfile.parse(request.modelfile)
    out = ModelfileSources(mf)
    if mf.engine is not None:  # served by a remote engine: no FROM, no ADAPTER (the parser refused them)
        return out
    base_dir = Path(request.path).expanduser().parent if request.path else Path.cwd()
    names: list[str] = []
    for spec in mf.froms:
        local = _local(spec, base_dir, access)
        if local is None:
            names.append(spec)
        elif is_dir(local) and not local.name.lower().endswith(".gguf"):
            out.checkpoint = _one_checkpoint(out.checkpoint, CheckpointInput(directory=local))
        elif (split := local_split(local)) is not None:
            out.checkpoint = _one_checkpoint(out.checkpoint, split)
        else:
            out.model_files.append(local)
    _join_shards(out)
    if names and (out.model_files or out.checkpoint is not None):
        raise BadRequest(
            f"the Modelfile's FROM lines name both a model ({names[-1][:100]}) and files: "
            "build on a model, or from files, not both"
        )
    out.from_name = names[-1] if names else None
    for spec in mf.adapters:
        if not access.server_paths:
            refuse_server_path(spec, access.keys_on)
            continue  # as before: a remote client's adapters come as 'adapters' blobs
        adapter = Path(spec).expanduser()
        path = adapter if adapter.is_absolute() else base_dir / adapter
        (out.lora_dirs if is_dir(path) else out.adapter_files).append(path)
    if mf.draft is not None:
        draft = _local(mf.draft, base_dir, access)
        if draft is None:
            out.draft_name = mf.draft
        else:
            check_draft_path(draft, [*out.model_files, *([out.checkpoint.directory] if out.checkpoint else [])])
            out.draft_file = draft
    return out


def _local(spec: str, base_dir: Path, access: Access) -> Path | None:
    """The file a FROM/DRAFT value names, or None for a model name."""
    if not access.server_paths:
        # A remote client: files come through /api/blobs (Ollama's rule); no path, no ~, no stat.
        refuse_server_path(spec, access.keys_on)
        return None
    return local_path(spec, base_dir)


def _join_shards(out: ModelfileSources) -> None:
    """FROM lines naming every shard of one split GGUF (what ``show --modelfile`` writes for a split
    model: its shards' blobs, which have no shard file names) become that split, in shard order."""
    ordered = shards_by_content([(p, p) for p in out.model_files], "the FROM lines name",
                                " (give its first shard's file, or every shard)")
    if ordered is None:
        return
    parent = ordered[0].parent
    if any(path.parent != parent for path in ordered):
        raise BadRequest("the shards of a split GGUF named by FROM lines must be in one directory")
    out.checkpoint = _one_checkpoint(out.checkpoint, CheckpointInput(directory=parent,
                                                                     shards=[path.name for path in ordered]))
    out.model_files = [p for p in out.model_files if p not in ordered]


def _one_checkpoint(current: CheckpointInput | None, new: CheckpointInput) -> CheckpointInput:
    if current is not None:
        raise BadRequest("only one FROM line may name a safetensors directory or a split GGUF")
    return new
