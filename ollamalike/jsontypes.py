"""Types for JSON data: what ``json.loads`` returns, before it is parsed into a typed value.

Untrusted request bodies, registry manifests and metadata are ``JSONValue`` until the edge that
reads them has checked them (``jsonfields``, the request parsers); below that edge, code takes the
typed values instead. ``JSONObject`` is a decoded JSON object.
"""

from __future__ import annotations

from typing import TypeAlias

JSONScalar: TypeAlias = None | bool | int | float | str
JSONValue: TypeAlias = JSONScalar | list["JSONValue"] | dict[str, "JSONValue"]
JSONObject: TypeAlias = dict[str, JSONValue]
JSONArray: TypeAlias = list[JSONValue]
