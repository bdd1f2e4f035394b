"""Shipping participant: one shipment per saga, created or cancelled."""

from __future__ import annotations

import os
from typing import Any

import fault_injection as faults
from status_items import status_change

from saga_kit.runtime import StepContext, TransactionConditionFailed, saga_step


def _table() -> str:
    return os.environ["SHIPMENTS_TABLE"]


@faults.injected
@saga_step  # not transactional on purpose: the flagship exercises both barrier modes
def create_shipment(ctx: StepContext) -> dict[str, Any]:
    """Books the shipment of the reserved goods; the saga's point of no return."""
    reservation = ctx.result_of("reserve_inventory")
    try:
        ctx.transact_write(
            [
                {
                    "Put": {
                        "TableName": _table(),
                        "Item": {
                            "pk": {"S": ctx.saga_id},
                            "status": {"S": "created"},
                            "sku": {"S": str(reservation.get("sku", ctx.input["sku"]))},
                            "address": {"S": str(ctx.input.get("address", ""))},
                        },
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                }
            ]
        )
    except TransactionConditionFailed:
        pass  # an earlier attempt created it
    faults.after_effect(ctx)
    return {"shipment_id": ctx.saga_id}


@faults.injected
@saga_step
def cancel_shipment(ctx: StepContext) -> dict[str, Any]:
    """Cancels the saga's shipment if one was created (only when the pivot itself failed)."""
    faults.count_run(ctx)
    try:
        ctx.transact_write(
            [
                status_change(_table(), {"pk": {"S": ctx.saga_id}}, "created", "cancelled")
            ]
        )
    except TransactionConditionFailed:
        return {"cancelled": False}
    faults.after_effect(ctx)
    return {"cancelled": True}
