"""Step Functions' execution status events → the saga store.

The handlers keep the store current while a saga runs (``running``, ``compensating``); this
Lambda records how each execution ended, because only Step Functions decides that: a task can
time out after its handler returned, and then the saga is compensated, not completed. It also
records the endings no handler sees: a forward recovery that gave up (``ForwardRecoveryFailed``),
parking that failed (``ParkingFailed``), a payload over Step Functions' limit
(``States.DataLimitExceeded``), an execution stopped by an operator (``ABORTED``) or past its
timeout (``TIMED_OUT``). Each of those unexpected endings is recorded ``failed`` with its reason
and counted in the ``SagaFailedUnexpectedly`` metric, which has an alarm.

An execution redriven in Step Functions (``RedriveExecution``) sends a RUNNING event with a
``redriveCount``: the saga goes back from ``failed`` to work.

It receives the EventBridge event "Step Functions Execution Status Change" of the saga's state
machine. An event it cannot read raises, so EventBridge retries it and then parks it in the
rule's dead-letter queue.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent, event_source

from saga_kit.contract import STATUS_CHANGE_DETAIL_TYPE, Env
from saga_kit.runtime import store
from saga_kit.runtime.step import dynamodb_client
from saga_kit.runtime.version import check_kit_version

logger = Logger()

DETAIL_TYPE = STATUS_CHANGE_DETAIL_TYPE


class UnreadableStatusEvent(ValueError):
    """Not an execution status event of this saga; retried, then parked in the rule's DLQ."""


def _stop_time(detail: dict[str, Any]) -> datetime:
    stop = detail.get("stopDate")
    if isinstance(stop, (int, float)):
        return datetime.fromtimestamp(stop / 1000, UTC)
    return datetime.now(UTC)


@event_source(data_class=EventBridgeEvent)
@logger.inject_lambda_context
def handler(event: EventBridgeEvent, context: Any) -> dict[str, Any]:
    """Records the execution's ending (or its redrive) in the store; returns what it recorded."""
    check_kit_version()
    if event.detail_type != DETAIL_TYPE or not isinstance(event.detail, dict):
        raise UnreadableStatusEvent(f"not an execution status event: {event.detail_type!r}")
    detail = event.detail
    execution_arn, name, status = (detail.get("executionArn"), detail.get("name"),
                                   detail.get("status"))
    if not (isinstance(execution_arn, str) and isinstance(name, str) and isinstance(status, str)):
        raise UnreadableStatusEvent("the event lacks executionArn, name or status")
    saga_type, table = os.environ[Env.SAGA_TYPE], os.environ[Env.STORE_TABLE]
    if status == "RUNNING":
        redrives = int(detail.get("redriveCount") or 0)
        if not redrives:
            return {"saga_id": name, "recorded": None}
        reopened = store.reopen(dynamodb_client(), table, saga_type, name,
                                execution_arn=execution_arn, redrive_count=redrives)
        logger.info("execution redriven", extra={"saga_id": name, "redrive_count": redrives,
                                                 "store_status": reopened})
        return {"saga_id": name, "recorded": reopened}
    target = store.status_of_execution(status, detail.get("error"))
    if target is None:
        return {"saga_id": name, "recorded": None}
    sets: dict[str, Any] = {"execution_arn": execution_arn, "execution_status": status}
    error = str(detail.get("error") or "")
    if error:
        sets["execution_error"] = error[: store.MAX_ERROR_CHARS]
        cause = detail.get("cause")
        if cause:
            sets["execution_cause"] = _cause(cause)
    expected = store.is_expected_ending(status, error)
    if not expected:
        sets["unexpected_ending"] = f"{status}: {error}" if error else status
    moved = store.move(dynamodb_client(), table, saga_type, name, target, extra_set=sets,
                       now=_stop_time(detail))
    if not expected:
        # Counted by the outcome metrics from the store's change (SagaFailedUnexpectedly), once
        # however often this event is delivered; which saga and why go to this log line.
        logger.error("saga ended unexpectedly", extra={"saga_id": name, "execution_status": status,
                                                       "error": error})
    logger.info("execution ended", extra={"saga_id": name, "execution_status": status,
                                          "store_status": target, "moved": moved,
                                          "expected": expected})
    return {"saga_id": name, "recorded": target if moved else None, "expected": expected}


def _cause(cause: str) -> Any:
    """The cause as JSON when it is (the saga's Fail states write JSON), else cut text."""
    try:
        parsed = json.loads(cause)
    except ValueError:
        return cause[: store.MAX_ERROR_CHARS * 4]
    return parsed if len(cause) <= 16 * 1024 else cause[:16 * 1024]
