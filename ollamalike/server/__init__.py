"""The aiohttp daemon: app factory, shared state, middleware and the route modules."""

from __future__ import annotations
