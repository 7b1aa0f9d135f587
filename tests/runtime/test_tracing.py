"""OpenTelemetry spans (the otel extra): a run's span holds its steps' spans, which hold their tool calls'."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import clew

_exporter = InMemorySpanExporter()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(_exporter))
        trace.set_tracer_provider(provider)
    _exporter.clear()
    yield _exporter
    _exporter.clear()


def by_name(found: tuple[ReadableSpan, ...]) -> dict[str, list[ReadableSpan]]:
    out: dict[str, list[ReadableSpan]] = {}
    for s in found:
        out.setdefault(s.name, []).append(s)
    return out


def parent_of(s: ReadableSpan) -> int | None:
    return s.parent.span_id if s.parent is not None else None


def make(store: Any) -> clew.Agent[dict[str, Any]]:
    agent = clew.Agent("traced", state=dict, store=store)
    flaky = {"left": 1}

    def lookup(q: str) -> str:
        if flaky["left"]:
            flaky["left"] -= 1
            raise ConnectionError("blip")
        return f"found {q}"

    @agent.step(start=True)
    def search(state: dict[str, Any], ctx: clew.Context) -> str:
        state["hit"] = ctx.call("kb", lookup, "q", retry=clew.Retry(attempts=2, backoff=0), timeout=5)
        return "review"

    @agent.step
    def review(state: dict[str, Any], ctx: clew.Context) -> None:
        state["ok"] = ctx.interrupt("ok?")
        if state["ok"] == "boom":
            raise ValueError("bad answer")

    return agent


def test_spans_nest_and_follow_genai_conventions(store: clew.Store, spans: InMemorySpanExporter) -> None:
    agent = make(store)
    run = agent.start({}, run_id="traced-1")
    assert run.status == "paused"
    found = by_name(spans.get_finished_spans())
    [root] = found["invoke_agent traced"]
    assert root.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert root.attributes["gen_ai.agent.name"] == "traced"
    assert root.attributes["clew.run_id"] == "traced-1" and root.attributes["clew.status"] == "paused"
    [search] = found["step search"]
    assert parent_of(search) == root.context.span_id
    tools = found["execute_tool kb"]
    assert [t.attributes["clew.attempt"] for t in tools] == [1, 2]
    assert all(parent_of(t) == search.context.span_id for t in tools)  # also from the call's own thread
    assert tools[0].status.status_code == trace.StatusCode.ERROR and tools[0].events[0].name == "exception"
    assert tools[1].status.status_code == trace.StatusCode.UNSET
    assert tools[0].attributes["gen_ai.tool.call.id"] == tools[1].attributes["gen_ai.tool.call.id"]
    [review] = found["step review"]
    assert review.status.status_code == trace.StatusCode.UNSET  # a pause is not an error

    spans.clear()
    failed = agent.resume("traced-1", answer="boom")
    assert failed.status == "failed"
    found = by_name(spans.get_finished_spans())
    [review] = found["step review"]
    assert review.status.status_code == trace.StatusCode.ERROR
    assert found["invoke_agent traced"][0].attributes["clew.status"] == "failed"
    assert "execute_tool kb" not in found  # replayed from the ledger: nothing ran


async def test_async_runs_nest_too(astore: clew.AsyncStore, spans: InMemorySpanExporter) -> None:
    agent = clew.Agent("atraced", state=dict, store=astore)

    async def fetch() -> str:
        return "a"

    def plain_tool() -> str:
        return "p"

    @agent.step(start=True)
    async def first(state: dict[str, Any], ctx: clew.Context) -> str:
        state["a"] = await ctx.call("fetch", fetch)
        return "second"

    @agent.step
    def second(state: dict[str, Any], ctx: clew.Context) -> None:  # a plain step of an async run: on a thread
        state["p"] = ctx.call("plain", plain_tool)

    run = await agent.astart({})
    assert run.status == "completed"
    found = by_name(spans.get_finished_spans())
    [root] = found["invoke_agent atraced"]
    [first_span], [second_span] = found["step first"], found["step second"]
    assert parent_of(first_span) == parent_of(second_span) == root.context.span_id
    assert parent_of(found["execute_tool fetch"][0]) == first_span.context.span_id
    assert parent_of(found["execute_tool plain"][0]) == second_span.context.span_id
