"""PEFT LoRA adapters (``ADAPTER ./lora-dir``) converted to GGUF LoRA adapters.

A tiny random PEFT adapter (adapter_config.json + adapter_model.safetensors, PEFT's tensor names) is
written for a tiny generated checkpoint. The converted adapter must do what PEFT's adapter does:
llama.cpp's logits for base + adapter equal its logits for the checkpoint with ``alpha/r * B @ A``
merged into the weights (this checks the name mapping, Llama's q/k permutation applied to B, the
fused Phi-3 layout and the scale). Through the real daemon: the adapted model answers differently
from the base, the same way twice; a zero-B adapter answers exactly as the base; bad adapters are a
400 naming the problem and leave the store as it was.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import gguf
import numpy as np
import pytest

from tests.daemon import Daemon, start_daemon
from tests.helpers import assert_api_error, store_snapshot
from tests.hf_checkpoints import write_checkpoint, write_safetensors
from tests.test_convert_errors import upload_dir

RANK, ALPHA = 4, 8.0
TARGETS = {
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj", "down_proj"],
    "qwen2": ["q_proj", "v_proj", "o_proj", "up_proj"],
    "phi3": ["qkv_proj", "gate_up_proj", "o_proj"],
}


def _weights(src: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return dict(load_file(str(src / "model.safetensors")))


def write_lora(base_dir: Path, directory: Path, targets: list[str], seed: int = 1, zero_b: bool = False,
               rank: int = RANK, config: dict[str, object] | None = None) -> Path:
    """A PEFT adapter for the checkpoint in ``base_dir``: A and B for every ``targets`` module of every layer."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    tensors: dict[str, np.ndarray] = {}
    for name, w in sorted(_weights(base_dir).items()):
        module = name.removesuffix(".weight")
        if not name.endswith(".weight") or module.rsplit(".", 1)[-1] not in targets:
            continue
        out_dim, in_dim = w.shape
        tensors[f"base_model.model.{module}.lora_A.weight"] = (rng.standard_normal((rank, in_dim)) * 0.3).astype(np.float32)
        b = np.zeros((out_dim, rank), np.float32) if zero_b else rng.standard_normal((out_dim, rank)) * 0.3
        tensors[f"base_model.model.{module}.lora_B.weight"] = np.asarray(b, np.float32)
    write_safetensors(directory / "adapter_model.safetensors", tensors)
    cfg: dict[str, object] = {"peft_type": "LORA", "r": RANK, "lora_alpha": ALPHA, "target_modules": targets,
                              "base_model_name_or_path": str(base_dir), "task_type": "CAUSAL_LM", **(config or {})}
    (directory / "adapter_config.json").write_text(json.dumps(cfg))
    return directory


def merged_checkpoint(base_dir: Path, lora_dir: Path, out: Path) -> Path:
    """The base checkpoint with PEFT's ``W + alpha/r * B @ A`` folded in (what the adapter means)."""
    from safetensors.numpy import load_file

    shutil.copytree(base_dir, out, ignore=shutil.ignore_patterns("model.safetensors"))
    weights = _weights(base_dir)
    lora = load_file(str(lora_dir / "adapter_model.safetensors"))
    for name in weights:
        a = lora.get(f"base_model.model.{name.removesuffix('.weight')}.lora_A.weight")
        if a is not None:
            b = lora[f"base_model.model.{name.removesuffix('.weight')}.lora_B.weight"]
            weights[name] = weights[name] + (ALPHA / RANK) * (b @ a)
    write_safetensors(out / "model.safetensors", weights)
    return out


def _logits(model: Path, tokens: list[int], lora: Path | None = None) -> np.ndarray:
    from llama_cpp import Llama

    llm = Llama(str(model), n_ctx=64, n_threads=1, logits_all=True, verbose=False,
                lora_path=str(lora) if lora else None)
    try:
        llm.eval(tokens)
        return np.array(llm.scores[: len(tokens)], dtype=np.float32)
    finally:
        llm.close()


@pytest.mark.parametrize("kind", sorted(TARGETS))
def test_converted_adapter_equals_the_merged_weights(tmp_path: Path, kind: str) -> None:
    from ollamalike.library.convert import convert
    from ollamalike.library.convert.lora import LoraBase, prepare_lora

    base = write_checkpoint(kind, tmp_path / "base")
    lora = write_lora(base, tmp_path / "lora", TARGETS[kind])
    base_gguf, lora_gguf, merged_gguf = tmp_path / "base.gguf", tmp_path / "lora.gguf", tmp_path / "merged.gguf"
    convert(base, base_gguf, out_type="F32")
    prepare_lora(lora, LoraBase.from_gguf(base_gguf)).write(lora_gguf)
    convert(merged_checkpoint(base, lora, tmp_path / "merged"), merged_gguf, out_type="F32")

    reader = gguf.GGUFReader(lora_gguf)
    assert reader.fields["general.type"].contents() == "adapter"
    assert reader.fields["adapter.type"].contents() == "lora"
    assert reader.fields["adapter.lora.alpha"].contents() == ALPHA
    assert reader.fields["general.architecture"].contents() == gguf.GGUFReader(base_gguf).fields[
        "general.architecture"].contents()
    names = {t.name for t in reader.tensors}
    assert "blk.0.attn_output.weight.lora_a" in names and "blk.1.attn_output.weight.lora_b" in names, names

    tokens = [1, 5, 9, 20, 33, 47, 60, 71]
    plain, adapted, merged = (_logits(base_gguf, tokens), _logits(base_gguf, tokens, lora_gguf),
                              _logits(merged_gguf, tokens))
    # The adapter changes the model far more than F16 rounding of A and B moves it off the merge.
    change, error = np.abs(merged - plain).max(), np.abs(adapted - merged).max()
    assert change > 0.05, change
    assert error < change / 20, (error, change)


@pytest.fixture(scope="module")
def base_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("lora-bases")
    return {kind: write_checkpoint(kind, tmp / kind) for kind in ("llama", "phi3")}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, base_dirs: dict[str, Path]) -> Iterator[Daemon]:
    d = start_daemon(tmp_path_factory.mktemp("convert-lora") / "home")
    for kind, src in base_dirs.items():
        status, body = d.request("POST", "/api/create", {"model": f"base-{kind}", "modelfile": f"FROM {src}\n",
                                                         "stream": False})
        assert status == 200, body
    yield d
    d.stop()


def _answer(d: Daemon, model: str) -> str:
    body = {"model": model, "prompt": "Hello world", "raw": True, "stream": False,
            "options": {"temperature": 0, "num_predict": 12, "seed": 1}}
    status, out = d.request("POST", "/api/generate", body)
    assert status == 200, out
    return str(out["response"])


def _create_with_adapter(d: Daemon, name: str, lora: Path, base: str = "base-llama") -> str:
    modelfile = lora.parent / f"Modelfile-{name}"
    modelfile.write_text(f"FROM {base}\nADAPTER {lora}\n")
    r = d.cli("create", name, "-f", str(modelfile), timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr + d.logs()[-3000:]
    assert "converting adapter" in r.stdout, r.stdout
    return r.stdout


def test_adapter_changes_the_answer_deterministically(daemon: Daemon, base_dirs: dict[str, Path], tmp_path: Path) -> None:
    base_dir = base_dirs["llama"]
    _create_with_adapter(daemon, "lora-llama", write_lora(base_dir, tmp_path / "lora", TARGETS["llama"]))
    from ollamalike.store import Store

    store = Store(daemon.models_dir)
    try:
        _, manifest, _ = store.get_manifest("lora-llama")
        media = [x["mediaType"] for x in manifest["layers"]]
        adapter = next(x for x in manifest["layers"] if x["mediaType"] == "application/vnd.ollama.image.adapter")
        assert gguf.GGUFReader(store.blob_path(adapter["digest"])).fields["adapter.type"].contents() == "lora"
    finally:
        store.close()
    assert media.count("application/vnd.ollama.image.model") == 1, media
    plain, adapted = _answer(daemon, "base-llama"), _answer(daemon, "lora-llama")
    assert adapted != plain, (plain, adapted)
    assert _answer(daemon, "lora-llama") == adapted
    # The same adapter directory converts to the same blob: the same manifest digest.
    _create_with_adapter(daemon, "lora-llama-again", tmp_path / "lora")
    status, tags = daemon.request("GET", "/api/tags", None)
    assert status == 200, tags
    digests = {m["name"]: m["digest"] for m in tags["models"]}
    assert digests["lora-llama:latest"] == digests["lora-llama-again:latest"], digests


def test_zero_b_adapter_answers_as_the_base(daemon: Daemon, base_dirs: dict[str, Path], tmp_path: Path) -> None:
    base_dir = base_dirs["llama"]
    _create_with_adapter(daemon, "lora-zero", write_lora(base_dir, tmp_path / "zero", TARGETS["llama"], zero_b=True))
    assert _answer(daemon, "lora-zero") == _answer(daemon, "base-llama")


def test_server_side_adapter_directory_converts(daemon: Daemon, base_dirs: dict[str, Path], tmp_path: Path) -> None:
    base_dir = base_dirs["llama"]
    lora = write_lora(base_dir, tmp_path / "lora", ["q_proj"], seed=3)
    status, body = daemon.request("POST", "/api/create", {
        "model": "lora-server", "modelfile": f"FROM base-llama\nADAPTER {lora}\n", "stream": False})
    assert status == 200 and body == {"status": "success"}, body
    assert _answer(daemon, "lora-server") != _answer(daemon, "base-llama")


def _no_config(d: Path) -> None:
    (d / "adapter_config.json").unlink()


def _rank_mismatch(d: Path) -> None:
    cfg = json.loads((d / "adapter_config.json").read_text())
    (d / "adapter_config.json").write_text(json.dumps({**cfg, "r": 8}))


def _unknown_target(d: Path) -> None:
    from safetensors.numpy import load_file

    tensors = dict(load_file(str(d / "adapter_model.safetensors")))
    tensors["base_model.model.model.layers.0.mlp.frob_proj.lora_A.weight"] = np.zeros((RANK, 64), np.float32)
    tensors["base_model.model.model.layers.0.mlp.frob_proj.lora_B.weight"] = np.zeros((64, RANK), np.float32)
    write_safetensors(d / "adapter_model.safetensors", tensors)
    cfg = json.loads((d / "adapter_config.json").read_text())
    (d / "adapter_config.json").write_text(json.dumps({**cfg, "target_modules": [*cfg["target_modules"], "frob_proj"]}))


def _unlisted_target(d: Path) -> None:
    cfg = json.loads((d / "adapter_config.json").read_text())
    (d / "adapter_config.json").write_text(json.dumps({**cfg, "target_modules": ["q_proj"]}))


def _ranks_differ(d: Path) -> None:
    from safetensors.numpy import load_file

    tensors = dict(load_file(str(d / "adapter_model.safetensors")))
    name = "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"
    tensors[name] = np.zeros((tensors[name].shape[0], RANK + 1), np.float32)
    write_safetensors(d / "adapter_model.safetensors", tensors)


def _missing_half(d: Path) -> None:
    from safetensors.numpy import load_file

    tensors = dict(load_file(str(d / "adapter_model.safetensors")))
    del tensors["base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight"]
    write_safetensors(d / "adapter_model.safetensors", tensors)


def _modules_to_save(d: Path) -> None:
    from safetensors.numpy import load_file

    tensors = dict(load_file(str(d / "adapter_model.safetensors")))
    base = _weights(Path(json.loads((d / "adapter_config.json").read_text())["base_model_name_or_path"]))
    tensors["base_model.model.lm_head.weight"] = base["lm_head.weight"] + 0.01
    tensors["base_model.model.model.embed_tokens.weight"] = base["model.embed_tokens.weight"] + 0.01
    write_safetensors(d / "adapter_model.safetensors", tensors)
    cfg = json.loads((d / "adapter_config.json").read_text())
    (d / "adapter_config.json").write_text(json.dumps({**cfg, "modules_to_save": ["lm_head", "embed_tokens"]}))


def _embedding_lora(d: Path) -> None:
    from safetensors.numpy import load_file

    tensors = dict(load_file(str(d / "adapter_model.safetensors")))
    tensors["base_model.model.model.embed_tokens.lora_embedding_A"] = np.zeros((RANK, 400), np.float32)
    tensors["base_model.model.model.embed_tokens.lora_embedding_B"] = np.zeros((64, RANK), np.float32)
    write_safetensors(d / "adapter_model.safetensors", tensors)


def _lora_bias(d: Path) -> None:
    cfg = json.loads((d / "adapter_config.json").read_text())
    (d / "adapter_config.json").write_text(json.dumps({**cfg, "lora_bias": True}))


BAD: dict[str, tuple[object, str, str]] = {
    # Whole replacement tensors: a GGUF LoRA adapter cannot carry them, the message says to merge.
    "modules-to-save": (_modules_to_save, "base-llama", "saves adapter_config.json's modules_to_save "
                        "(lm_head, model.embed_tokens) whole"),
    "embedding-lora": (_embedding_lora, "base-llama", "is a LoRA of an embedding layer"),
    "lora-bias": (_lora_bias, "base-llama", "lora_bias adapters cannot be converted"),
    "missing-config": (_no_config, "base-llama", "adapter_config.json not found"),
    "rank-mismatch": (_rank_mismatch, "base-llama", "has rank 4 but adapter_config.json says r = 8"),
    "ranks-differ": (_ranks_differ, "base-llama", "q_proj has rank 4 in lora_A but 5 in lora_B"),
    "unknown-target-module": (_unknown_target, "base-llama", "target module 'model.layers.0.mlp.frob_proj' is not a tensor"),
    "target-not-in-config": (_unlisted_target, "base-llama", "does not name (q_proj)"),
    "missing-lora-b": (_missing_half, "base-llama", "model.layers.1.self_attn.v_proj has lora_A but no lora_B"),
    # A Llama adapter (separate q/k/v) on a Phi-3 base (fused qkv): the architectures do not match.
    "base-architecture-mismatch": (lambda d: None, "base-phi3", "which the base model (phi3) does not have"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_adapter_is_a_400_and_changes_nothing(daemon: Daemon, base_dirs: dict[str, Path], tmp_path: Path, case: str) -> None:
    breaker, base, message = BAD[case]
    base_dir = base_dirs["llama"]
    lora = write_lora(base_dir, tmp_path / "lora", TARGETS["llama"])
    breaker(lora)  # type: ignore[operator]
    adapters = upload_dir(daemon, lora)
    before = store_snapshot(daemon.models_dir)
    status, body = daemon.request("POST", "/api/create", {"model": f"bad-{case}", "from": base, "adapters": adapters})
    assert_api_error(status, body, 400, message)
    assert store_snapshot(daemon.models_dir) == before


def test_adapter_on_a_split_base_answers_as_on_the_whole_base(daemon: Daemon, base_dirs: dict[str, Path],
                                                              tmp_path: Path) -> None:
    """The adapter is checked against every shard's tensors, and llama.cpp applies it to a split load."""
    from ollamalike.library.convert import convert
    from tests.test_convert_split import split_gguf

    whole = tmp_path / "base.gguf"
    convert(base_dirs["llama"], whole)
    shards = split_gguf(whole, tmp_path / "split", 3)
    lora = write_lora(base_dirs["llama"], tmp_path / "lora", ["q_proj", "down_proj"], seed=5)
    answers = []
    for name, source in (("lora-on-whole", whole), ("lora-on-split", shards[0])):
        status, body = daemon.request("POST", "/api/create", {
            "model": name, "modelfile": f"FROM {source}\nADAPTER {lora}\n", "stream": False})
        assert status == 200 and body == {"status": "success"}, body
        answers.append(_answer(daemon, name))
    assert answers[0] == answers[1]
    assert answers[0] != _answer(daemon, "base-llama")


def test_modules_to_save_named_but_not_saved_converts(base_dirs: dict[str, Path], tmp_path: Path) -> None:
    """PEFT configs often list modules_to_save (a classifier head) the saved file does not hold: nothing to refuse."""
    from ollamalike.library.convert import convert
    from ollamalike.library.convert.lora import LoraBase, prepare_lora

    base_gguf = tmp_path / "base.gguf"
    convert(base_dirs["llama"], base_gguf)
    lora = write_lora(base_dirs["llama"], tmp_path / "lora", ["q_proj"], config={"modules_to_save": ["score"]})
    prepared = prepare_lora(lora, LoraBase.from_gguf(base_gguf))
    assert {p.name for p in prepared.pairs} == {"blk.0.attn_q.weight", "blk.1.attn_q.weight"}
    _modules_to_save(lora)
    with pytest.raises(Exception, match="merge_and_unload"):
        prepare_lora(lora, LoraBase.from_gguf(base_gguf))
