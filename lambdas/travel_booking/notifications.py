"""Notifications participant: the traveller's confirmation, sent once per saga.

It runs after the pivot, so it is retried until it succeeds and never undone.
"""

from __future__ import annotations

import os
import time
from typing import Any

import fault_injection as faults

from saga_kit.runtime import StepContext, TransactionConditionFailed, saga_step


@faults.injected
@saga_step(transactional=True)
def notify_traveller(ctx: StepContext) -> dict[str, Any]:
    """Records the notification sent to the traveller about the confirmed itinerary."""
    item = {
        "pk": {"S": ctx.saga_id},
        "traveller": {"S": str(ctx.input["traveller_id"])},
        "itinerary_id": {"S": str(ctx.result_of("confirm_itinerary").get("itinerary_id", ""))},
        "sent_at": {"N": str(int(time.time()))},
    }
    if ctx.input.get("email"):
        item["email"] = {"S": str(ctx.input["email"])}
    try:
        ctx.transact_write([{"Put": {"TableName": os.environ["NOTIFICATIONS_TABLE"], "Item": item,
                                     "ConditionExpression": "attribute_not_exists(pk)"}}])
    except TransactionConditionFailed:
        pass  # sent by an earlier attempt: a retry must not notify twice
    faults.after_effect(ctx)
    return {"notification_id": ctx.saga_id}
