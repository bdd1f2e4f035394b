"""Flights participant: seats per flight and one booking per saga.

A flight is a counter item ``flight#<id>`` with ``seats``; a saga's booking is
``booking#<saga id>``, holding one seat (see :mod:`stock`).
"""

from __future__ import annotations

import os
from typing import Any

import fault_injection as faults
import stock

from saga_kit.runtime import BusinessError, StepContext, saga_step


class NoSeatsLeft(BusinessError):
    """The flight is full (or not on sale)."""


def _table() -> str:
    return os.environ["FLIGHTS_TABLE"]


@faults.injected
@saga_step(transactional=True)
def book_flight(ctx: StepContext) -> dict[str, Any]:
    """Takes one seat on the trip's flight and records the booking under the saga id."""
    flight = str(ctx.input["flight_id"])
    stock.take(ctx, table=_table(), counter=f"flight#{flight}", attribute="seats",
               hold=f"booking#{ctx.saga_id}", quantity=1,
               details={"flight_id": {"S": flight},
                        "traveller": {"S": str(ctx.input["traveller_id"])}},
               sold_out=NoSeatsLeft(f"no seat left on flight {flight}"))
    faults.after_effect(ctx)
    return {"booking_id": ctx.saga_id, "flight_id": flight}


@faults.injected
@saga_step(transactional=True)
def cancel_flight(ctx: StepContext) -> dict[str, Any]:
    """Cancels the saga's booking and puts its seat back on sale; nothing to do if there is none."""
    faults.count_run(ctx)
    seats = stock.give_back(ctx, table=_table(), attribute="seats", hold=f"booking#{ctx.saga_id}")
    if seats is None:
        return {"cancelled": False}  # never booked, or cancelled concurrently by a duplicate
    faults.after_effect(ctx)
    return {"cancelled": True, "seats_released": seats}
