"""Fault injection for the example apps' simulated participants: fail on demand, per saga and step.

One module for every example app under ``lambdas/`` (order fulfillment, travel booking): it sits
at the top of the Lambda code dir, so each participant imports it as
``import fault_injection as faults`` and every app's tests inject faults the same way.

A fault is a JSON object ``{"step", "phase", "kind", "times", "seconds"}``:

* ``kind``: ``business_error`` (a definitive no), ``transient_error`` (retried),
  ``timeout`` (outlive the task timeout, then carry on), ``crash_after_effect`` (the side effect
  is applied, then the handler fails as if the process had died), or ``timeout_after_effect``
  (the side effect is applied, then the handler outlives its task timeout and returns). The
  first three strike at the function's entry (:func:`injected`), the last two inside the handler
  after its effect (:func:`after_effect`). Callback steps have five more kinds, below;
* ``phase``: ``action`` (default) or ``compensation``;
* ``times``: how many invocations it hits before it stops (default: every one);
* ``seconds``: for the timeouts, how long to sleep. By default the handler sleeps past its
  task timeout (a synchronous step: its Lambda's remaining time, which the task timeout exceeds
  by less than the cold-start margin; a callback step: ``SAGA_TASK_TIMEOUT_SECONDS``), and an
  action whose step has a compensation goes on sleeping until that compensation has marked the
  step's barrier: the late action then lands after its compensation by construction, however
  busy the machine is.

Callback steps. Their worker Lambda consumes the step's SQS queue: the event is
``{"Records": [...]}`` and each record's body is a command, the usual step event plus
``"task_token"``. :func:`injected` splits the batch into one single-record event per record,
applies that command's faults, calls the handler per record and returns the union of the answers'
``batchItemFailures`` (a partial batch failure only ever names messages of the batch it got).
The kinds above keep their places. A ``business_error`` or ``transient_error`` at the entry is
answered to Step Functions with ``SendTaskFailure`` named after the error, as the runtime answers
a handler's error: a worker that raised would be seen by SQS only, and the saga would wait for
the task timeout instead of compensating (or retrying) at once. The kinds only callback workers
have (:data:`CALLBACK_KINDS`, action or compensation):

* ``no_reply``: the worker takes the command and sends heartbeats (every third of the declared
  heartbeat, ``SAGA_CALLBACK_HEARTBEAT_SECONDS``, at most every 0.2 s; none when no heartbeat is
  declared) until Step Functions refuses one because the task is closed, or the task timeout
  (``SAGA_TASK_TIMEOUT_SECONDS``) plus 3 s has passed; then it consumes the message without
  running the handler: no effect, no reply, the task times out;
* ``missed_heartbeat``: the worker goes silent for the heartbeat plus 1 s (past the task
  timeout when no heartbeat is declared), waits until the step's barrier says compensated (an
  action with a compensation), then runs the handler: the runtime's barrier refuses the late
  action and Step Functions refuses its reply;
* ``late_reply``: like ``no_reply`` until the task is closed, then, like ``missed_heartbeat``,
  waits for the compensation and runs the handler;
* ``duplicate_reply``: runs the handler, then sends ``SendTaskSuccess`` again with the same token
  (output ``{}``); Step Functions refuses it, and that refusal is ignored;
* ``duplicate_delivery``: SQS delivers the command twice: the handler gets a two-record event
  whose records carry the same body (the second one's ``messageId`` ends in ``-duplicate``).

Faults come from the saga input (``"faults": [...]``) or, for a saga whose input says
``"fault_table": true``, from the fault table, where an item
``{"pk": "rules#<saga id>", "faults": "<JSON list>"}`` can be added and removed while the saga
runs, the way an operator fixes a cause (the opt-in spares every other saga a read per step).
Hit counts live in the same table, so ``times`` holds across retries and Lambda instances.

The local cloud runs many invocations at once in one process, and ``os.environ`` is a per-thread
overlay there: this module keeps no mutable state of its own and starts no threads (a heartbeat
loop runs in the invocation's own thread, where the function's environment is visible).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from saga_kit.runtime import (
    BusinessError,
    StepBarrier,
    StepContext,
    TransientStepError,
    aws_client,
    dynamodb_client,
)

BEFORE = ("business_error", "transient_error", "timeout")
AFTER = ("crash_after_effect", "timeout_after_effect")
#: The kinds only a callback step's worker has: they strike at the worker's entry, per command.
CALLBACK_KINDS = ("no_reply", "missed_heartbeat", "late_reply", "duplicate_reply",
                  "duplicate_delivery")
KINDS = BEFORE + AFTER + CALLBACK_KINDS
#: How far past the Lambda's remaining time a timeout sleeps: the task timeout is at least the
#: Lambda timeout plus the declaration's 2 s cold-start margin. For a callback step, how far
#: past the task timeout a silent worker stays silent.
PAST_TASK_TIMEOUT_SECONDS = 3
#: The longest a late action waits for its compensation before carrying on anyway.
MAX_LATE_WAIT_SECONDS = 120
#: How often a worker heartbeats: a third of the declared heartbeat, so two can be lost in a
#: row; never more often than this.
MIN_HEARTBEAT_INTERVAL_SECONDS = 0.2
#: Step Functions' answers to a heartbeat or a reply for a task that is closed.
TASK_CLOSED_ERRORS = frozenset({"TaskTimedOut", "TaskDoesNotExist", "InvalidToken"})
#: The worker environment (see the declaration's callback steps).
HEARTBEAT_ENV = "SAGA_CALLBACK_HEARTBEAT_SECONDS"
TASK_TIMEOUT_ENV = "SAGA_TASK_TIMEOUT_SECONDS"

logger = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any], Any], Any]


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
    #: The callback task's token: set for a command a worker took from the step's queue.
    task_token: str | None = None


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


def injected(handler: Handler) -> Handler:
    """Wraps a Lambda handler so faults meant to strike before the side effect hit at its entry.

    Striking at the entry, before the saga runtime, is what an unavailable dependency or a
    broken deployment does: it hits a compensation whether or not there is anything to undo.
    For a callback step's worker (an SQS event), each command of the batch gets its own faults.
    """

    @functools.wraps(handler)
    def with_faults(event: dict[str, Any], context: Any) -> Any:
        if isinstance(event, dict) and isinstance(event.get("Records"), list):
            return _worker(handler, event, context)
        target = _target_of(event, context)
        if target is not None:
            _strike_before(target)
        return handler(event, context)

    return with_faults


def _target_of(event: Any, context: Any) -> _Target | None:
    if not isinstance(event, dict) or not isinstance(event.get("state"), dict):
        return None  # malformed: the runtime rejects it
    state = event["state"]
    token = event.get("task_token")
    return _Target(
        saga_id=str(state.get("saga_id") or event.get("execution_name")),
        step=str(event.get("step")),
        phase=str(event.get("phase")),
        saga_input=state,
        remaining_ms=_remaining_ms(context),
        saga_type=str(event.get("saga_type")),
        task_token=token if isinstance(token, str) and token else None,
    )


def _strike_before(target: _Target) -> None:
    rule = _active(target, BEFORE)
    if rule is None:
        return
    error = _error_for(rule, target)
    if error is not None:
        raise error
    _outlive_task_timeout(rule, target)


def _error_for(rule: dict[str, Any], target: _Target) -> Exception | None:
    """The error a ``business_error`` or ``transient_error`` rule raises (``None``: another kind)."""
    where = f"{target.step} {target.phase}"
    if rule["kind"] == "business_error":
        return InjectedBusinessError(f"injected business error at {where}")
    if rule["kind"] == "transient_error":
        # Named TransientStepError: this strikes outside the runtime, which would rename it.
        return TransientStepError(f"injected transient error at {where}")
    return None


def _time_left_seconds(target: _Target) -> float:
    """How long until Step Functions gives up on this invocation's task.

    A synchronous step: the Lambda's remaining time (the task timeout is a little longer). A
    callback step: the task's own timeout, counted from the command's arrival (a little late).
    """
    if target.task_token is not None and os.environ.get(TASK_TIMEOUT_ENV):
        return float(os.environ[TASK_TIMEOUT_ENV])
    return target.remaining_ms / 1000


def _sleep_seconds(rule: dict[str, Any], target: _Target) -> float:
    """The rule's ``seconds``, or long enough to outlive the task timeout."""
    if rule.get("seconds") is not None:
        return float(rule["seconds"])
    return _time_left_seconds(target) + PAST_TASK_TIMEOUT_SECONDS


def _outlive_task_timeout(rule: dict[str, Any], target: _Target) -> None:
    time.sleep(_sleep_seconds(rule, target))
    if rule.get("seconds") is None:
        _wait_for_compensation(target)


def _wait_for_compensation(target: _Target) -> None:
    """For an action whose step has a compensation: waits until that compensation has marked
    the step's barrier (at most :data:`MAX_LATE_WAIT_SECONDS`), so what follows is late by
    construction. Anything else has no compensation to wait for and returns at once."""
    if target.phase != "action" or os.environ.get("SAGA_HAS_COMPENSATION") != "true":
        return
    barrier = StepBarrier(dynamodb_client(), os.environ["SAGA_BARRIER_TABLE"],
                          target.saga_type, target.saga_id, target.step)
    deadline = time.monotonic() + MAX_LATE_WAIT_SECONDS
    while not barrier.compensated() and time.monotonic() < deadline:
        time.sleep(0.05)


# -- callback workers -------------------------------------------------------------------------


def _worker(handler: Handler, event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Runs a worker's SQS batch one command at a time, each with its own faults."""
    failures: list[dict[str, Any]] = []
    for record in event["Records"]:
        for failure in _one_command(handler, event, record, context):
            if failure not in failures:
                failures.append(failure)
    return {"batchItemFailures": failures}


def _one_command(handler: Handler, event: dict[str, Any], record: Any,
                 context: Any) -> list[dict[str, Any]]:
    single = {**event, "Records": [record]}
    target = _target_of(_command_of(record), context)
    if target is None or target.task_token is None:
        return _failures_of(handler(single, context))  # not a command: the runtime answers it
    rule = _active(target, BEFORE + CALLBACK_KINDS)
    if rule is None:
        return _failures_of(handler(single, context))
    kind = rule["kind"]
    error = _error_for(rule, target)
    if error is not None:
        _reply_failure(target, error)
        return []  # answered: the message is consumed
    if kind == "timeout":
        _outlive_task_timeout(rule, target)
    elif kind == "no_reply":
        _heartbeat_until_closed(target)
        logger.warning(f"injected no_reply: {target.step} {target.phase} consumed unanswered")
        return []
    elif kind == "missed_heartbeat":
        time.sleep(_silence_seconds(target))
        _wait_for_compensation(target)
    elif kind == "late_reply":
        _heartbeat_until_closed(target)
        _wait_for_compensation(target)
    elif kind == "duplicate_reply":
        failures = _failures_of(handler(single, context))
        if not failures:  # answered; a failed record may not have been, and must not be now
            _reply_again(target)
        return failures
    elif kind == "duplicate_delivery":
        return _deliver_twice(handler, event, record, context)
    return _failures_of(handler(single, context))


def _command_of(record: Any) -> Any:
    """The command an SQS record carries (``None`` if it is not a JSON object)."""
    if not isinstance(record, dict) or not isinstance(record.get("body"), str):
        return None
    try:
        return json.loads(record["body"])
    except ValueError:
        return None


def _failures_of(answer: Any) -> list[dict[str, Any]]:
    if not isinstance(answer, dict):
        return []
    return [f for f in answer.get("batchItemFailures") or [] if isinstance(f, dict)]


def _heartbeat_seconds() -> int | None:
    value = os.environ.get(HEARTBEAT_ENV)
    return int(value) if value else None


def _silence_seconds(target: _Target) -> float:
    """How long a worker that misses its heartbeat stays silent: past the heartbeat timeout, or
    past the task timeout when no heartbeat is declared."""
    heartbeat = _heartbeat_seconds()
    if heartbeat is not None:
        return heartbeat + 1
    return _time_left_seconds(target) + PAST_TASK_TIMEOUT_SECONDS


def _is_task_closed(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code") in TASK_CLOSED_ERRORS


def _heartbeat_until_closed(target: _Target) -> bool:
    """Keeps the task alive until Step Functions closes it (``True``) or the task timeout plus
    :data:`PAST_TASK_TIMEOUT_SECONDS` has passed (``False``).

    Without a declared heartbeat there is nothing to keep alive: the worker only waits that
    long, since a heartbeat would not tell it anything either (moto refuses a heartbeat for a
    task declared without one as an invalid token, as if it were closed).
    """
    deadline = time.monotonic() + _time_left_seconds(target) + PAST_TASK_TIMEOUT_SECONDS
    heartbeat = _heartbeat_seconds()
    if heartbeat is None:
        time.sleep(max(0.0, deadline - time.monotonic()))
        return False
    interval = max(MIN_HEARTBEAT_INTERVAL_SECONDS, heartbeat / 3)
    client = aws_client("stepfunctions")
    while True:
        try:
            client.send_task_heartbeat(taskToken=target.task_token)
        except ClientError as error:
            if _is_task_closed(error):
                return True
            logger.warning(f"heartbeat not sent, trying again: {error}")  # throttled, say
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(interval, left))


def _reply_failure(target: _Target, error: Exception) -> None:
    """Answers the task with ``error``, as the runtime answers a handler's error."""
    try:
        aws_client("stepfunctions").send_task_failure(
            taskToken=target.task_token, error=type(error).__name__, cause=str(error))
    except ClientError as refused:
        if not _is_task_closed(refused):
            raise  # the batch fails and SQS delivers the command again
        logger.warning(f"{target.step} {target.phase}: task closed, failure not delivered")


def _reply_again(target: _Target) -> None:
    """A second ``SendTaskSuccess`` for a task already answered: Step Functions refuses it."""
    try:
        aws_client("stepfunctions").send_task_success(taskToken=target.task_token, output="{}")
    except ClientError as refused:
        logger.info(f"injected duplicate_reply refused as expected: {refused}")
    else:
        logger.warning(f"injected duplicate_reply of {target.step} {target.phase} was accepted")


def _deliver_twice(handler: Handler, event: dict[str, Any], record: dict[str, Any],
                   context: Any) -> list[dict[str, Any]]:
    """Hands the handler the command twice in one batch, as an at-least-once queue may."""
    message_id = str(record.get("messageId", ""))
    twin = {**record, "messageId": f"{message_id}-duplicate"}
    answer = handler({**event, "Records": [record, twin]}, context)
    # A failure of either copy is a failure of the one message SQS knows: an identifier that is
    # not in the batch would fail the whole batch on AWS.
    failures: list[dict[str, Any]] = []
    for failure in _failures_of(answer):
        if failure.get("itemIdentifier") == twin["messageId"]:
            failure = {**failure, "itemIdentifier": message_id}
        if failure not in failures:
            failures.append(failure)
    return failures


# -- inside the handler ---------------------------------------------------------------------


def after_effect(ctx: StepContext) -> None:
    """Applies a fault meant to strike after the side effect, if one is active."""
    target = _Target(ctx.saga_id, ctx.step, ctx.phase, ctx.input,
                     _remaining_ms(ctx.lambda_context), ctx.saga_type,
                     getattr(ctx, "task_token", None))
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
