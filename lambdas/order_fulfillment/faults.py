"""Fault injection for the simulated participants: fail on demand, per saga and step.

A fault is a JSON object ``{"step", "phase", "kind", "times", "seconds"}``:

* ``kind``: ``business_error`` (a definitive no), ``transient_error`` (retried),
  ``timeout`` (sleep past the task timeout, then carry on), or ``crash_after_effect`` (the side
  effect is applied, then the handler fails as if the process had died);
* ``phase``: ``action`` (default) or ``compensation``;
* ``times``: how many invocations it hits before it stops (default: every one);
* ``seconds``: for ``timeout``, how long to sleep (default: past the Lambda's remaining time).

Faults come from the saga input (``"faults": [...]``) or, for a saga whose input says
``"fault_table": true``, from the fault table, where an item
``{"pk": "rules#<saga id>", "faults": "<JSON list>"}`` can be added and removed while the saga
runs, the way an operator fixes a cause (the opt-in spares every other saga a read per step).
Hit counts live in the same table, so ``times`` holds across retries and Lambda instances.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from saga_runtime import BusinessError, StepContext, TransientStepError
from saga_runtime.step import dynamodb_client

BEFORE = ("business_error", "transient_error", "timeout")
AFTER = ("crash_after_effect",)
KINDS = BEFORE + AFTER


class InjectedBusinessError(BusinessError):
    """A business error injected by a fault rule."""


class InjectedTransientError(TransientStepError):
    """A transient error injected by a fault rule (retried like any TransientStepError)."""


class InjectedCrash(RuntimeError):
    """The handler dies after its side effect, as a crashed process would."""


def _rules(ctx: StepContext) -> list[dict[str, Any]]:
    rules = list(ctx.input.get("faults") or [])
    table = os.environ.get("FAULT_TABLE")
    if table and ctx.input.get("fault_table"):
        item = dynamodb_client().get_item(
            TableName=table, Key={"pk": {"S": f"rules#{ctx.saga_id}"}}, ConsistentRead=True
        ).get("Item")
        if item:
            rules.extend(json.loads(item["faults"]["S"]))
    return [
        r
        for r in rules
        if isinstance(r, dict)
        and r.get("step") == ctx.step
        and r.get("phase", "action") == ctx.phase
    ]


def _hits(ctx: StepContext, kind: str) -> int:
    """Counts this invocation against the rule and returns the count so far."""
    answer = dynamodb_client().update_item(
        TableName=os.environ["FAULT_TABLE"],
        Key={"pk": {"S": f"hits#{ctx.saga_id}#{ctx.step}#{ctx.phase}#{kind}"}},
        UpdateExpression="ADD hits :one",
        ExpressionAttributeValues={":one": {"N": "1"}},
        ReturnValues="UPDATED_NEW",
    )
    return int(answer["Attributes"]["hits"]["N"])


def _active(ctx: StepContext, stage: tuple[str, ...]) -> dict[str, Any] | None:
    for rule in _rules(ctx):
        kind = rule.get("kind")
        if kind not in stage:
            continue
        times = rule.get("times")
        if times is None or _hits(ctx, kind) <= int(times):
            return rule
    return None


def before_effect(ctx: StepContext) -> None:
    """Applies a fault meant to strike before the side effect, if one is active."""
    rule = _active(ctx, BEFORE)
    if rule is None:
        return
    kind = rule["kind"]
    if kind == "business_error":
        raise InjectedBusinessError(f"injected business error at {ctx.step} {ctx.phase}")
    if kind == "transient_error":
        raise InjectedTransientError(f"injected transient error at {ctx.step} {ctx.phase}")
    seconds = rule.get("seconds")
    if seconds is None:
        remaining = ctx.lambda_context.get_remaining_time_in_millis() if ctx.lambda_context else 0
        seconds = remaining / 1000 + 2
    time.sleep(float(seconds))


def after_effect(ctx: StepContext) -> None:
    """Applies a fault meant to strike after the side effect, if one is active."""
    if _active(ctx, AFTER) is not None:
        raise InjectedCrash(f"injected crash after the effect of {ctx.step} {ctx.phase}")
