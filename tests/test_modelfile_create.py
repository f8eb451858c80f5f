"""Issue 15's Modelfile surface through create, resolve and show, over a real store and real GGUFs:
DRAFT, RENDERER, PARSER, REQUIRES, repeated FROM, SYSTEM "", unknown PARAMETERs refused at create,
the config blob's fields (read back from pulled models too), /api/show's new fields and /api/tags
capabilities. The HTTP, official-client, CLI and registry paths are in test_modelfile_e2e.py.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import pytest

from ollamalike import OLLAMA_VERSION, __version__, library
from ollamalike.errors import BadRequest, ModelNotFound, OllamalikeError
from ollamalike.gguf_info import read_gguf_info
from ollamalike.library import LOCAL, REMOTE, CreateRequest, create_model
from ollamalike.library import create as create_mod
from ollamalike.library import models as models_mod
from ollamalike.store import Store
from ollamalike.store.manifest import MEDIA_DRAFT, MEDIA_MODEL, MEDIA_PROJECTOR, MEDIA_SYSTEM, go_json
from tests.gguf_bytes import save
from tests.helpers import store_snapshot


@pytest.fixture(scope="module")
def extra_ggufs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A LoRA adapter and a vision projector, both tiny."""
    root = tmp_path_factory.mktemp("issue15-ggufs")
    adapter = root / "lora.gguf"
    w = gguf.GGUFWriter(str(adapter), "llama")
    w.add_string("general.type", "adapter")
    w.add_string("adapter.type", "lora")
    w.add_tensor("blk.0.attn_q.weight.lora_a", np.full((4, 64), 0.01, dtype=np.float32))
    save(w)
    projector = root / "mmproj.gguf"
    w = gguf.GGUFWriter(str(projector), "clip")
    w.add_string("general.type", "projector")
    w.add_bool("clip.has_vision_encoder", True)
    w.add_tensor("v.patch_embd.weight", np.full((8, 8), 0.5, dtype=np.float32))
    save(w)
    return {"adapter": adapter, "projector": projector}


@pytest.fixture
def store(models_dir: Path) -> Store:
    return Store(models_dir)


async def create(store: Store, name: str, body: dict[str, Any], access: library.Access = LOCAL) -> list[dict[str, Any]]:
    return [s async for s in create_model(store, name, CreateRequest.from_json(body), access)]


def upload(store: Store, path: Path) -> str:
    return store.add_blob_file(path)[0]


def config_of(store: Store, name: str) -> dict[str, Any]:
    manifest = store.get_manifest(name)[1]
    config: dict[str, Any] = json.loads(store.read_blob(manifest["config"]["digest"]))
    return config


def layers_of(store: Store, name: str) -> list[str]:
    return [layer["mediaType"] for layer in store.get_manifest(name)[1]["layers"]]


async def rebuild_from_show(store: Store, name: str, again: str) -> str:
    """``show --modelfile``'s text, created again; returns the text."""
    text = library.show_model(store, name)["modelfile"]
    assert isinstance(text, str)
    await create(store, again, {"modelfile": text})
    return text


# --- RENDERER, PARSER, REQUIRES -----------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"renderer": "qwen3-coder", "parser": "qwen3-coder", "requires": "0.1.0"},
        {"modelfile": "FROM {model}\nRENDERER qwen3-coder\nPARSER qwen3-coder\nREQUIRES v0.1.0"},
    ],
    ids=["fields", "modelfile"],
)
async def test_renderer_parser_requires_are_stored_resolved_and_shown(
    store: Store, tiny_chat_gguf: Path, body: dict[str, Any]
) -> None:
    if "modelfile" in body:
        body = {"modelfile": body["modelfile"].format(model=tiny_chat_gguf)}
    else:
        body = {**body, "files": {"m.gguf": upload(store, tiny_chat_gguf)}}
    await create(store, "rp", body)
    config = config_of(store, "rp")
    # Ollama's ConfigV2 field names, next to the details it always had.
    assert (config["renderer"], config["parser"], config["requires"]) == ("qwen3-coder", "qwen3-coder", "0.1.0")
    assert config["model_format"] == "gguf" and config["model_family"] == "llama"
    resolved = library.resolve_model(store, "rp")
    assert (resolved.renderer, resolved.parser, resolved.requires) == ("qwen3-coder", "qwen3-coder", "0.1.0")
    shown = library.show_model(store, "rp")
    assert (shown["renderer"], shown["parser"], shown["requires"]) == ("qwen3-coder", "qwen3-coder", "0.1.0")
    text = await rebuild_from_show(store, "rp", "rp-again")
    assert "RENDERER qwen3-coder\nPARSER qwen3-coder\nREQUIRES 0.1.0\n" in text
    assert store.get_manifest("rp-again")[0] == store.get_manifest("rp")[0]


async def test_models_without_the_new_fields_keep_their_config_and_show(store: Store, tiny_chat_gguf: Path) -> None:
    await create(store, "plain", {"files": {"m": upload(store, tiny_chat_gguf)}})
    config = config_of(store, "plain")
    assert not {"renderer", "parser", "requires", "draft"} & set(config)
    shown = library.show_model(store, "plain")
    assert not {"renderer", "parser", "requires", "tensors"} & set(shown)
    resolved = library.resolve_model(store, "plain")
    assert (resolved.renderer, resolved.parser, resolved.requires, resolved.draft_path) == (None, None, None, None)


async def test_a_child_inherits_renderer_parser_requires_and_may_override(store: Store, tiny_chat_gguf: Path) -> None:
    blob = upload(store, tiny_chat_gguf)
    await create(store, "base", {"files": {"m": blob}, "renderer": "glm-4.7", "parser": "harmony", "requires": "0.0.5"})
    await create(store, "child", {"from": "base", "system": "s"})
    assert library.resolve_model(store, "child").parser == "harmony"
    assert config_of(store, "child")["requires"] == "0.0.5"
    await create(store, "other", {"modelfile": "FROM base\nPARSER qwen3-coder"})
    resolved = library.resolve_model(store, "other")
    assert (resolved.renderer, resolved.parser) == ("glm-4.7", "qwen3-coder")


# REQUIRES names an Ollama version: it is compared with the one ollamalike is compatible with.
@pytest.mark.parametrize("requires", ["0.1.0", "0.12.0", "0.21", "0", "v0.12.0", "0.21.3", "v0.21.3", "0.21.3-rc1",
                                      "0.21.3+build.7", "0.21.2"])
async def test_requires_up_to_the_compatible_ollama_version_is_accepted(store: Store, tiny_chat_gguf: Path,
                                                                        requires: str) -> None:
    assert OLLAMA_VERSION == "0.21.3"  # the table is written against it
    await create(store, "ok", {"files": {"m": upload(store, tiny_chat_gguf)}, "requires": requires})
    assert config_of(store, "ok")["requires"] == requires.removeprefix("v")


# --- DRAFT ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["path", "name", "draft_files", "draft field"])
async def test_draft_is_its_own_layer(store: Store, tiny_chat_gguf: Path, tiny_chat_q4_gguf: Path, how: str) -> None:
    model = upload(store, tiny_chat_gguf)
    draft_blob = upload(store, tiny_chat_q4_gguf)
    await create(store, "small", {"files": {"d": draft_blob}})
    bodies = {
        "path": {"modelfile": f"FROM {tiny_chat_gguf}\nDRAFT {tiny_chat_q4_gguf}"},
        "name": {"modelfile": f"FROM {tiny_chat_gguf}\nDRAFT small"},
        "draft_files": {"files": {"m": model}, "draft_files": {"draft.gguf": draft_blob}},
        "draft field": {"files": {"m": model}, "draft": "small"},
    }
    await create(store, "spec", bodies[how])
    manifest = store.get_manifest("spec")[1]
    assert [(x["mediaType"], x["digest"]) for x in manifest["layers"]] == [(MEDIA_MODEL, model), (MEDIA_DRAFT, draft_blob)]
    assert config_of(store, "spec")["draft"] == {"model_format": "gguf", "architecture": "llama"}
    resolved = library.resolve_model(store, "spec")
    assert resolved.draft_path == store.blob_path(draft_blob)
    assert resolved.model_path == store.blob_path(model)  # the draft is not the model
    text = await rebuild_from_show(store, "spec", "spec-again")
    assert f"DRAFT {store.blob_path(draft_blob)}\n" in text
    assert store.get_manifest("spec-again")[0] == store.get_manifest("spec")[0]


async def test_draft_is_inherited_and_replaced(
    store: Store, tiny_chat_gguf: Path, tiny_chat_q4_gguf: Path, tmp_path: Path
) -> None:
    model, small = upload(store, tiny_chat_gguf), upload(store, tiny_chat_q4_gguf)
    await create(store, "spec", {"files": {"m": model}, "draft_files": {"d.gguf": small}})
    await create(store, "child", {"from": "spec", "system": "s"})
    assert layers_of(store, "child") == [MEDIA_MODEL, MEDIA_DRAFT, MEDIA_SYSTEM]
    assert config_of(store, "child")["draft"]["architecture"] == "llama"
    from ollamalike.testmodels import write_tiny_llama

    other = upload(store, write_tiny_llama(tmp_path / "other-draft.gguf", seed=7))
    await create(store, "swapped", {"from": "spec", "draft_files": {"d.gguf": other}})
    drafts = [x["digest"] for x in store.get_manifest("swapped")[1]["layers"] if x["mediaType"] == MEDIA_DRAFT]
    assert drafts == [other]
    text = await rebuild_from_show(store, "swapped", "swapped-again")
    assert store.get_manifest("swapped-again")[0] == store.get_manifest("swapped")[0] and "\nDRAFT " in text


async def test_draft_quantize_quantizes_only_the_draft(store: Store, tiny_chat_gguf: Path, tmp_path: Path) -> None:
    draft = tmp_path / "draft-f32.gguf"
    draft.write_bytes(tiny_chat_gguf.read_bytes())  # Ollama refuses DRAFT and FROM naming one file
    statuses = await create(store, "dq", {"modelfile": f"FROM {tiny_chat_gguf}\nDRAFT {draft}", "draft_quantize": "q8_0"})
    assert {"status": "quantizing F32 draft model to Q8_0"} in statuses
    resolved = library.resolve_model(store, "dq")
    assert resolved.info.file_type == "F32"
    assert resolved.draft_path is not None and read_gguf_info(resolved.draft_path).file_type == "Q8_0"


# --- repeated FROM, SYSTEM "" ----------------------------------------------------------------------


async def test_repeated_from_files_merge_model_and_projector(
    store: Store, tiny_chat_gguf: Path, extra_ggufs: dict[str, Path]
) -> None:
    await create(store, "vis", {"modelfile": f"FROM {extra_ggufs['projector']}\nFROM {tiny_chat_gguf}"})
    assert layers_of(store, "vis") == [MEDIA_MODEL, MEDIA_PROJECTOR]
    assert "vision" in library.resolve_model(store, "vis").capabilities
    # show writes the projector as a second FROM, as Ollama does, and that rebuilds the same model.
    text = await rebuild_from_show(store, "vis", "vis-again")
    assert text.count("\nFROM ") == 2
    assert store.get_manifest("vis-again")[0] == store.get_manifest("vis")[0]


async def test_repeated_from_names_last_one_wins(
    store: Store, tiny_chat_gguf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(create_mod, "_missing_base", _registry_says_not_found)
    await create(store, "second", {"files": {"m": upload(store, tiny_chat_gguf)}, "system": "from second"})
    await create(store, "x", {"modelfile": "FROM ghost-that-is-not-pulled\nFROM second"})
    assert library.resolve_model(store, "x").system == "from second"


@pytest.mark.parametrize(
    ("modelfile", "system", "layers"),
    [
        ('FROM base\nSYSTEM ""', None, [MEDIA_MODEL]),  # clears the inherited one
        ('FROM base\nSYSTEM """"""', None, [MEDIA_MODEL]),
        ("FROM base\nSYSTEM new", "new", [MEDIA_MODEL, MEDIA_SYSTEM]),
        ("FROM base\nPARAMETER top_k 3", "inherited", [MEDIA_MODEL, MEDIA_SYSTEM, "application/vnd.ollama.image.params"]),
    ],
)
async def test_empty_quoted_system_clears_the_inherited_one(
    store: Store, tiny_chat_gguf: Path, modelfile: str, system: str | None, layers: list[str]
) -> None:
    await create(store, "base", {"files": {"m": upload(store, tiny_chat_gguf)}, "system": "inherited"})
    await create(store, "child", {"modelfile": modelfile})
    assert library.resolve_model(store, "child").system == system
    assert layers_of(store, "child") == layers


async def test_clear_system_field_is_what_the_cli_sends_for_system_empty(store: Store, tiny_chat_gguf: Path) -> None:
    await create(store, "base", {"files": {"m": upload(store, tiny_chat_gguf)}, "system": "inherited"})
    await create(store, "kept", {"from": "base", "system": ""})  # Ollama's API: "" is "not given"
    assert library.resolve_model(store, "kept").system == "inherited"
    await create(store, "cleared", {"from": "base", "clear_system": True})
    assert library.resolve_model(store, "cleared").system is None


# --- bad input: a clear error and an unchanged store ------------------------------------------------


async def _registry_says_not_found(store: Store, name: str) -> AsyncIterator[dict[str, Any]]:
    """No network in tests: the pull of a FROM model that is not local answers as a registry would."""
    raise ModelNotFound(name)
    yield {}


BAD: list[tuple[str, Any, str]] = [
    ("requires not semver", lambda p: {"files": {"m": p["model"]}, "requires": "0.x"},
     'requires must be a valid semver (e.g. 0.14.0), got "0.x"'),
    ("requires leading zero", lambda p: {"files": {"m": p["model"]}, "requires": "0.01.0"}, "valid semver"),
    ("requires not a string", lambda p: {"files": {"m": p["model"]}, "requires": 14}, "'requires': expected a string"),
    ("requires newer", lambda p: {"files": {"m": p["model"]}, "requires": "0.22.0"},
     f"this model requires Ollama version 0.22.0 or newer, but ollamalike {__version__} is compatible with Ollama "
     f"{OLLAMA_VERSION}"),
    ("requires newer patch", lambda p: {"files": {"m": p["model"]}, "requires": "0.21.4"},
     "requires Ollama version 0.21.4 or newer"),
    ("requires newer pre-release", lambda p: {"files": {"m": p["model"]}, "requires": "0.21.4-rc0"},
     "requires Ollama version 0.21.4-rc0 or newer"),
    ("requires newer minor", lambda p: {"files": {"m": p["model"]}, "requires": "v0.22"}, "version 0.22 or newer"),
    ("REQUIRES newer", lambda p: {"modelfile": f"FROM {p['path']}\nREQUIRES v2.0"}, "version 2.0 or newer"),
    ("REQUIRES bad", lambda p: {"modelfile": f"FROM {p['path']}\nREQUIRES 1.2.3.4"}, "line 2: requires must be"),
    ("renderer not a name", lambda p: {"files": {"m": p["model"]}, "renderer": "a b"}, 'invalid renderer name "a"'),
    ("renderer unknown", lambda p: {"files": {"m": p["model"]}, "renderer": "harmony"},
     'unknown renderer "harmony": known renderers are cogito, cohere, deepseek3.1, glm-4.7, '),
    ("RENDERER unknown", lambda p: {"modelfile": f"FROM {p['path']}\nRENDERER qwen9"}, 'unknown renderer "qwen9"'),
    ("parser not a name", lambda p: {"files": {"m": p["model"]}, "parser": "../x"}, "invalid parser name"),
    ("PARSER not a name", lambda p: {"modelfile": f"FROM {p['path']}\nPARSER <x>"}, "line 2: invalid parser name"),
    ("unknown PARAMETER", lambda p: {"modelfile": f"FROM {p['path']}\nPARAMETER temprature 0.5"},
     'unknown parameter "temprature"'),
    ("unknown parameter field", lambda p: {"files": {"m": p["model"]}, "parameters": {"draft_num_predict": 4, "nope": 1}},
     'unknown parameter "nope"'),
    ("MESSAGE role case", lambda p: {"modelfile": f"FROM {p['path']}\nMESSAGE User hi"}, "message role must be"),
    ("DRAFT missing model", lambda p: {"modelfile": f"FROM {p['path']}\nDRAFT ghost:1b"},
     "draft model 'ghost:1b' not found"),
    ("draft missing model", lambda p: {"files": {"m": p["model"]}, "draft": "ghost"}, "draft model 'ghost' not found"),
    ("DRAFT missing path", lambda p: {"modelfile": f"FROM {p['path']}\nDRAFT ./nope.gguf", "path": f"{p['dir']}/Modelfile"},
     "cannot use file"),
    ("draft blob missing", lambda p: {"files": {"m": p["model"]}, "draft_files": {"d.gguf": "sha256:" + "1" * 64}},
     "not found"),
    ("draft bad file name", lambda p: {"files": {"m": p["model"]}, "draft_files": {"../d.gguf": p["model"]}},
     "invalid file name in 'draft_files'"),
    ("two draft files", lambda p: {"files": {"m": p["model"]}, "draft_files": {"a": p["model"], "b": p["q4"]}},
     "exactly one draft model GGUF"),
    ("draft and draft_files", lambda p: {"files": {"m": p["model"]}, "draft": "m", "draft_files": {"a": p["q4"]}},
     "either 'draft' or 'draft_files'"),
    ("draft adapter", lambda p: {"files": {"m": p["model"]}, "draft_files": {"a": p["adapter"]}}, "not a LoRA adapter"),
    ("draft projector", lambda p: {"files": {"m": p["model"]}, "draft_files": {"a": p["projector"]}}, "not a clip model"),
    ("draft_quantize without draft", lambda p: {"files": {"m": p["model"]}, "draft_quantize": "q8_0"},
     "--draft-quantize requires a DRAFT model"),
    ("draft_quantize quantized", lambda p: {"files": {"m": p["model"]}, "draft_files": {"a": p["q4"]}, "draft_quantize": "q8_0"},
     "draft quantization requires an unquantized draft model, got Q4_0"),
    ("draft_quantize type", lambda p: {"files": {"m": p["model"]}, "draft_files": {"a": p["model"]}, "draft_quantize": "q9"},
     "unsupported quantization type"),
    ("DRAFT same file as FROM", lambda p: {"modelfile": f"FROM {p['path']}\nDRAFT {p['path']}"},
     "DRAFT must not reference the same local path as FROM"),
    ("DRAFT same file through a symlink", lambda p: {"modelfile": f"FROM {p['path']}\nDRAFT {p['link']}"},
     "DRAFT must not reference the same local path as FROM"),
    ("draft is the model", lambda p: {"files": {"m": p["model"]}, "draft_files": {"d": p["model"]}},
     "the draft model is the model itself"),
    ("draft is the FROM model", lambda p: {"from": "m", "draft": "m"}, "the draft model is the model itself"),
    ("FROM name and file", lambda p: {"modelfile": f"FROM m\nFROM {p['path']}"}, "name both a model (m) and files"),
    ("clear_system and system", lambda p: {"from": "m", "clear_system": True, "system": "s"}, "'clear_system', not both"),
    ("clear_system type", lambda p: {"from": "m", "clear_system": "yes"}, "'clear_system': expected a boolean"),
]


@pytest.mark.parametrize(("label", "make", "contains"), BAD, ids=[b[0] for b in BAD])
async def test_bad_create_is_a_clear_400_and_changes_nothing(
    store: Store,
    models_dir: Path,
    tmp_path: Path,
    tiny_chat_gguf: Path,
    tiny_chat_q4_gguf: Path,
    extra_ggufs: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
    label: str,
    make: Any,
    contains: str,
) -> None:
    monkeypatch.setattr(create_mod, "_missing_base", _registry_says_not_found)
    prepared = {
        "model": upload(store, tiny_chat_gguf),
        "q4": upload(store, tiny_chat_q4_gguf),
        "adapter": upload(store, extra_ggufs["adapter"]),
        "projector": upload(store, extra_ggufs["projector"]),
        "path": str(tiny_chat_gguf),
        "dir": str(tmp_path),
        "link": str(tmp_path / "link.gguf"),
    }
    (tmp_path / "link.gguf").symlink_to(tiny_chat_gguf)
    await create(store, "m", {"files": {"a": prepared["model"]}})
    before = store_snapshot(models_dir)
    with pytest.raises(OllamalikeError) as info:
        await create(store, "x", make(prepared))
    assert isinstance(info.value, BadRequest) and info.value.status == 400
    assert contains in info.value.message
    assert store_snapshot(models_dir) == before


async def test_remote_client_may_not_name_a_draft_file_on_the_server(
    store: Store, tiny_chat_gguf: Path, tiny_chat_q4_gguf: Path
) -> None:
    await create(store, "m", {"files": {"a": upload(store, tiny_chat_gguf)}})
    await create(store, "d", {"files": {"a": upload(store, tiny_chat_q4_gguf)}})
    with pytest.raises(BadRequest, match="only accepted from a client on the server's own machine"):
        await create(store, "x", {"modelfile": f"FROM m\nDRAFT {tiny_chat_gguf}"}, access=REMOTE)
    # A model name is fine from anywhere.
    await create(store, "x", {"modelfile": "FROM m\nDRAFT d"}, access=REMOTE)
    assert layers_of(store, "x") == [MEDIA_MODEL, MEDIA_DRAFT]


# --- everything at once through show --modelfile ---------------------------------------------------


async def test_show_modelfile_round_trip_with_every_instruction(
    store: Store, tiny_chat_gguf: Path, tiny_chat_q4_gguf: Path, extra_ggufs: dict[str, Path]
) -> None:
    await create(
        store,
        "full",
        {
            "modelfile": (
                f"FROM {tiny_chat_gguf}\nFROM {extra_ggufs['projector']}\nADAPTER {extra_ggufs['adapter']}\n"
                f"DRAFT {tiny_chat_q4_gguf}\nRENDERER glm-4.7\nPARSER glm-4.7\nREQUIRES 0.0.1\n"
                'SYSTEM "be brief"\nPARAMETER stop <x>\nPARAMETER temperature 0.3\nPARAMETER draft_num_predict 8\n'
                "MESSAGE user hi\nMESSAGE assistant hello\nLICENSE MIT\n"
            )
        },
    )
    text = await rebuild_from_show(store, "full", "full-again")
    assert store.get_manifest("full-again")[0] == store.get_manifest("full")[0]
    # ... and once more from the rebuilt one: show is a fixed point (past the header naming the tag).
    again = library.show_model(store, "full-again")["modelfile"]
    assert isinstance(again, str) and again.split("\n\n", 1)[1] == text.split("\n\n", 1)[1]
    for line in ("DRAFT ", "RENDERER glm-4.7", "PARSER glm-4.7", "REQUIRES 0.0.1", "ADAPTER ", "MESSAGE user hi"):
        assert f"\n{line}" in text
    assert text.count("\nFROM ") == 2
    assert library.resolve_model(store, "full").parameters["draft_num_predict"] == 8


# --- /api/show tensors, /api/tags capabilities, config blobs from elsewhere ---------------------------


async def test_verbose_show_lists_tensors(store: Store, tiny_chat_gguf: Path) -> None:
    await create(store, "t", {"files": {"m": upload(store, tiny_chat_gguf)}})
    assert "tensors" not in library.show_model(store, "t")
    tensors = library.show_model(store, "t", verbose=True)["tensors"]
    reader = gguf.GGUFReader(str(tiny_chat_gguf))
    expected = [{"name": t.name, "type": t.tensor_type.name, "shape": [int(n) for n in t.shape]} for t in reader.tensors]
    assert tensors == expected
    assert any(t["name"] == "token_embd.weight" for t in expected)


async def test_tags_carry_capabilities(
    store: Store, tiny_chat_gguf: Path, tiny_embed_gguf: Path, extra_ggufs: dict[str, Path]
) -> None:
    await create(store, "chat", {"files": {"m": upload(store, tiny_chat_gguf)}})
    await create(store, "emb", {"files": {"e": upload(store, tiny_embed_gguf)}})
    await create(store, "vis", {"modelfile": f"FROM {tiny_chat_gguf}\nFROM {extra_ggufs['projector']}"})
    listed = {m["name"]: m for m in library.list_models(store)}
    for name in ("chat:latest", "emb:latest", "vis:latest"):
        assert listed[name]["capabilities"] == library.show_model(store, name)["capabilities"]
    assert listed["emb:latest"]["capabilities"] == ["embedding"]
    assert "vision" in listed["vis:latest"]["capabilities"]
    assert "completion" in listed["chat:latest"]["capabilities"]


async def test_tags_list_a_model_that_cannot_be_resolved_without_capabilities(store: Store, tiny_chat_gguf: Path) -> None:
    await create(store, "good", {"files": {"m": upload(store, tiny_chat_gguf)}})
    junk, _ = store.add_blob_bytes(b"not a GGUF at all" * 4)
    _put_with_config(store, "broken", junk, {"model_format": "gguf"})
    listed = {m["name"]: m for m in library.list_models(store)}
    assert "capabilities" not in listed["broken:latest"] and listed["broken:latest"]["size"] > 0
    assert listed["good:latest"]["capabilities"][0] == "completion"


def _put_with_config(store: Store, name: str, model_digest: str, config: object) -> None:
    """A manifest whose config blob another tool wrote (a pulled model's)."""
    cfg, size = store.add_blob_bytes(go_json(config))
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": cfg, "size": size},
        "layers": [{"mediaType": MEDIA_MODEL, "digest": model_digest, "size": store.blob_size(model_digest)}],
    }
    from ollamalike.names import ModelName

    store.put_manifest(ModelName.parse(name), go_json(manifest), "")


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"model_format": "gguf", "renderer": "qwen3-coder", "parser": "qwen3-coder", "requires": "0.12.1"},
         ("qwen3-coder", "qwen3-coder", "0.12.1", [])),
        ({"parser": "harmony", "capabilities": ["tools", "thinking", 5]}, (None, "harmony", None, ["tools", "thinking"])),
        ({"renderer": 7, "parser": "no spaces allowed", "requires": "latest"}, (None, None, None, [])),
        ({"requires": "v0.13.0"}, (None, None, "0.13.0", [])),
        ({"renderer": "", "parser": None, "capabilities": "tools"}, (None, None, None, [])),
    ],
)
async def test_config_blob_of_another_tool_is_honoured_or_ignored(
    store: Store, tiny_chat_gguf: Path, config: object, expected: tuple[Any, ...]
) -> None:
    _put_with_config(store, "pulled", upload(store, tiny_chat_gguf), config)
    models_mod._resolved.clear()
    resolved = library.resolve_model(store, "pulled")
    renderer, parser, requires, declared = expected
    assert (resolved.renderer, resolved.parser, resolved.requires) == (renderer, parser, requires)
    assert resolved.capabilities[0] == "completion"
    for cap in declared:
        assert cap in resolved.capabilities
    # A pulled model's config survives a create FROM it (and REQUIRES of a base is not enforced here).
    await create(store, "derived", {"from": "pulled", "system": "s"})
    derived = library.resolve_model(store, "derived")
    assert (derived.renderer, derived.parser, derived.requires) == (renderer, parser, requires)
    for cap in declared:
        assert cap in derived.capabilities


def test_show_modelfile_round_trip_property(models_dir: Path, tiny_chat_gguf: Path) -> None:
    """Any renderer/parser names, accepted versions and system prompt (SYSTEM "" too): show rebuilds the digest."""
    import asyncio

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    store = Store(models_dir)
    from ollamalike.template.renderers import OLLAMA_ONLY, RENDERERS

    name = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", fullmatch=True)
    # Create refuses a renderer that is neither ours nor Ollama's; parsers are any name.
    renderer_name = st.sampled_from(sorted(RENDERERS) + sorted(OLLAMA_ONLY))
    version = st.sampled_from(["0", "0.1", "0.0.1", "v0.1.0", "0.1.0-rc.1", "0.0.9+sha.1"])
    system = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=30)

    @settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(renderer=st.none() | renderer_name, parser=st.none() | name, requires=st.none() | version, system=st.none() | system)
    def check(renderer: str | None, parser: str | None, requires: str | None, system: str | None) -> None:
        from ollamalike import modelfile

        mf = modelfile.Modelfile(from_=str(tiny_chat_gguf), renderer=renderer, parser=parser,
                                 requires=modelfile.check_requires(requires) if requires else None, system=system)

        async def run() -> None:
            await create(store, "orig", {"modelfile": modelfile.format(mf)})
            resolved = library.resolve_model(store, "orig")
            assert (resolved.renderer, resolved.parser, resolved.requires) == (renderer, parser, mf.requires)
            assert resolved.system == (system or None)
            await rebuild_from_show(store, "orig", "again")
            assert store.get_manifest("again")[0] == store.get_manifest("orig")[0]

        asyncio.run(run())

    check()


async def test_an_inherited_renderer_is_kept_even_when_it_is_not_known_here(store: Store, tiny_chat_gguf: Path) -> None:
    """A pulled model may name a renderer of a newer Ollama: a model built FROM it keeps the name (only a
    RENDERER given anew is checked), and renders with its template."""
    _put_with_config(store, "pulled", upload(store, tiny_chat_gguf), {"model_format": "gguf", "renderer": "brand-new"})
    await create(store, "child", {"from": "pulled", "system": "s"})
    assert config_of(store, "child")["renderer"] == "brand-new"
    with pytest.raises(BadRequest, match='unknown renderer "brand-new"'):
        await create(store, "other", {"from": "pulled", "renderer": "brand-new"})


async def test_a_pulled_models_renderer_renders_its_prompts(store: Store, tiny_chat_gguf: Path) -> None:
    from ollamalike.template import render_chat

    _put_with_config(store, "pulled-glm", upload(store, tiny_chat_gguf), {"model_format": "gguf", "renderer": "glm-4.7"})
    resolved = library.resolve_model(store, "pulled-glm")
    assert render_chat(resolved, [{"role": "user", "content": "Hi"}]) == "[gMASK]<sop><|user|>Hi<|assistant|><think>"
