"""Waiting for state in tests: poll with a deadline, never a fixed sleep."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def poll(condition: Callable[[], Any], what: str, deadline_seconds: float = 30,
         interval_seconds: float = 0.05) -> Any:
    """The condition's first truthy value, polled until the deadline (then the test fails
    saying ``what`` it waited for)."""
    deadline = time.monotonic() + deadline_seconds
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"still not {what} after {deadline_seconds} s"
        time.sleep(interval_seconds)
