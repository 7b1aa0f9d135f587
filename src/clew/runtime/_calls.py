"""Running plain functions off the caller's thread: timed tool calls and plain steps of async runs.

Each call gets a thread of its own, so a call never waits behind another: a hung call
cannot starve a fast one (a shared pool would). A call that runs past its timeout is
*abandoned*: Python cannot stop a thread, so it keeps running until it returns on its
own. Abandoned calls are counted; past :data:`MAX_ABANDONED` of them a new call is
refused with :class:`CallNotStartedError` instead of adding yet another stuck thread,
and a call whose thread did not start before its timeout gets the same error. Both say
the function never ran, so retrying it is safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
from collections.abc import Callable
from typing import Any

#: How many timed-out calls may still be running before new calls are refused.
MAX_ABANDONED = 256


class CallTimeoutError(TimeoutError):
    """A tool call ran past its timeout (the thread running it is abandoned)."""


class CallNotStartedError(RuntimeError):
    """A tool call was never started: too many earlier calls that timed out are still
    running, or its thread could not start before the timeout. The function did not
    run, so trying again is safe."""


_lock = threading.Lock()
_abandoned = 0


def abandoned() -> int:
    """How many calls that ran past their timeout are still running."""
    return _abandoned


def _name(fn: Callable[..., Any]) -> str:
    return str(getattr(fn, "__qualname__", fn))


class _Call:
    """One function call on its own thread; ``done`` is set when it returns or raises."""

    __slots__ = (
        "abandoned",
        "args",
        "cancelled",
        "context",
        "done",
        "error",
        "fn",
        "kwargs",
        "on_done",
        "result",
        "started",
    )

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.fn, self.args, self.kwargs = fn, args, kwargs
        self.started = self.cancelled = self.abandoned = False
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None
        self.on_done: Callable[[], None] | None = None
        self.context = contextvars.copy_context()  # the caller's: its current span, for one

    def start(self, timeout: float | None) -> None:
        with _lock:
            if timeout is not None and _abandoned >= MAX_ABANDONED:
                raise CallNotStartedError(
                    f"{_name(self.fn)} was not started: {_abandoned} earlier calls ran past their timeout and "
                    "are still running; fix the hanging tool (its threads end when it returns) or restart the worker"
                )
        threading.Thread(target=self._run, name=f"clew-call-{_name(self.fn)}", daemon=True).start()

    def _run(self) -> None:
        global _abandoned
        with _lock:
            if self.cancelled:
                return
            self.started = True
        try:
            self.result = self.context.run(self.fn, *self.args, **self.kwargs)
        except BaseException as exc:  # handed to the caller
            self.error = exc
        finally:
            with _lock:
                if self.abandoned:
                    _abandoned -= 1
            self.done.set()
            if self.on_done is not None:
                self.on_done()

    def expire(self, timeout: float) -> BaseException:
        """The error for a call not done within ``timeout``; abandons or cancels it."""
        global _abandoned
        with _lock:
            if self.done.is_set():
                return _Finished()
            if not self.started:
                self.cancelled = True
                return CallNotStartedError(f"{_name(self.fn)} was not started within its {timeout}s timeout")
            self.abandoned = True
            _abandoned += 1
        return CallTimeoutError(f"{_name(self.fn)} ran past {timeout}s")

    def outcome(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.result


# Journaled error records name these by their public place, wherever they are defined.
CallTimeoutError.__module__ = CallNotStartedError.__module__ = "clew"


class _Finished(Exception):
    """The call finished just as its timeout expired: use its outcome."""


def call_in_thread(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], timeout: float | None) -> Any:
    """Call ``fn`` on its own thread and wait for it, at most ``timeout`` seconds.

    Raises:
        CallTimeoutError: it ran past ``timeout`` (it keeps running, abandoned).
        CallNotStartedError: it was never started.
    """
    call = _Call(fn, args, kwargs)
    call.start(timeout)
    if not call.done.wait(timeout):
        assert timeout is not None
        err = call.expire(timeout)
        if not isinstance(err, _Finished):
            raise err
    return call.outcome()


async def acall_in_thread(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], timeout: float | None
) -> Any:
    """The async twin of :func:`call_in_thread`: the event loop waits without blocking."""
    loop = asyncio.get_running_loop()
    finished = loop.create_future()
    call = _Call(fn, args, kwargs)

    def settle() -> None:
        if not finished.done():
            finished.set_result(None)

    def wake() -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed while the call ran
            loop.call_soon_threadsafe(settle)

    call.on_done = wake
    call.start(timeout)
    try:
        await asyncio.wait_for(asyncio.shield(finished), timeout)
    except TimeoutError:
        assert timeout is not None
        err = call.expire(timeout)
        if not isinstance(err, _Finished):
            raise err from None
    except asyncio.CancelledError:
        call.expire(0.0)  # the awaiting task was cancelled: cancel or abandon the call too
        raise
    return call.outcome()
