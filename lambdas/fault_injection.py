"""Fault injection for the simulated participants: fail on demand, per saga and step.

A fault is a JSON object ``{"step", "phase", "kind", "times", "seconds"}``:

* ``kind``: ``business_error`` (a definitive no), ``transient_error`` (retried),
  ``timeout`` (outlive the task timeout, then carry on), ``crash_after_effect`` (the side effect
  is applied, then the handler fails as if the process had died), or ``timeout_after_effect``
  (the side effect is applied, then the handler outlives its task timeout and returns). The
  first three strike at the function's entry (:func:`injected`), the last two inside the handler
  after its effect;
* ``phase``: ``action`` (default) or ``compensation``;
* ``times``: how many invocations it hits before it stops (default: every one);
* ``seconds``: for the timeouts, how long to sleep. By default the handler sleeps past its
  Lambda's remaining time by more than the cold-start margin, so past the task timeout, and an
  action whose step has a compensation goes on sleeping until that compensation has marked the
  step's barrier: the late action then lands after its compensation by construction, however
  busy the machine is.

Faults come from the saga input (``"faults": [...]``) or, for a saga whose input says
``"fault_table": true``, from the fault table, where an item
``{"pk": "rules#<saga id>", "faults": "<JSON list>"}`` can be added and removed while the saga
runs, the way an operator fixes a cause (the opt-in spares every other saga a read per step).
Hit counts live in the same table, so ``times`` holds across retries and Lambda instances.
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from saga_kit.runtime import BusinessError, StepBarrier, StepContext, TransientStepError, dynamodb_client

BEFORE = ("business_error", "transient_error", "timeout")
AFTER = ("crash_after_effect", "timeout_after_effect")
#: How far past the Lambda's remaining time a timeout sleeps: the task timeout is at least the
#: Lambda timeout plus the declaration's 2 s cold-start margin.
PAST_TASK_TIMEOUT_SECONDS = 3
#: The longest a late action waits for its compensation before carrying on anyway.
MAX_LATE_WAIT_SECONDS = 120
KINDS = BEFORE + AFTER


class InjectedBusinessError(BusinessError):
    """A business error injected by a fault rule."""


class InjectedCrash(RuntimeError):
    """The handler dies after its side effect, as a crashed process would."""


@dataclass(frozen=True)
class _Target:
    """Which invocation a rule is matched against."""

    saga_id: str
    step: str
    phase: str
    saga_input: dict[str, Any]
    remaining_ms: int
    saga_type: str = ""


def _rules(target: _Target) -> list[dict[str, Any]]:
    rules = list(target.saga_input.get("faults") or [])
    table = os.environ.get("FAULT_TABLE")
    if table and target.saga_input.get("fault_table"):
        item = dynamodb_client().get_item(
            TableName=table, Key={"pk": {"S": f"rules#{target.saga_id}"}}, ConsistentRead=True
        ).get("Item")
        if item:
            rules.extend(json.loads(item["faults"]["S"]))
    return [
        r
        for r in rules
        if isinstance(r, dict)
        and r.get("step") == target.step
        and r.get("phase", "action") == target.phase
    ]


def _hits(target: _Target, kind: str) -> int:
    """Counts this invocation against the rule and returns the count so far."""
    answer = dynamodb_client().update_item(
        TableName=os.environ["FAULT_TABLE"],
        Key={"pk": {"S": f"hits#{target.saga_id}#{target.step}#{target.phase}#{kind}"}},
        UpdateExpression="ADD hits :one",
        ExpressionAttributeValues={":one": {"N": "1"}},
        ReturnValues="UPDATED_NEW",
    )
    return int(answer["Attributes"]["hits"]["N"])


def _active(target: _Target, stage: tuple[str, ...]) -> dict[str, Any] | None:
    for rule in _rules(target):
        kind = rule.get("kind")
        if kind not in stage:
            continue
        times = rule.get("times")
        if times is None or _hits(target, kind) <= int(times):
            return rule
    return None


def injected(handler: Callable[[dict[str, Any], Any], Any]) -> Callable[[dict[str, Any], Any], Any]:
    """Wraps a Lambda handler so faults meant to strike before the side effect hit at its entry.

    Striking at the entry, before the saga runtime, is what an unavailable dependency or a
    broken deployment does: it hits a compensation whether or not there is anything to undo.
    """

    @functools.wraps(handler)
    def with_faults(event: dict[str, Any], context: Any) -> Any:
        target = _target_of(event, context)
        if target is not None:
            _strike_before(target)
        return handler(event, context)

    return with_faults


def _target_of(event: Any, context: Any) -> _Target | None:
    if not isinstance(event, dict) or not isinstance(event.get("state"), dict):
        return None  # malformed: the runtime rejects it
    state = event["state"]
    return _Target(
        saga_id=str(state.get("saga_id") or event.get("execution_name")),
        step=str(event.get("step")),
        phase=str(event.get("phase")),
        saga_input=state,
        remaining_ms=_remaining_ms(context),
        saga_type=str(event.get("saga_type")),
    )


def _strike_before(target: _Target) -> None:
    rule = _active(target, BEFORE)
    if rule is None:
        return
    kind = rule["kind"]
    where = f"{target.step} {target.phase}"
    if kind == "business_error":
        raise InjectedBusinessError(f"injected business error at {where}")
    if kind == "transient_error":
        # Named TransientStepError: this strikes outside the runtime, which would rename it.
        raise TransientStepError(f"injected transient error at {where}")
    _outlive_task_timeout(rule, target)


def _sleep_seconds(rule: dict[str, Any], target: _Target) -> float:
    """The rule's ``seconds``, or long enough to outlive the task timeout."""
    if rule.get("seconds") is not None:
        return float(rule["seconds"])
    return target.remaining_ms / 1000 + PAST_TASK_TIMEOUT_SECONDS


def _outlive_task_timeout(rule: dict[str, Any], target: _Target) -> None:
    time.sleep(_sleep_seconds(rule, target))
    waits_for_compensation = (rule.get("seconds") is None and target.phase == "action"
                              and os.environ.get("SAGA_HAS_COMPENSATION") == "true")
    if not waits_for_compensation:
        return
    barrier = StepBarrier(dynamodb_client(), os.environ["SAGA_BARRIER_TABLE"],
                          target.saga_type, target.saga_id, target.step)
    deadline = time.monotonic() + MAX_LATE_WAIT_SECONDS
    while not barrier.compensated() and time.monotonic() < deadline:
        time.sleep(0.05)


def after_effect(ctx: StepContext) -> None:
    """Applies a fault meant to strike after the side effect, if one is active."""
    target = _Target(ctx.saga_id, ctx.step, ctx.phase, ctx.input,
                     _remaining_ms(ctx.lambda_context), ctx.saga_type)
    rule = _active(target, AFTER)
    if rule is None:
        return
    if rule["kind"] == "crash_after_effect":
        raise InjectedCrash(f"injected crash after the effect of {ctx.step} {ctx.phase}")
    # timeout_after_effect: the effect stands, the answer comes too late for Step Functions.
    time.sleep(_sleep_seconds(rule, target))


def _remaining_ms(context: Any) -> int:
    return context.get_remaining_time_in_millis() if context is not None else 0


def count_run(ctx: StepContext) -> None:
    """Counts one execution of a handler body for (saga, step, phase), with no guard at all, so
    a test can prove a compensation's body ran exactly once, not just that its effect is right."""
    dynamodb_client().update_item(
        TableName=os.environ["FAULT_TABLE"],
        Key={"pk": {"S": f"runs#{ctx.saga_id}#{ctx.step}#{ctx.phase}"}},
        UpdateExpression="ADD runs :one",
        ExpressionAttributeValues={":one": {"N": "1"}},
    )
