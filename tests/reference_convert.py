"""Run llama.cpp's own ``convert_hf_to_gguf.py`` (vendored in the llama-cpp-python sdist) with the
reference interpreter (torch + transformers; never the package's). Used by test_convert_reference.

``python reference_convert.py <llama.cpp dir> <pre-tokenizer|hf|-> <convert_hf_to_gguf args...>``

Two stand-ins, because test checkpoints are generated: llama.cpp recognises a BPE pre-tokenizer by
hashing the tokenizer's output on a fixed text, and a tokenizer trained for a test has no known
hash, so ``<pre-tokenizer>`` names the one it was built like (its split regex is llama-bpe's or
qwen2's); and Gemma's and Phi-3's converters read SentencePiece's ``tokenizer.model``, which a
generated checkpoint does not have, so ``hf`` makes them read tokenizer.json the way the Llama
converter does when tokenizer.model is missing (``_set_vocab_llama_hf``). Nothing else is changed:
hyperparameters and tensors are llama.cpp's own code.
"""

import runpy
import sys
from pathlib import Path

root, pre, *args = sys.argv[1:]
sys.path.insert(0, str(Path(root) / "gguf-py"))
sys.path.insert(0, root)
if pre == "hf":
    from conversion.base import TextModel
    from conversion.gemma import Gemma3Model
    from conversion.phi import Phi3MiniModel

    TextModel._set_vocab_sentencepiece = lambda self, add_to_gguf=True: self._set_vocab_llama_hf()  # type: ignore[method-assign]
    for cls in (Gemma3Model, Phi3MiniModel):
        cls.set_vocab = lambda self: self._set_vocab_llama_hf()  # type: ignore[method-assign]
elif pre != "-":
    from conversion.base import TextModel

    TextModel.get_vocab_base_pre = lambda self, tokenizer: pre  # type: ignore[method-assign]
sys.argv = [str(Path(root) / "convert_hf_to_gguf.py"), *args]
runpy.run_path(sys.argv[0], run_name="__main__")
