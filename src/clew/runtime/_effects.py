"""The runtime's I/O, as effects a driver carries out: one logic, sync and async.

The engine and the tool-call ledger are generators that yield effects and receive
their results (or have their exceptions thrown in). :func:`run_sync` carries them out
with a :class:`~clew.store.Store` and plain calls; :func:`run_async` with an
:class:`~clew.store.AsyncStore`, awaiting ``async def`` functions and running plain
ones in a worker thread so the event loop never blocks.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

from clew.errors import ConfigError
from clew.runtime._calls import CallNotStartedError, CallTimeoutError, acall_in_thread, call_in_thread

__all__ = ["CallNotStartedError", "CallTimeoutError", "Effect", "Invoke", "Program", "Sleep", "StoreCall"]


@dataclass(frozen=True, slots=True)
class StoreCall:
    """Call a store method."""

    method: str
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Invoke:
    """Call user code (a step, a tool, a reconcile hook), with an optional timeout."""

    fn: Callable[..., Any]
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    timeout: float | None = None


@dataclass(frozen=True, slots=True)
class Sleep:
    seconds: float


Effect = StoreCall | Invoke | Sleep
Program = Generator[Effect, Any, Any]


def _invoke_sync(eff: Invoke) -> Any:
    if inspect.iscoroutinefunction(eff.fn):
        raise ConfigError(
            f"{getattr(eff.fn, '__qualname__', eff.fn)!r} is async: run the agent with an async store "
            "(clew.open_async) and await agent.astart()/aresume()"
        )
    if eff.timeout is None:
        return eff.fn(*eff.args, **eff.kwargs)
    return call_in_thread(eff.fn, eff.args, eff.kwargs, eff.timeout)


def run_sync(program: Program, store: Any) -> Any:
    """Carry out a program's effects synchronously; return its result."""
    send: Any = None
    error: BaseException | None = None
    while True:
        try:
            eff = program.throw(error) if error is not None else program.send(send)
        except StopIteration as stop:
            return stop.value
        send, error = None, None
        try:
            if isinstance(eff, StoreCall):
                send = getattr(store, eff.method)(**eff.kwargs)
            elif isinstance(eff, Invoke):
                send = _invoke_sync(eff)
            else:
                time.sleep(eff.seconds)
        except BaseException as exc:  # handed back to the program, which decides
            error = exc


async def _invoke_async(eff: Invoke) -> Any:
    if inspect.iscoroutinefunction(eff.fn):
        coro = eff.fn(*eff.args, **eff.kwargs)
        if eff.timeout is None:
            return await coro
        try:
            return await asyncio.wait_for(coro, eff.timeout)
        except TimeoutError:
            raise CallTimeoutError(f"{getattr(eff.fn, '__qualname__', eff.fn)} ran past {eff.timeout}s") from None
    # A plain function: on a thread of its own, so that no number of hung calls delays it.
    return await acall_in_thread(eff.fn, eff.args, eff.kwargs, eff.timeout)


async def run_async(program: Program, store: Any) -> Any:
    """Carry out a program's effects on the event loop; return its result."""
    send: Any = None
    error: BaseException | None = None
    while True:
        try:
            eff = program.throw(error) if error is not None else program.send(send)
        except StopIteration as stop:
            return stop.value
        send, error = None, None
        try:
            if isinstance(eff, StoreCall):
                send = await getattr(store, eff.method)(**eff.kwargs)
            elif isinstance(eff, Invoke):
                send = await _invoke_async(eff)
            else:
                await asyncio.sleep(eff.seconds)
        except BaseException as exc:
            error = exc
