"""Inventory participant: stock counts per SKU and one reservation per saga."""

from __future__ import annotations

import os
from typing import Any

from order_fulfillment import faults
from saga_kit.runtime import (
    BusinessError,
    StepContext,
    TransactionConditionFailed,
    dynamodb_client,
    saga_step,
)


class OutOfStock(BusinessError):
    """Not enough stock to reserve the order's quantity."""


def _table() -> str:
    return os.environ["INVENTORY_TABLE"]


def _reservation_key(saga_id: str) -> dict[str, Any]:
    return {"pk": {"S": f"reservation#{saga_id}"}}


@faults.injected
@saga_step(transactional=True)
def reserve_inventory(ctx: StepContext) -> dict[str, Any]:
    """Takes the order's quantity out of stock and records the reservation under the saga id."""
    sku, quantity = ctx.input["sku"], int(ctx.input["quantity"])
    try:
        ctx.transact_write(
            [
                {
                    "Update": {
                        "TableName": _table(),
                        "Key": {"pk": {"S": f"sku#{sku}"}},
                        "UpdateExpression": "SET stock = stock - :q",
                        "ConditionExpression": "stock >= :q",
                        "ExpressionAttributeValues": {":q": {"N": str(quantity)}},
                    }
                },
                {
                    "Put": {
                        "TableName": _table(),
                        "Item": {
                            **_reservation_key(ctx.saga_id),
                            "sku": {"S": sku},
                            "quantity": {"N": str(quantity)},
                        },
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                },
            ]
        )
    except TransactionConditionFailed as failure:
        if 1 not in failure.failed_items:
            raise OutOfStock(f"cannot reserve {quantity} of {sku}") from None
        # The reservation exists: an earlier attempt applied it, so this one is a repeat.
    faults.after_effect(ctx)
    return {"reservation_id": ctx.saga_id, "sku": sku, "quantity": quantity}


@faults.injected
@saga_step
def release_inventory(ctx: StepContext) -> dict[str, Any]:
    """Puts a reservation's quantity back into stock; nothing to do if there is none."""
    faults.count_run(ctx)
    item = dynamodb_client().get_item(
        TableName=_table(), Key=_reservation_key(ctx.saga_id), ConsistentRead=True
    ).get("Item")
    if item is None:
        return {"released": 0}
    quantity = item["quantity"]["N"]
    try:
        ctx.transact_write(
            [
                {
                    "Delete": {
                        "TableName": _table(),
                        "Key": _reservation_key(ctx.saga_id),
                        "ConditionExpression": "attribute_exists(pk)",
                    }
                },
                {
                    "Update": {
                        "TableName": _table(),
                        "Key": {"pk": {"S": f"sku#{item['sku']['S']}"}},
                        "UpdateExpression": "SET stock = stock + :q",
                        "ExpressionAttributeValues": {":q": {"N": quantity}},
                    }
                },
            ]
        )
    except TransactionConditionFailed:
        return {"released": 0}  # released concurrently by a duplicate
    faults.after_effect(ctx)
    return {"released": int(quantity)}
