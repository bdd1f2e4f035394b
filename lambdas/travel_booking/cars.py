"""Cars participant: cars per class and one rental per saga, booked asynchronously.

A class is a counter item ``cars#<class>`` with ``available``; a saga's rental is
``rental#<saga id>``, holding one car (see :mod:`stock`).

The rental company answers later, not within a request: ``book_car`` is a callback step. Step
Functions puts the command on the step's queue with a task token and waits; this handler runs in
the worker that consumes the queue, and the runtime replies with the token when it returns. The
handler is the same ``@saga_step`` function as a synchronous one; only the heartbeat is new.
"""

from __future__ import annotations

import os
from typing import Any

import fault_injection as faults
import stock

from saga_kit.runtime import BusinessError, StepContext, saga_step


class NoCarsLeft(BusinessError):
    """No car of the requested class is available."""


def _table() -> str:
    return os.environ["CARS_TABLE"]


@faults.injected
@saga_step(transactional=True)
def book_car(ctx: StepContext) -> dict[str, Any]:
    """Rents one car of the trip's class and records the rental under the saga id."""
    # A worker whose work takes a while says it is alive before it starts (and, on a long job,
    # every so often): a silent worker is given up after the declared heartbeat. If Step
    # Functions has closed the task already, this raises CallbackTaskClosed before any effect.
    # On a synchronous step it does nothing.
    ctx.heartbeat()
    car_class = str(ctx.input["car_class"])
    stock.take(ctx, table=_table(), counter=f"cars#{car_class}", attribute="available",
               hold=f"rental#{ctx.saga_id}", quantity=1,
               details={"car_class": {"S": car_class},
                        "traveller": {"S": str(ctx.input["traveller_id"])}},
               sold_out=NoCarsLeft(f"no {car_class} car available"))
    faults.after_effect(ctx)
    return {"rental_id": ctx.saga_id, "car_class": car_class}


@faults.injected
@saga_step(transactional=True)
def cancel_car(ctx: StepContext) -> dict[str, Any]:
    """Cancels the saga's rental and makes its car available again; nothing to do if none."""
    faults.count_run(ctx)
    cars = stock.give_back(ctx, table=_table(), attribute="available", hold=f"rental#{ctx.saga_id}")
    if cars is None:
        return {"cancelled": False}  # never rented, or cancelled concurrently by a duplicate
    faults.after_effect(ctx)
    return {"cancelled": True, "cars_released": cars}
