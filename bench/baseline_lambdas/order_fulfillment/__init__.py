"""Baseline handlers for the benchmark: same module paths as the real ones, no work at all.

Each handler only echoes its input (without the growing saga state) and, so that the compensated
path can be measured too, raises when the saga input asks its step to fail. No Powertools, no
DynamoDB: the benchmark's "bare" reference for the very same state machine.
"""

from typing import Any


class InjectedBusinessError(Exception):
    """The baseline's stand-in for a business error."""


def echo(event: dict[str, Any], _context: Any = None) -> dict[str, Any]:
    """Returns the event minus the saga state; fails if the input names this step in faults."""
    state = event.get("state") or {}
    if event.get("phase") == "action" and any(
        f.get("step") == event.get("step") for f in state.get("faults") or []
    ):
        raise InjectedBusinessError(f"baseline failure at {event.get('step')}")
    return {k: v for k, v in event.items() if k != "state"}
