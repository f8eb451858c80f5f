"""langchain-ollama's ChatOllama and OllamaEmbeddings against the real daemon."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_ollama import ChatOllama, OllamaEmbeddings

from tests.daemon import Daemon
from tests.infer_helpers import start_serving_daemon

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def d(tmp_path_factory: pytest.TempPathFactory, tiny_chat_gguf: Path, tiny_embed_gguf: Path) -> Iterator[Daemon]:
    daemon = start_serving_daemon(tmp_path_factory.mktemp("langchain"), tiny_chat_gguf, tiny_embed_gguf, tools=True)
    yield daemon
    print(daemon.logs())
    daemon.stop()


def chat_model(d: Daemon, **kw: object) -> ChatOllama:
    return ChatOllama(model="tiny", base_url=d.base_url, num_predict=8, seed=3, temperature=0, **kw)  # type: ignore[arg-type]


def test_chat_invoke_and_stream(d: Daemon) -> None:
    llm = chat_model(d)
    messages = [SystemMessage("You are terse."), HumanMessage("Say hi")]
    answer = llm.invoke(messages)
    assert isinstance(answer, AIMessage) and isinstance(answer.content, str)
    assert answer.usage_metadata is not None and answer.usage_metadata["output_tokens"] == 8
    assert answer.response_metadata["done_reason"] == "length"
    streamed = "".join(str(chunk.content) for chunk in llm.stream(messages))
    assert streamed == answer.content


async def test_chat_async(d: Daemon) -> None:
    llm = chat_model(d)
    answer = await llm.ainvoke([HumanMessage("Hello")])
    assert isinstance(answer, AIMessage) and answer.usage_metadata is not None
    chunks = [c async for c in llm.astream([HumanMessage("Hello")])]
    assert "".join(str(c.content) for c in chunks) == answer.content


def test_chat_tool_calls(d: Daemon) -> None:
    def get_weather(city: str) -> str:
        """Current weather for a city."""
        return "sunny"

    schema = {"type": "object", "properties": {
        "name": {"const": "get_weather"},
        "arguments": {"type": "object", "properties": {"city": {"enum": ["Paris"]}}, "required": ["city"]}},
        "required": ["name", "arguments"]}
    llm = ChatOllama(model="tools", base_url=d.base_url, num_predict=64, seed=1, temperature=0, format=schema)
    answer = llm.bind_tools([get_weather]).invoke([HumanMessage("Weather in Paris?")])
    assert answer.tool_calls and answer.tool_calls[0]["name"] == "get_weather"
    assert answer.tool_calls[0]["args"] == {"city": "Paris"}


def test_embeddings(d: Daemon) -> None:
    emb = OllamaEmbeddings(model="emb", base_url=d.base_url)
    docs = emb.embed_documents(["first document", "second document"])
    assert len(docs) == 2 and len(docs[0]) == len(docs[1]) > 0
    query = emb.embed_query("first document")
    assert query == pytest.approx(docs[0], abs=1e-5)
