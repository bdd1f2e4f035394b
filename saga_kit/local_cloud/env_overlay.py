"""A thread-local overlay over ``os.environ`` for in-process Lambda invocations.

Real Lambda gives every function its own process, so each sees only its own environment
variables. In-process, several functions run at the same time in Step Functions worker threads,
and ``os.environ`` is one dict for the whole process. Mutating it per call would leak one
function's variables into another's thread. Instead, while a :class:`LocalCloud` runs,
``os.environ`` is replaced by :class:`ThreadLocalEnviron`: lookups in a thread that is running an
invocation check that invocation's variables first, and every other thread sees the real
environment unchanged.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass
class _Layer:
    """One invocation's variables, plus the names its code deleted (hidden from the base)."""

    values: dict[str, str]
    deleted: set[str] = field(default_factory=set)


class ThreadLocalEnviron(os._Environ):  # type: ignore[type-arg]  # os._Environ is private but stable
    """``os.environ`` whose lookups see the current thread's overlay first.

    It shares the real environment's storage (``_data``) and encoders, so outside an overlay it
    behaves exactly like the original ``os.environ`` (writes still call ``putenv``). Inside an
    overlay, writes and deletes stay in the overlay: they are thread-local and vanish when the
    invocation ends, as they would with a fresh Lambda process. Child processes and C code read
    the real process environment, not the overlay.
    """

    def __init__(self, original: os._Environ) -> None:  # type: ignore[type-arg]
        super().__init__(
            original._data,  # type: ignore[attr-defined]
            original.encodekey,
            original.decodekey,
            original.encodevalue,
            original.decodevalue,
        )
        self._local = threading.local()

    def _layer(self) -> _Layer | None:
        stack: list[_Layer] | None = getattr(self._local, "stack", None)
        return stack[-1] if stack else None

    @contextmanager
    def overlay(self, values: Mapping[str, str]) -> Iterator[None]:
        """Make ``values`` visible through ``os.environ`` in the current thread only.

        Overlays nest (a handler that invokes another function synchronously in the same thread
        sees the inner function's variables until that call returns). The base for an inner
        overlay is the real environment, not the outer overlay, as with separate processes.
        """
        stack: list[_Layer] | None = getattr(self._local, "stack", None)
        if stack is None:
            stack = []
            self._local.stack = stack
        stack.append(_Layer(values={str(k): str(v) for k, v in values.items()}))
        try:
            yield
        finally:
            stack.pop()

    def __getitem__(self, key: str) -> str:
        layer = self._layer()
        if layer is not None:
            if key in layer.values:
                return layer.values[key]
            if key in layer.deleted:
                raise KeyError(key)
        value: str = super().__getitem__(key)
        return value

    def __setitem__(self, key: str, value: str) -> None:
        layer = self._layer()
        if layer is None:
            super().__setitem__(key, value)
            return
        self.encodekey(key)  # same type checks as the real os.environ
        self.encodevalue(value)
        layer.values[key] = value
        layer.deleted.discard(key)

    def __delitem__(self, key: str) -> None:
        layer = self._layer()
        if layer is None:
            super().__delitem__(key)
            return
        present = key in self
        layer.values.pop(key, None)
        if not present:
            raise KeyError(key)
        layer.deleted.add(key)

    def __iter__(self) -> Iterator[str]:
        layer = self._layer()
        if layer is None:
            yield from super().__iter__()
            return
        for key in super().__iter__():
            if key not in layer.values and key not in layer.deleted:
                yield key
        yield from list(layer.values)

    def __len__(self) -> int:
        if self._layer() is None:
            return super().__len__()
        return sum(1 for _ in self)

    def __repr__(self) -> str:
        return f"ThreadLocalEnviron({dict(self)!r})"


@contextmanager
def installed_thread_local_environ() -> Iterator[ThreadLocalEnviron]:
    """Swap ``os.environ`` for a :class:`ThreadLocalEnviron` and put the original back on exit.

    ``os.getenv`` reads the module global ``os.environ`` at call time, so it follows the swap;
    code that did ``from os import environ`` before the swap keeps the original object and does
    not see overlays.
    """
    original = os.environ
    replacement = ThreadLocalEnviron(original)
    # Rebinding (not clearing) is the point: the overlay shares the real environment's storage.
    os.environ = replacement  # noqa: B003
    try:
        yield replacement
    finally:
        os.environ = original  # noqa: B003
