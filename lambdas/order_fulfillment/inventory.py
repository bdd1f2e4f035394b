"""Inventory participant: stock counts per SKU and one reservation per saga.

The counting is :mod:`stock`'s, shared with the travel app's seats, rooms and cars.
"""

from __future__ import annotations

import os
from typing import Any

import fault_injection as faults
import stock

from saga_kit.runtime import BusinessError, StepContext, saga_step


class OutOfStock(BusinessError):
    """Not enough stock to reserve the order's quantity."""


def _table() -> str:
    return os.environ["INVENTORY_TABLE"]


@faults.injected
@saga_step(transactional=True)
def reserve_inventory(ctx: StepContext) -> dict[str, Any]:
    """Takes the order's quantity out of stock and records the reservation under the saga id."""
    sku, quantity = ctx.input["sku"], int(ctx.input["quantity"])
    stock.take(ctx, table=_table(), counter=f"sku#{sku}", attribute="stock",
               hold=f"reservation#{ctx.saga_id}", quantity=quantity, details={"sku": {"S": sku}},
               sold_out=OutOfStock(f"cannot reserve {quantity} of {sku}"))
    faults.after_effect(ctx)
    return {"reservation_id": ctx.saga_id, "sku": sku, "quantity": quantity}


@faults.injected
@saga_step
def release_inventory(ctx: StepContext) -> dict[str, Any]:
    """Puts a reservation's quantity back into stock; nothing to do if there is none."""
    faults.count_run(ctx)
    released = stock.give_back(ctx, table=_table(), attribute="stock",
                               hold=f"reservation#{ctx.saga_id}")
    if released is None:
        return {"released": 0}  # never reserved, or released concurrently by a duplicate
    faults.after_effect(ctx)
    return {"released": released}
