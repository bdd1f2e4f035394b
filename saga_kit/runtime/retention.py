"""Keeping a parked saga's records alive until it is finished.

Two kinds of record decide what a compensation does, and both carry a TTL: the late-action
barrier item of each step (did the action start? then there is something to undo) and the
Powertools idempotency record of each compensation that already ran (do not run it twice).
A parked saga can outlive both: every redrive from the dead-letter queue makes a new SQS message
with a fresh retention period, so a saga whose cause takes weeks to fix keeps coming back. If a
barrier item expired meanwhile, the compensation would conclude "the action never took effect"
and skip the undo; if an idempotency record expired, a compensation would run a second time.

So every delivery of a parked message to the redrive Lambda, the first one right after the
park included, pushes both kinds of record of every step still to compensate to at least
:data:`PARKED_RECORD_TTL_SECONDS` from now. Between two deliveries a message waits at most its
queue's retention (14 days) plus a visibility timeout, well inside that, so while a parked
message exists its records do. Refreshing on delivery costs nothing on the saga's hot path,
which setting TTLs only at the end would not (every finished saga would need a sweep of its
records).
"""

from __future__ import annotations

import functools
import time
from typing import Any

from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer, IdempotencyConfig
from aws_lambda_powertools.utilities.idempotency.exceptions import IdempotencyItemNotFoundError
from aws_lambda_powertools.utilities.idempotency.persistence.datarecord import STATUS_CONSTANTS

from saga_kit.runtime.barrier import StepBarrier
from saga_kit.runtime.step import idempotency_data, idempotency_key_prefix

#: How long a refresh keeps a parked saga's records: over twice SQS's longest retention.
PARKED_RECORD_TTL_SECONDS = 30 * 24 * 3600


def keep_parked_records(
    client: Any,
    *,
    saga_type: str,
    saga_id: str,
    steps: list[str],
    barrier_table: str,
    idempotency_table: str,
    now: float | None = None,
) -> dict[str, dict[str, bool]]:
    """Extends the barrier item and the completed compensation record of each of ``steps``.

    Returns, per step, whether each record exists (``barrier``: the action started or the step
    was compensated; ``compensated_once``: its compensation already ran to success).
    """
    expires_at = int((now if now is not None else time.time()) + PARKED_RECORD_TTL_SECONDS)
    found: dict[str, dict[str, bool]] = {}
    for step in steps:
        barrier = StepBarrier(client, barrier_table, saga_type, saga_id, step)
        found[step] = {
            "barrier": barrier.extend_expiry(expires_at),
            "compensated_once": _extend_compensation_record(
                client, idempotency_table, saga_type, saga_id, step),
        }
    return found


def _extend_compensation_record(client: Any, table: str, saga_type: str, saga_id: str,
                                step: str) -> bool:
    # Powertools' own record API: it alone knows how the key is hashed, and save_success
    # rewrites the expiry (logical and TTL) of a COMPLETED record with the stored result.
    layer = _compensation_records(client, table, idempotency_key_prefix(saga_type, step,
                                                                        "compensation"))
    data = idempotency_data(saga_type, saga_id, step, "compensation")
    try:
        record = layer.get_record(data=data)
    except IdempotencyItemNotFoundError:
        return False
    if record is None or record.status != STATUS_CONSTANTS["COMPLETED"]:
        return False  # in progress or failed: nothing done yet that a rerun could repeat
    layer.save_success(data=data, result=record.response_json_as_dict() or {})
    return True


@functools.lru_cache(maxsize=256)
def _compensation_records(client: Any, table: str, key_prefix: str) -> DynamoDBPersistenceLayer:
    """One persistence layer per client, table and step, for the life of the process: each new
    layer registers a User-Agent hook on the shared client, so a warm redrive Lambda building
    one per delivery would grow every request's header."""
    layer = DynamoDBPersistenceLayer(table_name=table, boto3_client=client)
    layer.configure(IdempotencyConfig(expires_after_seconds=PARKED_RECORD_TTL_SECONDS),
                    key_prefix=key_prefix)
    return layer
