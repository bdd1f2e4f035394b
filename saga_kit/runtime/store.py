"""The saga store, from the handlers' side: one DynamoDB item per saga, kept current as it runs.

Item (key ``saga_type``, ``saga_id``)::

    status          running | compensating | completed | compensated | parked | failed
    current_step    the step (and ``current_phase``) the saga last worked on
    log             one entry per handler invocation: step, phase, outcome, start, end, error
    failure         the step that failed and why (set when compensation starts)
    execution_arn, created_at, updated_at, finished_at, expires_at (TTL, finished sagas only)

Every writer (the step runtime, the status-event Lambda, the parking state, the redrive Lambda,
the API) moves the status along :data:`ALLOWED_FROM` only, by a condition on the write, so a late
or reordered write can never move a saga back, and never out of a terminal status.

Who decides what: handlers only ever move a saga to ``running`` or ``compensating`` (an invocation
cannot know whether Step Functions will accept its result: a task may time out after its handler
returned). The terminal statuses come from what Step Functions decided, the execution's ending,
through the status-event Lambda; ``parked`` from the state machine's parking states; and
``compensated`` after parking from the redrive Lambda, which finished what the execution could
not. The one way back out of ``failed`` is an execution redriven in Step Functions
(:func:`reopen`).
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from aws_lambda_powertools import Logger
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import BotoCoreError, ClientError

from saga_kit.contract import (
    ALLOWED_FROM,
    COMPENSATED,
    COMPENSATING,
    COMPLETED,
    FAILED,
    PARKED,
    REOPENED_FROM,
    RUNNING,
    TERMINAL_STATUSES,
    Env,
)

#: How long a finished saga stays in the store (DynamoDB TTL), in days.
FINISHED_RETENTION_DAYS = 90
#: Error texts are cut to this many characters in the log: the item must stay far below 400 KB
#: even for a retriable step that retries for hours.
MAX_ERROR_CHARS = 300
#: Entries kept in the log; older ones are dropped first (a step retrying all day).
MAX_LOG_ENTRIES = 200

logger = Logger()


def timestamp(moment: datetime | None = None) -> str:
    """UTC, millisecond ISO 8601 with ``Z``: the format Step Functions uses, so every writer's
    ``updated_at`` sorts the same way in the (status, updated_at) index."""
    moment = moment or datetime.now(UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def expires_at(now: datetime | None = None) -> int:
    """Epoch seconds at which a finished saga's item is dropped by TTL."""
    return int(((now or datetime.now(UTC)) + timedelta(days=FINISHED_RETENTION_DAYS)).timestamp())


def key(saga_type: str, saga_id: str) -> dict[str, Any]:
    """The item's DynamoDB key."""
    return {"saga_type": {"S": saga_type}, "saga_id": {"S": saga_id}}


def transition_condition(target: str) -> tuple[str, dict[str, Any]]:
    """The condition expression (and its values) that lets ``#status`` become ``target``."""
    sources = [s for s in ALLOWED_FROM[target] if s]
    values = {f":from_{s}": {"S": s} for s in sources}
    parts = [f"#status = :from_{s}" for s in sources]
    if "" in ALLOWED_FROM[target]:
        parts.insert(0, "attribute_not_exists(#status)")
    return " OR ".join(parts), values


_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def to_dynamodb(value: Any) -> dict[str, Any]:
    """A plain JSON value as a DynamoDB attribute value (boto3's serializer; floats go through
    ``Decimal`` from their JSON text, so nothing is rounded)."""
    return _serializer.serialize(json.loads(json.dumps(value, default=str), parse_float=Decimal))


def from_dynamodb(value: dict[str, Any]) -> Any:
    """The inverse of :func:`to_dynamodb`: plain JSON values, integral numbers as ``int``."""
    return _plain(_deserializer.deserialize(value))


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, set)):
        return [_plain(v) for v in value]
    return value


def item_to_json(item: dict[str, Any]) -> dict[str, Any]:
    """A whole store item as plain JSON."""
    return {k: from_dynamodb(v) for k, v in item.items()}


def move(
    client: Any,
    table: str,
    saga_type: str,
    saga_id: str,
    target: str,
    *,
    extra_set: dict[str, Any] | None = None,
    log_entry: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> bool:
    """Moves the saga to ``target`` if :data:`ALLOWED_FROM` lets it; returns whether it moved.

    ``extra_set`` attributes and the ``log_entry`` are written with the move. When the move is
    not allowed they are still written (a late invocation is still worth seeing), without it;
    once the log holds :data:`MAX_LOG_ENTRIES` entries, further ones are only counted.
    """
    now = now or datetime.now(UTC)
    condition, condition_values = transition_condition(target)
    sets = {"updated_at": timestamp(now), **(extra_set or {})}
    if target in TERMINAL_STATUSES:
        sets.update(finished_at=timestamp(now), expires_at=expires_at(now))
    plain = {k: v for k, v in sets.items() if k not in ("finished_at", "expires_at")}
    with_status, with_log = True, log_entry is not None
    for attempt in range(3):
        if attempt == 2:  # the item keeps changing under us: record what needs no condition
            with_status, with_log = False, False
        try:
            _update(client, table, saga_type, saga_id,
                    {**sets, "status": target} if with_status else plain,
                    log_entry if with_log else None,
                    condition if with_status else None,
                    condition_values if with_status else {}, now,
                    count_dropped=log_entry is not None and not with_log)
            return with_status
        except ClientError as error:
            if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            # The item as it was tells which condition failed: the move, or the log's cap.
            old = error.response.get("Item") or {}
            with_status = old.get("status", {}).get("S", "") in ALLOWED_FROM[target]
            with_log = log_entry is not None and (
                len(old.get("log", {}).get("L", [])) < MAX_LOG_ENTRIES)
    return False  # unreachable: the third attempt has no condition


def _update(
    client: Any, table: str, saga_type: str, saga_id: str, sets: dict[str, Any],
    log_entry: dict[str, Any] | None, condition: str | None, condition_values: dict[str, Any],
    now: datetime, *, count_dropped: bool = False,
) -> None:
    names: dict[str, str] = {"#status": "status"} if condition else {}
    values: dict[str, Any] = dict(condition_values)
    clauses = ["created_at = if_not_exists(created_at, :created_at)"]
    values[":created_at"] = {"S": timestamp(now)}
    for index, (name, value) in enumerate(sets.items()):
        names[f"#a{index}"] = name
        values[f":a{index}"] = to_dynamodb(value)
        clauses.append(f"#a{index} = :a{index}")
    conditions = [f"({condition})"] if condition else []
    if log_entry is not None:
        names["#log"] = "log"
        values[":entry"] = {"L": [to_dynamodb(log_entry)]}
        values[":empty"] = {"L": []}
        values[":max_log"] = {"N": str(MAX_LOG_ENTRIES)}
        clauses.append("#log = list_append(if_not_exists(#log, :empty), :entry)")
        conditions.append("(attribute_not_exists(#log) OR size(#log) < :max_log)")
    expression = "SET " + ", ".join(clauses)
    if count_dropped:
        values[":one"] = {"N": "1"}
        expression += " ADD log_entries_dropped :one"
    request: dict[str, Any] = {
        "TableName": table,
        "Key": key(saga_type, saga_id),
        "UpdateExpression": expression,
        "ExpressionAttributeNames": names,
        "ExpressionAttributeValues": values,
    }
    if conditions:
        request["ConditionExpression"] = " AND ".join(conditions)
        request["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
    if not names:
        del request["ExpressionAttributeNames"]
    client.update_item(**request)


def record_invocation(
    client: Any,
    *,
    saga_type: str,
    saga_id: str,
    execution_arn: str,
    step: str,
    phase: str,
    outcome: str,
    started: datetime,
    ended: datetime,
    error: str | None = None,
    duplicate: bool = False,
    failure: dict[str, Any] | None = None,
    table: str | None = None,
) -> None:
    """Appends one handler invocation to the saga's log and moves its status along.

    An action keeps the saga ``running``, a compensation makes it ``compensating``. Neither ever
    finishes it: whether the saga completed or was compensated is what Step Functions decides
    when the execution ends (a task can time out after its handler returned), and the
    status-event Lambda records that. The store is a view: a write that fails is logged and
    never fails the step. ``table`` defaults to the function's ``SAGA_STORE_TABLE``.
    """
    table = table or os.environ.get(Env.STORE_TABLE)
    if not table:
        return
    entry: dict[str, Any] = {
        "step": step, "phase": phase, "outcome": outcome,
        "started_at": timestamp(started), "ended_at": timestamp(ended),
    }
    if error:
        entry["error"] = error[:MAX_ERROR_CHARS]
    if duplicate:
        entry["duplicate"] = True
    sets: dict[str, Any] = {"current_step": step, "current_phase": phase}
    if execution_arn:
        sets["execution_arn"] = execution_arn
    if phase == "action":
        target = RUNNING
    else:
        target = COMPENSATING
        if failure:
            sets["failure"] = failure
    try:
        move(client, table, saga_type, saga_id, target, extra_set=sets, log_entry=entry, now=ended)
    except (ClientError, BotoCoreError) as store_error:
        logger.warning(f"saga store not updated (the saga itself is unaffected): {store_error}")


def reopen(client: Any, table: str, saga_type: str, saga_id: str, *, execution_arn: str,
           redrive_count: int, now: datetime | None = None) -> str | None:
    """Takes a ``failed`` saga back to work because its execution was redriven in Step Functions.

    The execution resumes where it failed: ``compensating`` if it had started compensating (the
    item has a ``failure``), else ``running``. The finished-saga TTL is removed, so a saga that
    runs again is never dropped. Returns the new status, or ``None`` if the saga was not failed.
    """
    now = now or datetime.now(UTC)
    item = client.get_item(TableName=table, Key=key(saga_type, saga_id), ConsistentRead=True,
                           ProjectionExpression="failure").get("Item") or {}
    target = COMPENSATING if "failure" in item else RUNNING
    try:
        client.update_item(
            TableName=table,
            Key=key(saga_type, saga_id),
            UpdateExpression=("SET #status = :target, updated_at = :now, execution_arn = :arn, "
                              "redrive_count = :count REMOVE finished_at, expires_at"),
            ConditionExpression="#status = :failed",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues={
                ":target": {"S": target}, ":failed": {"S": REOPENED_FROM},
                ":now": {"S": timestamp(now)}, ":arn": {"S": execution_arn},
                ":count": {"N": str(redrive_count)},
            },
        )
    except ClientError as error:
        if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
            return None
        raise
    return target


#: Terminal error names of the saga state machine (``<name>.<step>``) and the status they mean:
#: the saga's expected endings besides success. Any other ending is unexpected (see
#: :func:`is_expected_ending`).
STATUS_BY_ERROR = {"SagaCompensated": COMPENSATED, "CompensationFailed": PARKED}


def is_expected_ending(execution_status: str, error: str | None = None) -> bool:
    """Whether an execution ended the way a saga is designed to end: completed, compensated
    (``SagaCompensated.<step>``) or parked (``CompensationFailed``). Anything else (forward
    recovery giving up, parking failing, ``States.DataLimitExceeded``, ``States.Runtime``, an
    execution stopped or timed out) needs an operator."""
    if execution_status == "SUCCEEDED":
        return True
    return execution_status == "FAILED" and (error or "").split(".", 1)[0] in STATUS_BY_ERROR


def status_of_execution(execution_status: str, error: str | None = None) -> str | None:
    """The store status a Step Functions execution status means (``None`` while it runs)."""
    if execution_status == "RUNNING":
        return None
    if execution_status == "SUCCEEDED":
        return COMPLETED
    if execution_status == "FAILED":
        return STATUS_BY_ERROR.get((error or "").split(".", 1)[0], FAILED)
    return FAILED  # TIMED_OUT, ABORTED


def describe(item: dict[str, Any]) -> dict[str, Any]:
    """A store item (as plain JSON) as the API shows it: one entry per step and phase, in the
    order they first ran, with attempts, first start, last end, outcome and last error.

    A step that failed without its handler reporting it (a timeout, a crash, an error raised
    before the runtime) appears from the saga's ``failure``, where Step Functions recorded it.
    """
    entries: dict[tuple[str, str], dict[str, Any]] = {}
    for record in item.get("log") or []:
        slot = (record["step"], record["phase"])
        entry = entries.setdefault(slot, {
            "step": record["step"], "phase": record["phase"], "attempts": 0,
            "duplicates": 0, "started_at": record["started_at"],
        })
        if record.get("duplicate"):
            entry["duplicates"] += 1
            continue
        entry["attempts"] += 1
        entry["status"] = "succeeded" if record["outcome"] == "succeeded" else "failed"
        entry["outcome"] = record["outcome"]
        entry["ended_at"] = record["ended_at"]
        entry["error"] = record.get("error")
    failure = item.get("failure")
    if isinstance(failure, dict) and failure.get("step"):
        failed = entries.get((failure["step"], "action"))
        if failed is None or failed.get("status") != "failed":
            # Insert it before the compensations: it is where the saga turned back.
            ordered = list(entries.items())
            cut = next((i for i, (k, _) in enumerate(ordered) if k[1] == "compensation"),
                       len(ordered))
            recorded = {"step": failure["step"], "phase": "action", "status": "failed",
                        "outcome": "failed", "error": failure.get("error"),
                        "attempts": (failed or {}).get("attempts", 0),
                        "duplicates": (failed or {}).get("duplicates", 0)}
            ordered = [item_ for item_ in ordered if item_[0] != (failure["step"], "action")]
            ordered.insert(min(cut, len(ordered)), ((failure["step"], "action"), recorded))
            entries = dict(ordered)
    view = {k: item.get(k) for k in (
        "saga_type", "saga_id", "status", "current_step", "current_phase", "execution_arn",
        "created_at", "updated_at", "finished_at", "finished_by", "failure", "execution_error",
        "unexpected_ending", "parked_compensation", "parked_past_deadline_at")
        if item.get(k) is not None}
    view["terminal"] = item.get("status") in TERMINAL_STATUSES
    view["steps"] = [{k: v for k, v in e.items() if v is not None} for e in entries.values()]
    return view
