"""The /api/create request: Ollama's current shape and the legacy Modelfile one, type-checked."""

from __future__ import annotations

from dataclasses import dataclass, field

from ollamalike.errors import BadRequest
from ollamalike.jsonfields import get_dict, get_str
from ollamalike.jsontypes import JSONObject

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
            modelfile=get_str(body, "modelfile"),
            path=get_str(body, "path"),
        )
