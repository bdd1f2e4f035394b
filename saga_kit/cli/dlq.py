"""Parked compensations from the command line: list the DLQ without consuming it, redrive it.

``redrive`` is ``StartMessageMoveTask`` — exactly what the SQS console's "Start DLQ redrive"
does — so the CLI and the console share one path, on AWS and in the local cloud.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from saga_kit.contract import MESSAGE_KIND

#: How long listed messages stay hidden while the listing pages through the queue.
_PEEK_VISIBILITY_SECONDS = 30


class RedriveError(RuntimeError):
    """The DLQ redrive could not run or did not complete."""


@dataclass
class ParkedView:
    """One message of the DLQ, as an operator needs to see it."""

    message_id: str
    saga_type: str | None
    saga_id: str | None
    failed_compensation: str | None
    pending_compensations: list[str]
    error: str | None
    cause: str | None
    #: Since the message was enqueued: the park, or the last DLQ redrive, which gives the
    #: message a new enqueue time (and SQS's retention starts again).
    age_seconds: float
    receive_count: int
    malformed: str | None = None
    #: When the state machine parked the saga, kept through every redrive (the message says).
    parked_at: str | None = None
    #: Seconds since ``parked_at``: what the redrive Lambda's deadline counts.
    parked_age_seconds: float | None = None
    #: Seconds until SQS drops the message (its queue's retention less ``age_seconds``).
    dropped_in_seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable form."""
        return asdict(self)


def _view(message: dict[str, Any], now: float, retention_seconds: float) -> ParkedView:
    attributes = message.get("Attributes", {})
    sent = int(attributes.get("SentTimestamp", now * 1000)) / 1000
    age = max(0.0, now - sent)
    base: dict[str, Any] = {
        "message_id": message["MessageId"],
        "age_seconds": round(age, 1),
        "receive_count": int(attributes.get("ApproximateReceiveCount", 0)),
        "dropped_in_seconds": round(max(0.0, retention_seconds - age), 1),
    }
    try:
        body = json.loads(message["Body"])
        if not isinstance(body, dict):
            raise ValueError("not a JSON object")
    except ValueError as error:
        return ParkedView(saga_type=None, saga_id=None, failed_compensation=None,
                          pending_compensations=[], error=None, cause=None,
                          malformed=f"body is not a parked compensation: {error}", **base)
    state = body.get("state") if isinstance(body.get("state"), dict) else {}
    # Version 2 keeps the compensation failure in the state only; version 1 also at the top.
    failure = state.get("compensation_failure")
    failure = failure if isinstance(failure, dict) and "failed_compensation" in failure else body
    parked_at = body.get("parked_at")
    try:
        parked = datetime.fromisoformat(str(parked_at))
        # Step Functions' times are UTC, with or without the offset written out.
        parked_age = round(now - parked.replace(tzinfo=parked.tzinfo or UTC).timestamp(), 1)
    except ValueError:
        parked_age = None
    return ParkedView(
        saga_type=body.get("saga_type"),
        saga_id=state.get("saga_id") or body.get("execution_name"),
        failed_compensation=failure.get("failed_compensation"),
        pending_compensations=list(failure.get("pending_compensations") or []),
        error=failure.get("error"),
        cause=failure.get("cause"),
        parked_at=str(parked_at) if parked_at else None,
        parked_age_seconds=parked_age,
        malformed=None if body.get("kind") == MESSAGE_KIND else
        f"unexpected kind {body.get('kind')!r}",
        **base,
    )


def peek(sqs: Any, queue_url: str, limit: int = 1000) -> list[dict[str, Any]]:
    """Every message in the queue (raw), without consuming any.

    SQS has no peek: messages are received with a short visibility timeout so that paging makes
    progress, then made visible again at once. Short polls sample only some SQS servers, so an
    empty page before the queue's approximate count is reached is retried with a long poll.
    """
    expected = int(sqs.get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"].get("ApproximateNumberOfMessages", 0))
    received: list[dict[str, Any]] = []
    empty_polls = 0
    try:
        while len(received) < limit:
            page = sqs.receive_message(
                QueueUrl=queue_url, MaxNumberOfMessages=10,
                WaitTimeSeconds=0 if empty_polls == 0 else 1,
                VisibilityTimeout=_PEEK_VISIBILITY_SECONDS, AttributeNames=["All"],
            ).get("Messages", [])
            if page:
                received.extend(page)
                continue
            empty_polls += 1
            if len(received) >= expected or empty_polls > 3:
                break
    finally:
        for message in received:
            sqs.change_message_visibility(QueueUrl=queue_url,
                                          ReceiptHandle=message["ReceiptHandle"],
                                          VisibilityTimeout=0)
    return received


def list_parked(sqs: Any, queue_url: str, limit: int = 1000) -> list[ParkedView]:
    """Every parked saga in the queue, as an operator needs to see it; nothing is consumed."""
    now = time.time()
    retention = float(sqs.get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["MessageRetentionPeriod"]
    )["Attributes"].get("MessageRetentionPeriod", 14 * 86400))
    return [_view(m, now, retention) for m in peek(sqs, queue_url, limit)]


def redrive(sqs: Any, dead_letter_queue_arn: str, destination_arn: str | None = None,
            timeout: float = 300.0) -> dict[str, Any]:
    """Moves every DLQ message back (``StartMessageMoveTask``) and waits for the task to end.

    Returns the finished task as ``ListMessageMoveTasks`` reports it.
    """
    kwargs = {"SourceArn": dead_letter_queue_arn}
    if destination_arn:
        kwargs["DestinationArn"] = destination_arn
    try:
        handle = sqs.start_message_move_task(**kwargs)["TaskHandle"]
    except ClientError as error:
        if "already" in str(error).lower() or "running" in str(error).lower():
            raise RedriveError("a message move task is already running on this DLQ; wait for it "
                               "(saga dlq list shows what is left)") from None
        raise
    deadline = time.monotonic() + timeout
    while True:
        tasks = sqs.list_message_move_tasks(SourceArn=dead_letter_queue_arn, MaxResults=1)
        latest = (tasks.get("Results") or [{}])[0]
        if latest.get("Status") in ("COMPLETED", "CANCELLED", "FAILED"):
            return {"task_handle": handle, **latest}
        if time.monotonic() > deadline:
            raise TimeoutError(f"message move task {handle} still {latest.get('Status')}")
        time.sleep(1.0)
