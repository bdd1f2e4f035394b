"""Stuck sagas: running or compensating, and nothing has moved them for too long.

A step that finishes, or fails and is retried, writes the saga store (``updated_at``), so a saga
whose item stopped changing is one nothing is working on: a participant that hangs past every
timeout the saga could notice, a callback worker that never answers, an execution Step
Functions stopped driving. The saga store's status index answers "which sagas have not changed
since T" with one query per status; the execution history then says where each one is (for a
callback task, since when it waits for the reply, which has its own threshold).

The scheduled detector (:func:`handler`, every 5 minutes) emits ``SagasStuck`` with the count
(0 when none, so the alarm and the dashboard always have data) and logs each stuck saga; ``saga
stuck`` runs the same search from a terminal.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from saga_kit.contract import STATUS_INDEX, STUCK_STATUSES, Env, Metric, StuckThresholds
from saga_kit.runtime.metrics import MetricUnit, saga_metrics
from saga_kit.runtime.step import aws_client, dynamodb_client
from saga_kit.runtime.store import timestamp
from saga_kit.runtime.version import check_kit_version

__all__ = ["StuckSaga", "find_stuck", "handler", "open_states", "where_is"]

logger = Logger()

#: History events that end a Parallel state, and with it every state of its branches.
PARALLEL_ENDED = frozenset({"ParallelStateExited", "ParallelStateFailed", "ParallelStateAborted",
                            "ParallelStateSucceeded"})
#: The Step Functions integration a callback task waits on.
CALLBACK_RESOURCE_MARK = "waitForTaskToken"


@dataclass(frozen=True)
class StuckSaga:
    """One saga past its threshold: where it is and since when."""

    saga_type: str
    saga_id: str
    status: str
    #: The state(s) the execution is in (a group may wait in several), or the store's
    #: ``current_step`` when the history cannot say.
    step: str
    #: When the saga last moved (its last store write, or entering the state it waits in).
    since: str
    idle_seconds: float
    threshold_seconds: int
    execution_arn: str
    #: Whether it waits for a callback step's reply.
    waiting_for_callback: bool

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class OpenState:
    """A state an execution entered and has not left."""

    name: str
    entered_at: datetime
    callback: bool


def where_is(sfn: Any, execution_arn: str) -> list[OpenState] | None:
    """The task states an execution is in right now (entered, not exited), from its history;
    ``None`` when the history cannot be read (an Express execution has none)."""
    if not execution_arn or ":express:" in execution_arn:
        return None
    events: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"executionArn": execution_arn, "maxResults": 1000}
    try:
        while True:
            page = sfn.get_execution_history(**kwargs)
            events.extend(page.get("events", []))
            if not page.get("nextToken"):
                break
            kwargs["nextToken"] = page["nextToken"]
    except (ClientError, BotoCoreError) as error:
        logger.warning(f"history of {execution_arn} not read: {error}")
        return None
    return open_states(events)


def open_states(events: list[dict[str, Any]]) -> list[OpenState]:
    """The task states entered and not exited in a history (``GetExecutionHistory`` events,
    oldest first), oldest first."""
    open_now: dict[str, OpenState] = {}
    last_entered: str | None = None
    # What was open when each (not yet ended) parallel group began: when the group ends, its
    # branches' states are closed too, even those stopped without an event of their own (AWS
    # writes TaskStateAborted for them, moto nothing).
    groups: list[set[str]] = []
    for event in events:
        kind = event.get("type", "")
        if kind == "TaskStateEntered":
            name = event["stateEnteredEventDetails"]["name"]
            open_now[name] = OpenState(name, _as_datetime(event["timestamp"]), False)
            last_entered = name
        elif kind == "ParallelStateEntered":
            groups.append(set(open_now))
        elif kind in PARALLEL_ENDED:
            if groups:
                before = groups.pop()
                open_now = {k: v for k, v in open_now.items() if k in before}
        elif kind.endswith("StateExited") or kind == "TaskStateAborted":
            details = event.get("stateExitedEventDetails") or event.get("stateAbortedEventDetails")
            open_now.pop((details or {}).get("name", ""), None)
        elif kind == "TaskScheduled" and last_entered in open_now:
            resource = event.get("taskScheduledEventDetails", {}).get("resource", "")
            if CALLBACK_RESOURCE_MARK in resource:
                state = open_now[last_entered]
                open_now[last_entered] = OpenState(state.name, state.entered_at, True)
    return sorted(open_now.values(), key=lambda s: s.entered_at)


def find_stuck(dynamodb: Any, sfn: Any | None, table: str, thresholds: StuckThresholds, *,
               saga_type: str | None = None, statuses: tuple[str, ...] = STUCK_STATUSES,
               now: datetime | None = None) -> list[StuckSaga]:
    """Sagas (of ``saga_type``, when given) in ``statuses`` past their threshold, oldest first.

    ``sfn`` (a Step Functions client) locates each candidate in its execution; without it, or
    when the history is unreadable, the store's ``current_step`` and ``updated_at`` stand.
    """
    # time.time(), not datetime.now(): the local cloud's shifted wall clock moves it.
    now = now or datetime.fromtimestamp(time.time(), UTC)
    cutoff = timestamp(datetime.fromtimestamp(now.timestamp() - thresholds.smallest, UTC))
    found: list[StuckSaga] = []
    for status in statuses:
        for item in _idle_since(dynamodb, table, status, cutoff):
            if saga_type is not None and item.get("saga_type") != saga_type:
                continue
            stuck = _judge(sfn, item, status, thresholds, now)
            if stuck is not None:
                found.append(stuck)
    return sorted(found, key=lambda s: s.since)


def _idle_since(dynamodb: Any, table: str, status: str, cutoff: str) -> list[dict[str, str]]:
    """Items in ``status`` not updated since ``cutoff``: one query on the status index."""
    items: list[dict[str, str]] = []
    kwargs: dict[str, Any] = {
        "TableName": table,
        "IndexName": STATUS_INDEX,
        "KeyConditionExpression": "#status = :status AND updated_at < :cutoff",
        "ExpressionAttributeNames": {"#status": "status"},
        "ExpressionAttributeValues": {":status": {"S": status}, ":cutoff": {"S": cutoff}},
    }
    while True:
        page = dynamodb.query(**kwargs)
        items.extend({k: v.get("S", "") for k, v in item.items()} for item in page.get("Items", []))
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _judge(sfn: Any | None, item: dict[str, str], status: str, thresholds: StuckThresholds,
           now: datetime) -> StuckSaga | None:
    updated = _as_datetime(item["updated_at"])
    execution_arn = item.get("execution_arn", "")
    states = where_is(sfn, execution_arn) if sfn is not None else None
    if not states:
        idle = (now - updated).total_seconds()
        threshold = thresholds.saga_seconds
        if idle <= threshold:
            return None
        return StuckSaga(item.get("saga_type", ""), item.get("saga_id", ""), status,
                         item.get("current_step", ""), item["updated_at"], round(idle, 3),
                         threshold, execution_arn, False)
    # Stuck when one of the open tasks has waited past its own threshold, counting from the
    # later of entering it and the saga's last store write (a retried attempt is progress).
    late = []
    for state in states:
        since = max(state.entered_at, updated)
        threshold = thresholds.for_state(state.name)
        if (now - since).total_seconds() > threshold:
            late.append((state, since, threshold))
    if not late:
        return None
    since = min(s for _, s, _ in late)
    return StuckSaga(item.get("saga_type", ""), item.get("saga_id", ""), status,
                     ", ".join(state.name for state, _, _ in late), timestamp(since),
                     round((now - since).total_seconds(), 3), min(t for _, _, t in late),
                     execution_arn, any(state.callback for state, _, _ in late))


def _as_datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(str(value))


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The scheduled detector: emits ``SagasStuck`` and logs each stuck saga."""
    check_kit_version()
    saga_type = os.environ[Env.SAGA_TYPE]
    thresholds = StuckThresholds.from_json(os.environ[Env.STUCK_THRESHOLDS])
    stuck = find_stuck(dynamodb_client(), aws_client("stepfunctions"), os.environ[Env.STORE_TABLE],
                       thresholds, saga_type=saga_type)
    for saga in stuck:
        logger.warning("saga stuck", extra=saga.to_json())
    metrics = saga_metrics(saga_type)
    metrics.add_metric(name=Metric.SAGAS_STUCK, unit=MetricUnit.Count, value=len(stuck))
    metrics.flush_metrics()
    return {"stuck": len(stuck), "sagas": [s.to_json() for s in stuck]}
