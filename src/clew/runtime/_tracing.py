"""OpenTelemetry spans for runs, steps and tool calls, when ``opentelemetry-api`` is installed.

Install the extra (``pip install 'clew[otel]'``) and configure a tracer provider as
usual; clew then reports, following OpenTelemetry's GenAI semantic conventions where
they apply:

- ``invoke_agent {agent}``: one span each time a run's branch is executed
  (``gen_ai.operation.name=invoke_agent``, ``gen_ai.agent.name``, ``clew.run_id``,
  ``clew.branch``, ``clew.status`` at the end);
- ``step {name}``: each try of a step (``clew.step``, ``clew.attempt``);
- ``execute_tool {name}``: each try of a journaled tool call
  (``gen_ai.operation.name=execute_tool``, ``gen_ai.tool.name``,
  ``gen_ai.tool.call.id`` = the call's idempotency key, ``clew.attempt``).

A span whose code raised has status ERROR and the exception recorded; a pause for a
person is not an error. Without the package every function here does nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

trace: Any
try:
    import opentelemetry.trace as _trace

    trace = _trace
except ImportError:  # the extra is not installed: no spans
    trace = None


@contextlib.contextmanager
def span(name: str, attributes: dict[str, Any], benign: tuple[type[BaseException], ...] = ()) -> Iterator[Any]:
    """A span around the block, current while it runs; ``benign`` exceptions are not errors."""
    if trace is None:
        yield None
        return
    tracer = trace.get_tracer("clew")
    with tracer.start_as_current_span(
        name, attributes=attributes, record_exception=False, set_status_on_exception=False
    ) as current:
        try:
            yield current
        except benign:
            raise
        except BaseException as exc:
            current.record_exception(exc)
            current.set_status(trace.Status(trace.StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
            raise


def set_attribute(current: Any, key: str, value: Any) -> None:
    """Set an attribute on a span from :func:`span` (nothing without OpenTelemetry)."""
    if current is not None and value is not None:
        current.set_attribute(key, value)
