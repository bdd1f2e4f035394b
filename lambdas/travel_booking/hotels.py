"""Hotels participant: rooms per hotel and one booking per saga.

A hotel is a counter item ``hotel#<id>`` with ``rooms``; a saga's booking is
``booking#<saga id>``, holding one room for the trip's nights (see :mod:`stock`).
"""

from __future__ import annotations

import os
from typing import Any

import fault_injection as faults
import stock

from saga_kit.runtime import BusinessError, StepContext, saga_step


class NoRoomsLeft(BusinessError):
    """The hotel has no room left."""


def _table() -> str:
    return os.environ["HOTELS_TABLE"]


@faults.injected
@saga_step(transactional=True)
def book_hotel(ctx: StepContext) -> dict[str, Any]:
    """Takes one room at the trip's hotel and records the booking under the saga id."""
    hotel, nights = str(ctx.input["hotel_id"]), int(ctx.input["nights"])
    stock.take(ctx, table=_table(), counter=f"hotel#{hotel}", attribute="rooms",
               hold=f"booking#{ctx.saga_id}", quantity=1,
               details={"hotel_id": {"S": hotel}, "nights": {"N": str(nights)},
                        "traveller": {"S": str(ctx.input["traveller_id"])}},
               sold_out=NoRoomsLeft(f"no room left at hotel {hotel}"))
    faults.after_effect(ctx)
    return {"booking_id": ctx.saga_id, "hotel_id": hotel, "nights": nights}


@faults.injected
@saga_step(transactional=True)
def cancel_hotel(ctx: StepContext) -> dict[str, Any]:
    """Cancels the saga's booking and frees its room; nothing to do if there is none."""
    faults.count_run(ctx)
    rooms = stock.give_back(ctx, table=_table(), attribute="rooms", hold=f"booking#{ctx.saga_id}")
    if rooms is None:
        return {"cancelled": False}  # never booked, or cancelled concurrently by a duplicate
    faults.after_effect(ctx)
    return {"cancelled": True, "rooms_released": rooms}
