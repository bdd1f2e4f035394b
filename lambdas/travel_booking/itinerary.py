"""Itinerary participant: the confirmed trip, one per saga; the saga's point of no return.

Once the itinerary is confirmed the trip is sold: what follows (the notification) is retried,
never undone. Its compensation runs only when the confirmation itself failed, and cancels an
itinerary an earlier attempt may have confirmed.
"""

from __future__ import annotations

import os
from typing import Any

import fault_injection as faults
from status_items import status_change

from saga_kit.runtime import StepContext, TransactionConditionFailed, saga_step


def _table() -> str:
    return os.environ["ITINERARIES_TABLE"]


@faults.injected
@saga_step(transactional=True)
def confirm_itinerary(ctx: StepContext) -> dict[str, Any]:
    """Records the trip's itinerary (flight, hotel, car, charge) as confirmed."""
    flight = ctx.result_of("book_flight")
    hotel = ctx.result_of("book_hotel")
    car = ctx.result_of("book_car")
    try:
        ctx.transact_write(
            [
                {
                    "Put": {
                        "TableName": _table(),
                        "Item": {
                            "pk": {"S": ctx.saga_id},
                            "status": {"S": "confirmed"},
                            "trip_id": {"S": str(ctx.input["trip_id"])},
                            "traveller": {"S": str(ctx.input["traveller_id"])},
                            "flight_id": {"S": str(flight.get("flight_id", ctx.input["flight_id"]))},
                            "hotel_id": {"S": str(hotel.get("hotel_id", ctx.input["hotel_id"]))},
                            "car_class": {"S": str(car.get("car_class", ctx.input["car_class"]))},
                            "nights": {"N": str(int(ctx.input["nights"]))},
                        },
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                }
            ]
        )
    except TransactionConditionFailed:
        pass  # the itinerary exists: an earlier attempt confirmed it, so this one is a repeat
    faults.after_effect(ctx)
    return {"itinerary_id": ctx.saga_id}


@faults.injected
@saga_step(transactional=True)
def cancel_itinerary(ctx: StepContext) -> dict[str, Any]:
    """Cancels the saga's itinerary if one was confirmed (only when the pivot itself failed)."""
    faults.count_run(ctx)
    try:
        ctx.transact_write(
            [
                status_change(_table(), {"pk": {"S": ctx.saga_id}}, "confirmed", "cancelled")
            ]
        )
    except TransactionConditionFailed:
        return {"cancelled": False}  # never confirmed, or cancelled already
    faults.after_effect(ctx)
    return {"cancelled": True}
