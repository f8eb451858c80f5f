"""Converting a Hugging Face safetensors directory to a GGUF model (``FROM <directory>`` in create).

``prepare(root, out_type="F16", trusted=False) -> Prepared`` checks the directory (any problem with
the input is a ``BadRequest`` naming it; nothing is written), ``Prepared.write(out_path, progress)``
writes the GGUF; ``convert(root, out_path, ...)`` does both. Modules: ``source`` (the directory and safetensors files),
``arch`` (per-architecture hyperparameters and tensor fix-ups), ``vocab`` (the tokenizer), ``spm``
(a SentencePiece-only tokenizer.model),
``writer`` (the conversion). No torch and no transformers: ``safetensors``' numpy API,
``tokenizers`` and the ``gguf`` package.
"""

from ollamalike.library.convert.arch import ARCHITECTURES
from ollamalike.library.convert.writer import OUT_TYPES, Converted, Prepared, convert, prepare

__all__ = ["ARCHITECTURES", "OUT_TYPES", "Converted", "Prepared", "convert", "prepare"]
