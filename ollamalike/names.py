"""Parsing, validating and formatting model names, with Ollama's rules and defaults.

A name is ``[host/][namespace/]model[:tag]``; the defaults are ``registry.ollama.ai``, ``library``
and ``latest``. ``hf.co/<user>/<repo>[:<quant>]`` names a GGUF repository on Hugging Face.
Every part is checked against a strict character set here, before any code builds a path from it,
so ``..``, separators and control characters never reach the filesystem.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ollamalike.errors import BadRequest

DEFAULT_HOST = "registry.ollama.ai"
DEFAULT_NAMESPACE = "library"
DEFAULT_TAG = "latest"
HF_HOSTS = ("hf.co", "huggingface.co")

# Ollama's limits: host up to 350 characters, the other parts up to 80. The host becomes one directory
# name under manifests/, which filesystems cap at 255 bytes: DNS's own limit of 253 keeps it a clear 400
# instead of ENAMETOOLONG. ``\Z``, not ``$``: ``$`` would also match before a trailing newline.
_HOST_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,252}(:[0-9]{1,5})?\Z")
_NAMESPACE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,79}\Z")
_HF_NAMESPACE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}\Z")
_MODEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}\Z")
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,79}\Z")
DIGEST_RE = re.compile(r"^sha256[:-]([0-9a-f]{64})\Z")


@dataclass(frozen=True)
class ModelName:
    host: str
    namespace: str
    model: str
    tag: str
    # The text ``parse`` read, for messages that name the model as the client spelled it ("model
    # 'ghost' not found"); no part of the name's identity.
    spelled: str = field(default="", compare=False, repr=False)

    @classmethod
    def parse(cls, text: str) -> ModelName:
        """Parse and validate; raises ``BadRequest`` naming what is wrong."""
        if not isinstance(text, str):
            raise BadRequest("model name must be a string")
        raw = text
        if not raw.strip():
            raise BadRequest("model name is required")
        if raw != raw.strip():
            # "x\n" must not act on "x": a name is taken exactly as given, as Ollama does.
            raise BadRequest(f"invalid model name {text[:100]!r}: leading or trailing whitespace")
        if len(raw) > 512:
            raise BadRequest("invalid model name: too long")
        for scheme in ("https://", "http://"):
            if raw.startswith(scheme):
                raw = raw[len(scheme) :]
        if "@" in raw:
            # A digest pin ("model@sha256:…") is accepted and dropped: the tag names the model.
            raw, _, digest = raw.partition("@")
            if not DIGEST_RE.match(digest.replace(":", "-", 1)):
                raise BadRequest(f"invalid model name {text!r}: bad digest")
        tag = DEFAULT_TAG
        slash = raw.rfind("/")
        colon = raw.rfind(":")
        if colon > slash:
            raw, tag = raw[:colon], raw[colon + 1 :]
        parts = raw.split("/")
        if any(p == "" for p in parts):
            raise BadRequest(f"invalid model name {text!r}: empty part")
        if len(parts) > 3:
            raise BadRequest(f"invalid model name {text!r}: too many parts")
        host, namespace = DEFAULT_HOST, DEFAULT_NAMESPACE
        if len(parts) == 3:
            host, namespace, model = parts
        elif len(parts) == 2:
            namespace, model = parts
        else:
            (model,) = parts
        name = cls(host, namespace, model, tag, text)
        name.validate(text)
        return name

    def validate(self, original: str | None = None) -> None:
        shown = original if original is not None else str(self)
        checks = (
            ("host", self.host, _HOST_RE),
            ("namespace", self.namespace, _HF_NAMESPACE_RE if self.is_huggingface else _NAMESPACE_RE),
            ("model", self.model, _MODEL_RE),
            ("tag", self.tag, _TAG_RE),
        )
        for label, value, pattern in checks:
            if ".." in value or not pattern.match(value):
                raise BadRequest(f"invalid model name {shown!r}: bad {label} {value!r}")

    @property
    def is_huggingface(self) -> bool:
        return self.host.lower() in HF_HOSTS

    def key(self) -> str:
        """The catalog key: names match case-insensitively, as in Ollama."""
        return str(self).lower()

    def __str__(self) -> str:
        return f"{self.host}/{self.namespace}/{self.model}:{self.tag}"

    @property
    def display(self) -> str:
        """The short form ``list`` prints: default host and namespace are left out."""
        if self.host != DEFAULT_HOST:
            return f"{self.host}/{self.namespace}/{self.model}:{self.tag}"
        if self.namespace != DEFAULT_NAMESPACE:
            return f"{self.namespace}/{self.model}:{self.tag}"
        return f"{self.model}:{self.tag}"

    @property
    def repository(self) -> str:
        """``namespace/model``: the repository path used by the registry API."""
        return f"{self.namespace}/{self.model}"


def parse_digest(text: str) -> str:
    """Normalise ``sha256:<hex>`` or ``sha256-<hex>`` to ``sha256:<hex>``; anything else is rejected."""
    if not isinstance(text, str):
        raise BadRequest("digest must be a string")
    m = DIGEST_RE.match(text)  # exactly: "sha256:<hex>\n" is not a digest
    if not m:
        raise BadRequest(f"invalid digest {text[:100]!r}: expected sha256:<64 lowercase hex digits>")
    return f"sha256:{m.group(1)}"


_GGUF_SHARD = re.compile(r"^(?P<prefix>.+)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$")


def gguf_shard_names(filename: str) -> list[str] | None:
    """Every shard's file name when ``filename`` is the first shard of a split GGUF
    (``x-00001-of-00003.gguf``, llama.cpp's naming), else None."""
    m = _GGUF_SHARD.match(filename)
    if m is None or int(m.group("no")) != 1 or int(m.group("count")) < 2:
        return None
    count = int(m.group("count"))
    return [f"{m.group('prefix')}-{i:05d}-of-{count:05d}.gguf" for i in range(1, count + 1)]
