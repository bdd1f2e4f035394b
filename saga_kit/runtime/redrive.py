"""The redrive Lambda: finishes parked compensations from the saga's compensation queue.

Each message (see ``saga_kit/cdk/parking.py``) names the compensation that failed and those still
pending, in strict reverse order, with the saga state they need. The redrive invokes the very
compensation functions the state machine uses, with the same event, so the same idempotency keys
apply: a compensation that already ran returns its stored result and does nothing again. The
batch reports partial failures: a message that cannot be finished (still failing, or malformed)
goes back to the queue on its own and, after ``maxReceiveCount`` deliveries, to the DLQ.

Every delivery first keeps the records those compensations depend on alive (see
:mod:`saga_kit.runtime.retention`), then checks the deadline: a message parked longer ago than
``SAGA_PARKED_DEADLINE_SECONDS`` is refused (metric ``ParkedPastDeadline``, which has an alarm;
the saga stays parked and the message goes on to the DLQ) instead of acting on a saga that old.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import boto3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from botocore.config import Config

from saga_kit.contract import (
    DEFAULT_PARKED_DEADLINE_SECONDS,
    MESSAGE_KIND,
    MESSAGE_VERSIONS,
    PAST_DEADLINE_METRIC,
    Env,
)
from saga_kit.runtime import store
from saga_kit.runtime.metrics import saga_metrics
from saga_kit.runtime.retention import keep_parked_records
from saga_kit.runtime.step import dynamodb_client
from saga_kit.runtime.version import check_kit_version

logger = Logger()
_invoker: Any = None
processor = BatchProcessor(event_type=EventType.SQS)


class PoisonMessage(ValueError):
    """A message that can never be finished as it is; it is left for the dead-letter queue."""


class CompensationStillFailing(RuntimeError):
    """A pending compensation failed again; the message goes back to the queue."""


class ParkedPastDeadline(RuntimeError):
    """The saga was parked longer ago than the deadline: refused, left parked, alarmed."""


@dataclass(frozen=True)
class ParkedCompensation:
    """A parked saga: what failed and what is left to undo, in order."""

    saga_type: str
    saga_id: str
    execution_arn: str
    execution_name: str
    failed_compensation: str
    pending_compensations: tuple[str, ...]
    state: dict[str, Any]
    error: str
    cause: str
    #: When the state machine parked the saga (``None`` if the message does not say).
    parked_at: datetime | None = None

    @property
    def remaining(self) -> list[str]:
        """The compensations to run, in strict reverse order of their steps."""
        return [self.failed_compensation, *self.pending_compensations]

    @classmethod
    def from_body(cls, body: str, *, saga_type: str, known_steps: set[str],
                  plans: dict[str, list[str]] | None = None) -> ParkedCompensation:
        """Parses and checks a message body.

        Raises:
            PoisonMessage: with the reason, if the body is not a parked compensation of this saga.
        """
        try:
            message = json.loads(body)
        except (TypeError, ValueError) as error:
            raise PoisonMessage(f"body is not JSON: {error}") from None
        if not isinstance(message, dict):
            raise PoisonMessage("body is not a JSON object")
        if message.get("kind") != MESSAGE_KIND or message.get("version") not in MESSAGE_VERSIONS:
            raise PoisonMessage(
                f"not a parked compensation (kind={message.get('kind')!r}, "
                f"version={message.get('version')!r})"
            )
        if message["version"] >= 2:
            failure = (message.get("state") or {}).get("compensation_failure")
            if not isinstance(failure, dict):
                raise PoisonMessage("missing fields: state.compensation_failure")
            message = {**failure, **message}
        missing = [k for k in ("saga_type", "execution_arn", "execution_name", "failed_compensation",
                               "pending_compensations", "state") if k not in message]
        if missing:
            raise PoisonMessage(f"missing fields: {', '.join(missing)}")
        if message["saga_type"] != saga_type:
            raise PoisonMessage(f"unknown saga type {message['saga_type']!r} (this is {saga_type!r})")
        state = message["state"]
        pending = message["pending_compensations"]
        if not isinstance(state, dict) or not isinstance(pending, list):
            raise PoisonMessage("state must be an object and pending_compensations a list")
        remaining = [message["failed_compensation"], *pending]
        if not all(isinstance(s, str) for s in remaining):
            raise PoisonMessage("step names must be strings")
        unknown = [s for s in remaining if s not in known_steps]
        if unknown:
            raise PoisonMessage(f"no compensation for step(s) {unknown}")
        if plans is not None and remaining != plans.get(remaining[0]):
            raise PoisonMessage(
                f"compensations {remaining} are not the declared order after {remaining[0]} "
                f"failed ({plans.get(remaining[0])})"
            )
        execution_name = message["execution_name"]
        saga_id = state.get("saga_id") or execution_name
        if not isinstance(saga_id, str) or not saga_id or saga_id != execution_name:
            raise PoisonMessage("the saga id (state.saga_id) must be the execution name")
        parked_at = None
        if message.get("parked_at") is not None:
            try:
                parked_at = datetime.fromisoformat(str(message["parked_at"]))
                if parked_at.tzinfo is None:  # Step Functions' times are UTC
                    parked_at = parked_at.replace(tzinfo=UTC)
            except ValueError:
                raise PoisonMessage(f"parked_at {message['parked_at']!r} is not a time") from None
        return cls(
            saga_type=saga_type,
            saga_id=saga_id,
            execution_arn=str(message["execution_arn"]),
            execution_name=str(message["execution_name"]),
            failed_compensation=message["failed_compensation"],
            pending_compensations=tuple(pending),
            state=state,
            error=str(message.get("error", "")),
            cause=str(message.get("cause", "")),
            parked_at=parked_at,
        )

    def parked_for_seconds(self, now: float) -> float | None:
        """Seconds since the saga was parked (through every redrive), if the message says."""
        return None if self.parked_at is None else now - self.parked_at.timestamp()


def _lambda_client() -> Any:
    """A Lambda client that waits as long as a compensation may run and never re-sends an
    invocation on its own (a second call while the first still runs would only wait on the
    idempotency record)."""
    global _invoker
    if _invoker is None:
        timeout = int(os.environ.get(Env.COMPENSATION_TIMEOUT, "60")) + 5
        _invoker = boto3.client("lambda", config=Config(
            read_timeout=timeout, connect_timeout=5, retries={"max_attempts": 0}))
    return _invoker


def _compensate(parked: ParkedCompensation, step: str, function_name: str) -> dict[str, Any]:
    event = {
        "saga_type": parked.saga_type,
        "step": step,
        "phase": "compensation",
        "execution_name": parked.execution_name,
        "execution_arn": parked.execution_arn,
        "state": parked.state,
    }
    answer = _lambda_client().invoke(FunctionName=function_name,
                                     Payload=json.dumps(event).encode())
    payload = json.loads(answer["Payload"].read() or b"null")
    if answer.get("FunctionError"):
        detail = payload if isinstance(payload, dict) else {}
        raise CompensationStillFailing(
            f"compensation of {step} failed again: {detail.get('errorType')}: "
            f"{detail.get('errorMessage')}"
        )
    return payload


def _mark_compensated(parked: ParkedCompensation, finished_by: str) -> None:
    # The last compensation's own store write may already have said "compensated"; either way
    # the saga is finished, and the record says who finished it.
    moved = store.move(
        dynamodb_client(), os.environ[Env.STORE_TABLE], parked.saga_type, parked.saga_id,
        store.COMPENSATED,
        extra_set={"finished_by": finished_by, "execution_arn": parked.execution_arn},
    )
    if not moved:
        logger.info("saga was already finished; its status is left as it is")


def finish_parked_saga(record: SQSRecord, lambda_context: Any = None) -> dict[str, Any]:
    """Runs the remaining compensations of one parked saga, then records it compensated."""
    functions: dict[str, str] = json.loads(os.environ[Env.COMPENSATION_FUNCTIONS])
    if lambda_context is not None:
        needed_ms = 1000 * (5 + int(os.environ.get(Env.COMPENSATION_TIMEOUT, "60"))
                            * len(functions))
        if lambda_context.get_remaining_time_in_millis() < needed_ms:
            # Not enough time left in this invocation: back to the queue untouched, rather than
            # be cut off halfway by the Lambda timeout.
            raise CompensationStillFailing("not enough time left in this batch; retried later")
    try:
        parked = ParkedCompensation.from_body(
            record.body, saga_type=os.environ[Env.SAGA_TYPE], known_steps=set(functions),
            plans=json.loads(os.environ.get(Env.COMPENSATION_PLANS, "null")),
        )
    except PoisonMessage as error:
        logger.error("poison message left for the dead-letter queue",
                     extra={"message_id": record.message_id, "reason": str(error)})
        raise
    logger.thread_safe_append_keys(correlation_id=parked.saga_id, saga_id=parked.saga_id,
                                   saga_type=parked.saga_type)
    try:
        now = time.time()
        # First, whatever happens next: the records the remaining compensations depend on must
        # outlive this message (and any redrive of it).
        records = keep_parked_records(
            dynamodb_client(), saga_type=parked.saga_type, saga_id=parked.saga_id,
            steps=parked.remaining, barrier_table=os.environ[Env.BARRIER_TABLE],
            idempotency_table=os.environ[Env.IDEMPOTENCY_TABLE], now=now)
        _check_deadline(parked, now, records)
        results = {}
        for step in parked.remaining:
            results[step] = _compensate(parked, step, functions[step])
        finished_by = (
            f"redrive:{os.environ.get('AWS_LAMBDA_FUNCTION_NAME', 'redrive')}"
            f"/message:{record.message_id}/receive:{record.attributes.approximate_receive_count}"
        )
        _mark_compensated(parked, finished_by)
        logger.info("parked saga compensated", extra={"compensations": parked.remaining})
        return results
    except CompensationStillFailing as error:
        logger.warning(str(error), extra={"receive_count":
                                          record.attributes.approximate_receive_count})
        raise
    finally:
        logger.thread_safe_clear_keys()


def _check_deadline(parked: ParkedCompensation, now: float,
                    records: dict[str, dict[str, bool]]) -> None:
    """Refuses a saga parked longer ago than the deadline: nothing is run, nothing guessed."""
    deadline = int(os.environ.get(Env.PARKED_DEADLINE_SECONDS,
                                  DEFAULT_PARKED_DEADLINE_SECONDS))
    age = parked.parked_for_seconds(now)
    if age is None or age <= deadline:
        return
    days = f"{age / 86400:.1f} days ago, past the deadline of {deadline / 86400:g} days"
    logger.error("parked saga refused: past its deadline; finish it by hand",
                 extra={"parked_at": parked.parked_at.isoformat() if parked.parked_at else None,
                        "remaining": parked.remaining, "records": records})
    metrics = saga_metrics(parked.saga_type)
    metrics.add_metric(name=PAST_DEADLINE_METRIC, unit=MetricUnit.Count, value=1)
    metrics.flush_metrics()
    store.move(dynamodb_client(), os.environ[Env.STORE_TABLE], parked.saga_type,
               parked.saga_id, store.PARKED,
               extra_set={"parked_past_deadline_at": store.timestamp()})
    raise ParkedPastDeadline(f"saga {parked.saga_id} was parked {days}; refused")


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """SQS batch handler with partial batch failures."""
    check_kit_version()
    return process_partial_response(event=event, record_handler=finish_parked_saga,
                                    processor=processor, context=context)
