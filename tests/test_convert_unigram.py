"""A SentencePiece Unigram tokenizer.json (log-probability pieces, ``▁`` word starts) converts to
llama.cpp's UGM (``t5``) tokenizer: the same token ids as the ``tokenizers`` library's Viterbi
segmentation, and ``tokenize(detokenize(ids)) == ids``; the model then generates through the daemon."""

from __future__ import annotations

from pathlib import Path

import gguf

from tests.daemon import start_daemon
from tests.hf_checkpoints import write_checkpoint
from tests.test_convert_decoders import model_blob

TEXTS = ["Hello world! The quick brown fox, 1234.", "A man is eating food.", "def add(a, b):\n    return a + b\n"]


def test_unigram_tokenizer_converts_and_round_trips(tmp_path: Path) -> None:
    from llama_cpp import Llama
    from tokenizers import Tokenizer

    src = write_checkpoint("llama", tmp_path / "unigram", tokenizer="unigram")
    hf = Tokenizer.from_file(str(src / "tokenizer.json"))
    d = start_daemon(tmp_path / "home")
    try:
        (tmp_path / "Modelfile").write_text(f"FROM {src}\n")
        r = d.cli("create", "tiny-unigram", "-f", str(tmp_path / "Modelfile"), timeout=300)
        assert r.returncode == 0, r.stdout + r.stderr
        path = model_blob(d, "tiny-unigram")
        fields = gguf.GGUFReader(path).fields
        assert fields["tokenizer.ggml.model"].contents() == "t5"
        scores = fields["tokenizer.ggml.scores"].contents()
        pieces = hf.get_vocab()
        assert scores[pieces["\u2581"]] < 0  # log-probabilities, not merge ranks
        assert fields["tokenizer.ggml.token_type"].contents()[hf.token_to_id("<unk>")] == int(gguf.TokenType.UNKNOWN)

        vocab = Llama(str(path), vocab_only=True, verbose=False)
        for text in TEXTS:
            ids = vocab.tokenize(text.encode(), add_bos=False, special=False)
            assert ids == hf.encode(text, add_special_tokens=False).ids, text
            back = vocab.detokenize(ids).decode()
            # llama.cpp, like SentencePiece, detokenizes a word start's "▁" as a space, the first one too.
            assert back.removeprefix(" ") == text
            assert vocab.tokenize(back.removeprefix(" ").encode(), add_bos=False, special=False) == ids
        assert vocab.tokenize(b"<|im_start|>user", add_bos=False, special=True)[0] == hf.token_to_id("<|im_start|>")
        del vocab

        body = {"model": "tiny-unigram", "prompt": "Hello", "raw": True, "stream": False,
                "options": {"temperature": 0, "num_predict": 6, "seed": 1}}
        status, first = d.request("POST", "/api/generate", body)
        assert status == 200 and first["done"] is True and first["prompt_eval_count"] >= 1, first
        status, second = d.request("POST", "/api/generate", body)
        assert status == 200 and second["response"] == first["response"], (first, second)
    finally:
        d.stop()
