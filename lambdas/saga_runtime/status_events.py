"""Step Functions' execution status events → the saga store.

The handlers keep the store current while a saga runs; this Lambda records how each execution
ended, including the endings no handler sees: a forward recovery that gave up
(``ForwardRecoveryFailed``), parking that failed (``ParkingFailed``), an execution stopped by an
operator (``ABORTED``) or past its timeout (``TIMED_OUT``). It receives the EventBridge event
"Step Functions Execution Status Change" of the saga's state machine. An event it cannot read
raises, so EventBridge retries it and then parks it in the rule's dead-letter queue.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent, event_source

from saga_runtime import store
from saga_runtime.step import dynamodb_client

logger = Logger()

DETAIL_TYPE = "Step Functions Execution Status Change"
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
    """Records the execution's ending in the store; returns what it recorded."""
    if event.detail_type != DETAIL_TYPE or not isinstance(event.detail, dict):
        raise UnreadableStatusEvent(f"not an execution status event: {event.detail_type!r}")
    detail = event.detail
    execution_arn, name, status = (detail.get("executionArn"), detail.get("name"),
                                   detail.get("status"))
    if not (isinstance(execution_arn, str) and isinstance(name, str) and isinstance(status, str)):
        raise UnreadableStatusEvent("the event lacks executionArn, name or status")
    target = store.status_of_execution(status, detail.get("error"))
    if target is None:
        return {"saga_id": name, "recorded": None}
    saga_type = os.environ["SAGA_TYPE"]
    sets: dict[str, Any] = {"execution_arn": execution_arn, "execution_status": status}
    if detail.get("error"):
        sets["execution_error"] = str(detail["error"])[: store.MAX_ERROR_CHARS]
        cause = detail.get("cause")
        if cause:
            sets["execution_cause"] = _cause(cause)
    moved = store.move(dynamodb_client(), os.environ["SAGA_STORE_TABLE"], saga_type, name,
                       target, extra_set=sets, now=_stop_time(detail))
    logger.info("execution ended", extra={"saga_id": name, "execution_status": status,
                                          "store_status": target, "moved": moved})
    return {"saga_id": name, "recorded": target if moved else None}


def _cause(cause: str) -> Any:
    """The cause as JSON when it is (the saga's Fail states write JSON), else cut text."""
    try:
        parsed = json.loads(cause)
    except ValueError:
        return cause[: store.MAX_ERROR_CHARS * 4]
    return parsed if len(cause) <= 16 * 1024 else cause[:16 * 1024]
