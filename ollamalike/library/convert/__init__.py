"""Converting a Hugging Face safetensors directory to a GGUF model (``FROM <directory>`` in create).

``convert(root, out_path, out_type="F16", progress=None) -> Converted`` checks the directory and
writes one GGUF; any problem with the input is a ``BadRequest`` naming it and nothing is written
to ``out_path`` before all checks pass. Modules: ``source`` (the directory and safetensors files),
``arch`` (per-architecture hyperparameters and tensor fix-ups), ``vocab`` (the tokenizer),
``writer`` (the conversion). No torch and no transformers: ``safetensors``' numpy API,
``tokenizers`` and the ``gguf`` package.
"""

from ollamalike.library.convert.arch import ARCHITECTURES
from ollamalike.library.convert.writer import OUT_TYPES, Converted, convert

__all__ = ["ARCHITECTURES", "OUT_TYPES", "Converted", "convert"]
