"""``POST /api/render`` (ollamalike-specific): the exact prompt a chat or generate request would send
to the model, for debugging templates. ``ollamalike render`` is its client."""

from __future__ import annotations

import asyncio

from aiohttp import web

from ollamalike import library
from ollamalike.errors import BadRequest
from ollamalike.jsontypes import JSONObject
from ollamalike.library.models import ResolvedModel
from ollamalike.server.http import get_list, get_str, json_response, model_field, read_json
from ollamalike.server.state import get_state


def render_request(model: ResolvedModel, body: JSONObject) -> str:
    """Chat-style when the body has ``messages``, otherwise generate-style (``prompt``/``system``/``suffix``)."""
    from ollamalike.template import render_chat, render_generate

    think = body.get("think")
    if think is not None and not isinstance(think, (bool, str)):
        raise BadRequest("invalid think value: must be a boolean or \"high\", \"medium\", \"low\", \"max\"")
    from ollamalike.template.parsers import template_think

    think = template_think(model, think)
    if "messages" in body:
        if "prompt" in body:
            raise BadRequest("give either messages (chat) or prompt (generate), not both")
        messages = get_list(body, "messages", [])
        tools = get_list(body, "tools")
        return render_chat(model, messages, tools=tools, think=think)
    prompt = get_str(body, "prompt", "")
    if body.get("raw") is True:
        return str(prompt)
    return render_generate(model, prompt, system=get_str(body, "system"), suffix=get_str(body, "suffix"),
                           template_override=get_str(body, "template") or None, think=think)


async def render(request: web.Request) -> web.Response:
    body = await read_json(request)
    name = model_field(body)
    state = get_state(request)
    model = await asyncio.to_thread(library.resolve_model, state.store, name)
    # Rendering an untrusted Jinja template is bounded in time, but still not event-loop work.
    text = await asyncio.to_thread(render_request, model, body)
    return json_response({"prompt": text})


def setup(app: web.Application) -> None:
    app.router.add_post("/api/render", render)
