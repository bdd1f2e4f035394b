"""Saga outcome metrics, counted from the saga store's stream.

Every writer of the store moves a saga's status forward by a conditional write
(``saga_kit.runtime.store``), so the stream carries each status change exactly once, whoever
made it: the status-event Lambda (a Standard saga's ending), the state machine (an Express
saga's ending, the parking state), the redrive Lambda (a parked saga compensated later). This
handler turns those changes into metrics:

============================  ====================================================
status change                 metric (dimension ``SagaType``)
============================  ====================================================
none → running                SagaStarted
→ completed                   SagaCompleted, SagaDuration
→ compensated                 SagaCompensated, SagaDuration
→ parked                      SagaParked
→ failed                      SagaFailedUnexpectedly, SagaDuration
============================  ====================================================

A handler retried, or an EventBridge event delivered twice, writes no second change, so it
counts nothing twice. A saga reopened by an execution redrive (failed → running) is not a new
start. The metrics of a batch are flushed once, after every record is read: a batch that fails
part-way counts nothing and is retried whole.
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

from aws_lambda_powertools import Logger

from saga_kit.contract import RUNNING, TERMINAL_STATUSES, Env, Metric
from saga_kit.runtime.metrics import MetricUnit, saga_metrics
from saga_kit.runtime.version import check_kit_version

logger = Logger()


def outcome_of(old_image: dict[str, Any] | None, new_image: dict[str, Any] | None
               ) -> tuple[str, float | None] | None:
    """The metric one stream record counts, with the saga's duration in milliseconds when it
    ended, or ``None`` when the record is not a status change that counts."""
    old_status = _text(old_image, "status")
    new_status = _text(new_image, "status")
    if not new_status or new_status == old_status:
        return None
    if new_status == RUNNING and old_status:
        return None  # reopened by an execution redrive: the same saga, not a new start
    metric = Metric.BY_STATUS.get(new_status)
    if metric is None:
        return None
    duration = None
    if new_status in TERMINAL_STATUSES:
        duration = _milliseconds_between(_text(new_image, "created_at"),
                                         _text(new_image, "finished_at") or _text(new_image,
                                                                                  "updated_at"))
    return metric, duration


def count_outcomes(records: list[dict[str, Any]], saga_type: str) -> dict[str, int]:
    """Emits the outcome metrics of a batch of stream records in one EMF document; returns how
    many of each were counted."""
    metrics = saga_metrics(saga_type)
    counted: dict[str, int] = {}
    for record in records:
        change = record.get("dynamodb") or {}
        found = outcome_of(change.get("OldImage"), change.get("NewImage"))
        if found is None:
            continue
        metric, duration = found
        metrics.add_metric(name=metric, unit=MetricUnit.Count, value=1)
        counted[metric] = counted.get(metric, 0) + 1
        if duration is not None:
            metrics.add_metric(name=Metric.SAGA_DURATION, unit=MetricUnit.Milliseconds,
                               value=duration)
    if counted:
        metrics.flush_metrics()
    return counted


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """DynamoDB stream handler of the saga store."""
    check_kit_version()
    records = event.get("Records") or []
    counted = count_outcomes(records, os.environ[Env.SAGA_TYPE])
    if counted:
        logger.info("saga outcomes counted", extra={"counted": counted, "records": len(records)})
    return {"batchItemFailures": []}


def _text(image: dict[str, Any] | None, name: str) -> str:
    value = (image or {}).get(name) or {}
    return value.get("S", "") if isinstance(value, dict) else ""


def _milliseconds_between(start: str, end: str) -> float | None:
    try:
        began = datetime.fromisoformat(start)
        ended = datetime.fromisoformat(end)
    except ValueError:
        return None
    return max(0.0, round((ended - began).total_seconds() * 1000, 3))
