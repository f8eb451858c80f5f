"""Types for JSON data: what ``json.loads`` returns, before it is parsed into a typed value.

Untrusted request bodies, registry manifests and metadata are ``JSONValue`` until the edge that
reads them has checked them (``jsonfields``, the request parsers); below that edge, code takes the
typed values instead. ``JSONObject`` is a decoded JSON object.
"""

from __future__ import annotations

from typing import Union

JSONScalar = Union[None, bool, int, float, str]
JSONValue = Union[JSONScalar, list["JSONValue"], dict[str, "JSONValue"]]
JSONObject = dict[str, JSONValue]
JSONArray = list[JSONValue]
