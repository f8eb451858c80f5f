"""The recent responses that ``previous_response_id`` can chain on: a bounded in-memory LRU.

Each stored response keeps the native messages of its whole conversation (without the
request's ``instructions``, which OpenAI does not carry over a chain). The store holds at most
``MAX_RESPONSES`` responses and ``MAX_BYTES`` of their JSON size; the least recently used are
dropped first. It lives in the daemon's memory only: a restart forgets every response, and an
id that was dropped or never existed is a 404. The daemon's one store is ``AppState.responses``.
"""

from __future__ import annotations

import json
from collections import OrderedDict

from ollamalike.errors import NotFound
from ollamalike.inference.requests import ChatMessage

MAX_RESPONSES = 512
MAX_BYTES = 64 * 1024 * 1024


class PreviousResponseNotFound(NotFound):
    openai_code = "previous_response_not_found"

    def __init__(self, response_id: str) -> None:
        super().__init__(f"Previous response with id '{response_id}' not found.", param="previous_response_id")


class ResponseStore:
    def __init__(self, max_responses: int = MAX_RESPONSES, max_bytes: int = MAX_BYTES) -> None:
        self.max_responses = max_responses
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, tuple[list[ChatMessage], int]] = OrderedDict()
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._items)

    def put(self, response_id: str, messages: list[ChatMessage]) -> None:
        size = len(json.dumps(messages, ensure_ascii=False).encode())
        if size > self.max_bytes:
            return  # larger than the whole store: not kept (a follow-up on it is a 404)
        old = self._items.pop(response_id, None)
        if old is not None:
            self.bytes -= old[1]
        self._items[response_id] = (messages, size)
        self.bytes += size
        while len(self._items) > self.max_responses or self.bytes > self.max_bytes:
            _, (_, dropped) = self._items.popitem(last=False)
            self.bytes -= dropped

    def get(self, response_id: str) -> list[ChatMessage]:
        """The conversation of ``response_id`` (a copy); unknown -> ``PreviousResponseNotFound``."""
        item = self._items.get(response_id)
        if item is None:
            raise PreviousResponseNotFound(response_id)
        self._items.move_to_end(response_id)
        return [m.copy() for m in item[0]]

