"""Notifications participant: the order confirmation, sent once per saga."""

from __future__ import annotations

import os
import time
from typing import Any

import fault_injection as faults

from saga_kit.runtime import StepContext, dynamodb_client, saga_step


@faults.injected
@saga_step
def send_confirmation(ctx: StepContext) -> dict[str, Any]:
    """Records the confirmation sent to the customer. Runs after the pivot: retried, never undone."""
    dynamodb_client().put_item(
        TableName=os.environ["CONFIRMATIONS_TABLE"],
        Item={
            "pk": {"S": ctx.saga_id},
            "customer": {"S": str(ctx.input["customer_id"])},
            "shipment_id": {"S": str(ctx.result_of("create_shipment").get("shipment_id", ""))},
            "sent_at": {"N": str(int(time.time()))},
        },
    )
    faults.after_effect(ctx)
    return {"confirmation_id": ctx.saga_id}
