"""Generated tiny ``bert`` and ``nomic-bert`` checkpoints: converted, loaded, embedded through the daemon."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import gguf
import numpy as np
import pytest

from tests.daemon import Daemon, start_daemon
from tests.hf_checkpoints import HIDDEN, write_encoder
from tests.test_convert_decoders import create_from_dir, model_blob


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    d = start_daemon(tmp_path_factory.mktemp("convert-encoders") / "home")
    yield d
    d.stop()


@pytest.mark.parametrize(("kind", "arch"), [("bert", "bert"), ("nomic-bert", "nomic-bert")])
def test_tiny_encoder_converts_and_embeds(daemon: Daemon, tmp_path: Path, kind: str, arch: str) -> None:
    from llama_cpp import Llama
    from tokenizers import Tokenizer

    src = write_encoder(kind, tmp_path / kind)
    create_from_dir(daemon, f"tiny-{kind}", src)
    path = model_blob(daemon, f"tiny-{kind}")
    reader = gguf.GGUFReader(path)
    fields = reader.fields
    assert fields["general.architecture"].contents() == arch
    assert fields[f"{arch}.pooling_type"].contents() == 1
    assert fields[f"{arch}.attention.causal"].contents() is False
    names = {t.name for t in reader.tensors}
    assert "blk.1.ffn_down.weight" in names and not any("pooler" in n or "position_ids" in n for n in names)
    if arch == "nomic-bert":
        assert {"blk.0.attn_qkv.weight", "blk.0.ffn_gate.weight", "token_embd_norm.weight"} <= names
        assert fields["nomic-bert.context_length"].contents() == 2048

    hf = Tokenizer.from_file(str(src / "tokenizer.json"))
    text = "the quick brown fox eats food"
    vocab = Llama(str(path), vocab_only=True, verbose=False)
    assert vocab.tokenize(text.encode(), add_bos=True, special=False) == hf.encode(text).ids
    del vocab

    status, body = daemon.request("POST", "/api/embed", {"model": f"tiny-{kind}", "input": [text, "a man rides a horse"]})
    assert status == 200, body
    vectors = np.array(body["embeddings"])
    assert vectors.shape == (2, HIDDEN)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-3)
    assert not np.allclose(vectors[0], vectors[1])
