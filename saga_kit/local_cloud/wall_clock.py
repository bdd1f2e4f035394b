"""Weeks in a second: a wall clock a test can move forward, and DynamoDB's TTL sweep.

moto ignores DynamoDB TTL, and weeks cannot be waited for, so what depends on records expiring
(a parked saga redriven over weeks, its barrier items and idempotency records) could never be
seen failing. :class:`ShiftedWallClock` adds an offset to the wall clock that handlers and
Powertools read (``time.time()``, and ``datetime.now()`` inside Powertools' idempotency
persistence, which computes and checks record expiry with it); :func:`sweep_expired_items`
then deletes what DynamoDB's TTL process would have deleted by that time.

Monotonic clocks (timeouts, ``time.sleep``) are untouched. Code that bound ``time.time`` itself
before the shift (``from time import time``) keeps the real clock.
"""

from __future__ import annotations

import datetime as real_datetime
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from saga_kit.local_cloud._patching import patched

#: Powertools modules that read the wall clock as ``dt.datetime.now()`` (``import datetime as dt``).
_POWERTOOLS_CLOCK_READERS = (
    "aws_lambda_powertools.utilities.idempotency.persistence.base",
    "aws_lambda_powertools.utilities.idempotency.persistence.dynamodb",
    "aws_lambda_powertools.utilities.idempotency.persistence.datarecord",
)


class ShiftedWallClock:
    """The real wall clock plus an offset that only grows."""

    def __init__(self) -> None:
        self.offset_seconds = 0.0

    def advance(self, **delta: float) -> None:
        """Moves the clock forward by a :class:`datetime.timedelta`'s keywords (``days=12``)."""
        self.offset_seconds += real_datetime.timedelta(**delta).total_seconds()

    def time(self) -> float:
        """Epoch seconds, shifted."""
        return _real_time() + self.offset_seconds

    @contextmanager
    def installed(self) -> Iterator[ShiftedWallClock]:
        """``time.time`` and Powertools' ``datetime.now`` read this clock inside the block."""
        import importlib

        clock = self

        class ShiftedDatetime(real_datetime.datetime):
            @classmethod
            def now(cls, tz: Any = None) -> Any:  # type: ignore[override]
                return real_datetime.datetime.fromtimestamp(clock.time(), tz)

        class DatetimeModule:
            datetime = ShiftedDatetime

            def __getattr__(self, name: str) -> Any:
                return getattr(real_datetime, name)

        with ExitStack() as stack:
            stack.enter_context(patched(time, "time", self.time))
            for name in _POWERTOOLS_CLOCK_READERS:
                stack.enter_context(patched(importlib.import_module(name), "dt", DatetimeModule()))
            yield self


_real_time = time.time


def sweep_expired_items(dynamodb: Any, tables: dict[str, str], now: float) -> dict[str, int]:
    """Deletes every item whose TTL attribute (``tables``: table name -> attribute) is a number
    below ``now``, as DynamoDB's TTL process does (eventually) on AWS. Returns deletions per
    table."""
    deleted: dict[str, int] = {}
    for table, attribute in tables.items():
        keys = [k["AttributeName"] for k in
                dynamodb.describe_table(TableName=table)["Table"]["KeySchema"]]
        count = 0
        for scan in dynamodb.get_paginator("scan").paginate(TableName=table):
            for item in scan["Items"]:
                value = item.get(attribute, {}).get("N")
                if value is not None and float(value) < now:
                    dynamodb.delete_item(TableName=table, Key={k: item[k] for k in keys})
                    count += 1
        deleted[table] = count
    return deleted
