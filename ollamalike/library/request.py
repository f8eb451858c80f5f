"""The /api/create request: Ollama's current shape and the legacy Modelfile one, type-checked.

Besides Ollama's fields (``renderer``, ``parser``, ``requires``, ``draft_files``, ``draft_quantize``)
one extension: ``draft`` names an existing model whose weights become the draft layer (a Modelfile
``DRAFT <model name>``; Ollama's DRAFT takes files only). Another: ``clear_system: true`` drops the
base model's system prompt, which is what a Modelfile's ``SYSTEM ""`` means here; ``system: ""``
itself keeps the base's, as Ollama's API reads an empty string as "not given".
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ollamalike.errors import BadRequest
from ollamalike.jsonfields import get_bool, get_dict, get_str
from ollamalike.jsontypes import JSONObject
from ollamalike.modelfile import check_name, check_requires

# The roles a Modelfile MESSAGE can carry, so `show --modelfile` always rebuilds the model.
MESSAGE_ROLES = ("system", "user", "assistant")


def _digest_map(body: JSONObject, key: str) -> dict[str, str]:
    value = body.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRequest(f"'{key}' must be an object mapping file names to digests")
    out = {k: v for k, v in value.items() if isinstance(v, str)}
    if len(out) < len(value):
        raise BadRequest(f"'{key}' must be an object mapping file names to digests")
    for name in out:
        if not _valid_file_name(name):
            raise BadRequest(f"invalid file name in '{key}': {name!r} (must be a relative path without '..')")
    return out


def _valid_file_name(name: str) -> bool:
    """Like Go's fs.ValidPath, which Ollama checks ``files`` names with: relative, no empty, '.' or '..' elements."""
    return "\\" not in name and "\0" not in name and all(part not in ("", ".", "..") for part in name.split("/"))


def check_messages(value: object) -> list[dict[str, str]]:
    if not isinstance(value, list):
        raise BadRequest("'messages' must be a list")
    out = []
    for i, m in enumerate(value):
        if not isinstance(m, dict):
            raise BadRequest(f"messages[{i}] must be an object")
        role, content = m.get("role"), m.get("content", "")
        if not isinstance(role, str) or role not in MESSAGE_ROLES:
            raise BadRequest(f"messages[{i}]: role must be one of {', '.join(MESSAGE_ROLES)}")
        if not isinstance(content, str):
            raise BadRequest(f"messages[{i}]: content must be a string")
        out.append({"role": role, "content": content})
    return out


@dataclass(frozen=True)
class Access:
    """What the client of a create may reach besides the store; decided by the HTTP handler from the
    peer address and the key, never read from the request body.

    ``server_paths``: a Modelfile FROM/ADAPTER may name a file on this machine (a loopback client,
    with the admin key when keys are on). ``keys_on``: API keys are configured (for the error text).
    """

    server_paths: bool
    keys_on: bool = False


LOCAL = Access(server_paths=True)
REMOTE = Access(server_paths=False)


@dataclass
class CreateRequest:
    """What to build. ``from_`` is a model name; ``files``/``adapters`` map file names to blob digests."""

    from_: str | None = None
    files: dict[str, str] = field(default_factory=dict)
    adapters: dict[str, str] = field(default_factory=dict)
    template: str | None = None
    license: list[str] | None = None
    system: str | None = None
    parameters: JSONObject | None = None
    messages: list[dict[str, str]] | None = None
    quantize: str | None = None
    renderer: str | None = None
    parser: str | None = None
    requires: str | None = None  # without a leading "v"
    draft_files: dict[str, str] = field(default_factory=dict)
    draft: str | None = None  # extension: a model whose model layer becomes the draft layer
    draft_quantize: str | None = None
    clear_system: bool = False
    # Legacy shape: Modelfile text, and the path it came from (relative FROM/ADAPTER paths resolve there).
    modelfile: str | None = None
    path: str | None = None

    @classmethod
    def from_json(cls, body: JSONObject) -> CreateRequest:
        """The body as the HTTP edge (``server.http.read_json``) checked it: a JSON object."""
        license_value = body.get("license")
        licenses: list[str] | None
        if license_value is None:
            licenses = None
        elif isinstance(license_value, str):
            licenses = [license_value] if license_value else None
        elif isinstance(license_value, list) and all(isinstance(x, str) for x in license_value):
            licenses = [x for x in license_value if isinstance(x, str)]  # all are, checked above
        else:
            raise BadRequest("'license' must be a string or a list of strings")
        parameters = get_dict(body, "parameters")
        messages = body.get("messages")
        quantize = get_str(body, "quantize") or get_str(body, "quantization")
        renderer, parser, requires = get_str(body, "renderer"), get_str(body, "parser"), get_str(body, "requires")
        draft_files = _digest_map(body, "draft_files")
        draft = get_str(body, "draft") or None
        draft_quantize = get_str(body, "draft_quantize") or None
        if draft_files and draft:
            raise BadRequest("give either 'draft' or 'draft_files', not both")
        clear_system = get_bool(body, "clear_system", False)
        if clear_system and get_str(body, "system"):
            raise BadRequest("give either a 'system' prompt or 'clear_system', not both")
        return cls(
            from_=get_str(body, "from") or None,
            files=_digest_map(body, "files"),
            adapters=_digest_map(body, "adapters"),
            # As in Ollama, an empty template or system prompt means "not given" (a base model's is kept).
            template=get_str(body, "template") or None,
            license=licenses,
            system=get_str(body, "system") or None,
            parameters=dict(parameters) if parameters is not None else None,
            messages=check_messages(messages) if messages is not None else None,
            quantize=quantize or None,
            renderer=check_name("renderer", renderer) if renderer else None,
            parser=check_name("parser", parser) if parser else None,
            requires=check_requires(requires) if requires else None,
            draft_files=draft_files,
            draft=draft,
            draft_quantize=draft_quantize,
            clear_system=clear_system,
            modelfile=get_str(body, "modelfile"),
            path=get_str(body, "path"),
        )
