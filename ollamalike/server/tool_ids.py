"""The id of a tool call as the agent APIs show it: the inference layer's own id when it has one.

Native tool-call chunks carry ``message.tool_calls[].id``; only an id-less call gets one minted
here (a fallback kept in one place, so it can go once every call carries its id).
"""

from __future__ import annotations

import secrets


def tool_call_id(call: dict[str, object], prefix: str) -> str:
    call_id = call.get("id")
    if isinstance(call_id, str) and call_id:
        return call_id
    call_id = f"{prefix}{secrets.token_hex(12)}"
    # Stored on the call, so every encoder of the same chunk shows the same id.
    call["id"] = call_id
    return call_id
