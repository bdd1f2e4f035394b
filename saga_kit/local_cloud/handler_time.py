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

A callback task (``.waitForTaskToken``) has no handler of its own: its thread waits for the
worker's reply or heartbeat, and the worker is another Lambda invocation. That wait is counted
by what the worker is doing with the command's token, so callback timeouts and heartbeats are
load-proof the same way:

* the command not yet taken by a worker (waiting for the queue's poller), or a worker awake on
  it: ``1/k``, the CPU-starved time a busy machine adds;
* a worker sleeping on it (a participant that takes its time, a scenario's late reply), or no
  worker any more (it answered nothing, the command went to the dead-letter queue): in full.

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
        #: Callback task tokens -> the threads of the worker invocations handling them now.
        self._token_workers: dict[str, list[int]] = {}
        #: Tokens some worker has handled (and finished with).
        self._tokens_handled: set[str] = set()
        self._tokens_lock = threading.Lock()

    def slept(self, ident: int | None, now: float | None = None) -> float:
        """Seconds thread ``ident`` has spent sleeping so far (a sleep under way included)."""
        if ident is None:
            return 0.0
        since = self._sleeping_since.get(ident)
        total = self._slept.get(ident, 0.0)
        return total + ((now if now is not None else time.monotonic()) - since if since else 0.0)

    @contextmanager
    def working_on(self, tokens: list[str]) -> Iterator[None]:
        """Marks the calling thread (a worker invocation) as handling these callback tokens."""
        ident = threading.get_ident()
        with self._tokens_lock:
            for token in tokens:
                self._token_workers.setdefault(token, []).append(ident)
        try:
            yield
        finally:
            with self._tokens_lock:
                for token in tokens:
                    workers = self._token_workers.get(token, [])
                    if ident in workers:
                        workers.remove(ident)
                    if not workers:
                        self._token_workers.pop(token, None)
                    self._tokens_handled.add(token)

    def callback_in_full(self, token: str) -> bool:
        """Whether a callback wait on ``token`` counts in full right now (see the module doc)."""
        with self._tokens_lock:
            workers = list(self._token_workers.get(token, ()))
            handled = token in self._tokens_handled
        if workers:
            return any(ident in self._sleeping_since for ident in workers)
        return handled

    def callback_wait(self, wait: Any, timeout: float | None, token: str) -> bool:
        """``wait(seconds) -> bool`` in slices until it is true or ``timeout`` seconds of
        callback time have passed; the slices that count in full are counted as the calling
        thread's sleep, so the task's ``TimeoutSeconds`` (a :class:`Stopwatch` of this thread)
        sees the same time."""
        ident, spent = threading.get_ident(), 0.0
        while True:
            in_full = self.dilation == 1 or self.callback_in_full(token)
            rate = 1.0 if in_full else 1.0 / self.dilation
            left = None if timeout is None else timeout - spent
            if left is not None and left <= 0:
                return False
            slice_seconds = _POLL_SECONDS if left is None else min(_POLL_SECONDS, left / rate)
            start = time.monotonic()
            done = wait(slice_seconds)
            elapsed = time.monotonic() - start
            spent += elapsed * rate
            if in_full:
                self._slept[ident] = self._slept.get(ident, 0.0) + elapsed
            if done:
                return True

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
        original_setup = CallbackEndpoint.setup_heartbeat_endpoint

        def callback_wait(endpoint: Any, timeout: float | None = None) -> Any:
            clock.callback_wait(endpoint._notify_event.wait, timeout, endpoint.callback_id)
            return endpoint._outcome

        def setup_heartbeat_endpoint(endpoint: Any, heartbeat_seconds: int) -> Any:
            heartbeat = original_setup(endpoint, heartbeat_seconds)
            heartbeat.callback_id = endpoint.callback_id  # whose worker paces this heartbeat
            return heartbeat

        def heartbeat_wait(heartbeat: Any) -> bool:
            with heartbeat._mutex:
                if heartbeat._next_heartbeat_event.is_set():
                    heartbeat._next_heartbeat_event.clear()
                    return True
            return clock.callback_wait(heartbeat._next_heartbeat_event.wait,
                                       heartbeat._heartbeat_seconds, heartbeat.callback_id)

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
            stack.enter_context(patched(CallbackEndpoint, "wait", callback_wait))
            stack.enter_context(patched(CallbackEndpoint, "setup_heartbeat_endpoint",
                                        setup_heartbeat_endpoint))
            stack.enter_context(patched(HeartbeatEndpoint, "clear_and_wait", heartbeat_wait))
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
