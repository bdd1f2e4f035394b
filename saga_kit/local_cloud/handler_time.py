"""Load-proof timeouts: the time a task and a Lambda handler take, as the local cloud counts it.

Everything the local cloud runs shares one process and one GIL, so wall-clock time is a poor
stand-in for what a Lambda handler would take on AWS: on a busy machine, a handler that needs
50 ms can take seconds of wall time waiting for the CPU, overrun its task's ``TimeoutSeconds``
and compensate a saga that should have completed.

With a *time dilation* ``k`` the local cloud counts a handler's time as

    handler time = (time spent in ``time.sleep``) + (every other second of wall time) / k

Sleeping is how a scenario asks for a slow handler (a participant that hangs, a timeout to
test), and it counts in full: a handler that sleeps past its timeout times out after exactly
that long, whatever the load. Everything else, which on AWS would be a handler's real work and
here is mostly waiting for the CPU, counts ``1/k``: with ``k = 20`` a handler must be starved
for 20 times its timeout before it times out. The count applies to

* a Task state's ``TimeoutSeconds`` (moto's interpreter waits for the task's worker thread; the
  wait is replaced by one on this clock, for that thread);
* the Lambda function's own ``Timeout`` (``Sandbox.Timedout``) and the context's
  ``get_remaining_time_in_millis()``, in :mod:`saga_kit.local_cloud.lambda_runner`.

A callback task (``.waitForTaskToken``) has no handler: its task thread only waits for the
worker's reply or heartbeat. That wait counts in full, like a sleep, so a callback's
``TimeoutSeconds`` and ``HeartbeatSeconds`` are wall time: a reply the worker sends late is late
whatever the load (choose callback timeouts with room for a busy machine).

Left in real time as well: ``Wait`` states, SQS visibility timeouts, Powertools' in-progress
expiry. ``k = 1`` is plain wall time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from saga_kit.local_cloud._patching import patched

#: How often a task wait re-reads the clock: a timeout fires at most this late.
_POLL_SECONDS = 0.05


class HandlerTime:
    """Counts, per thread, the seconds spent in ``time.sleep`` while :meth:`installed`."""

    def __init__(self, dilation: float = 1.0) -> None:
        if dilation < 1:
            raise ValueError(f"time dilation must be at least 1, got {dilation}")
        self.dilation = float(dilation)
        self._slept: dict[int, float] = {}
        self._sleeping_since: dict[int, float] = {}
        self._local = threading.local()

    def slept(self, ident: int | None, now: float | None = None) -> float:
        """Seconds thread ``ident`` has spent sleeping so far (a sleep under way included)."""
        if ident is None:
            return 0.0
        since = self._sleeping_since.get(ident)
        total = self._slept.get(ident, 0.0)
        return total + ((now if now is not None else time.monotonic()) - since if since else 0.0)

    def stopwatch(self, ident: int | None = None) -> Stopwatch:
        """A stopwatch of handler time for thread ``ident`` (default: the calling thread)."""
        return Stopwatch(self, threading.get_ident() if ident is None else ident)

    @contextmanager
    def installed(self) -> Iterator[HandlerTime]:
        """Counts sleeps, and makes Task timeouts wait on this clock, inside the ``with``."""
        from moto.stepfunctions.parser.asl.component.state.exec import execute_state
        from moto.stepfunctions.parser.asl.eval.callback.callback import (
            CallbackEndpoint,
            HeartbeatEndpoint,
        )

        clock = self

        def counted(wait: Any) -> Any:
            """``wait``, with the time the calling thread spends in it counted as sleep."""
            def counted_wait(*args: Any, **kwargs: Any) -> Any:
                ident, start = threading.get_ident(), time.monotonic()
                nested = ident in clock._sleeping_since
                if not nested:
                    clock._sleeping_since[ident] = start
                try:
                    return wait(*args, **kwargs)
                finally:
                    if not nested:
                        del clock._sleeping_since[ident]
                        clock._slept[ident] = (clock._slept.get(ident, 0.0)
                                               + time.monotonic() - start)
            return counted_wait

        counted_sleep = counted(time.sleep)

        class TaskThread(threading.Thread):
            """moto's task worker thread, remembered by the thread that starts it."""

            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                clock._local.task_thread = self

        class TaskDeadline(threading.Event):
            """The event moto waits on for a task's result, with its timeout in handler time."""

            def wait(self, timeout: float | None = None) -> bool:
                task = getattr(clock._local, "task_thread", None)
                if timeout is None or clock.dilation == 1 or task is None:
                    return super().wait(timeout)
                watch = clock.stopwatch(task.ident)
                while True:
                    remaining = timeout - watch.elapsed()
                    if remaining <= 0:
                        return self.is_set()
                    if super().wait(min(remaining, _POLL_SECONDS)):
                        return True

        class ThreadingWithTaskDeadlines:
            """``threading`` as moto's execute_state module sees it: ``Event`` is a deadline."""

            Event = TaskDeadline

            def __getattr__(self, name: str) -> Any:
                return getattr(threading, name)

        with ExitStack() as stack:
            stack.enter_context(patched(time, "sleep", counted_sleep))
            # A callback task's thread waiting for the worker's reply or heartbeat.
            stack.enter_context(patched(CallbackEndpoint, "wait",
                                        counted(CallbackEndpoint.wait)))
            stack.enter_context(patched(HeartbeatEndpoint, "clear_and_wait",
                                        counted(HeartbeatEndpoint.clear_and_wait)))
            stack.enter_context(patched(execute_state, "Thread", TaskThread))
            stack.enter_context(patched(execute_state, "threading", ThreadingWithTaskDeadlines()))
            yield self


class Stopwatch:
    """Handler time of one thread since the stopwatch was made."""

    def __init__(self, clock: HandlerTime, ident: int | None) -> None:
        self._clock = clock
        self._ident = ident
        self._started = time.monotonic()
        self._slept_before = clock.slept(ident, self._started)

    def elapsed(self) -> float:
        """Seconds of handler time: sleeps in full, the rest divided by the dilation."""
        now = time.monotonic()
        slept = self._clock.slept(self._ident, now) - self._slept_before
        awake = max(0.0, now - self._started - slept)
        return slept + awake / self._clock.dilation
