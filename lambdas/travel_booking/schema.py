"""The travel saga's input: what ``POST /sagas/travel_booking`` accepts.

One model, two places: the API handler validates each request with it, and synthesis turns it
into the API Gateway request model, so a bad trip is refused at the gateway with the same rules.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

Identifier = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:#-]+$")]


class FaultRule(BaseModel):
    """A fault for the simulated participants to inject (see ``fault_injection``)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    step: Literal["book_flight", "book_hotel", "book_car", "charge_payment", "confirm_itinerary",
                  "notify_traveller"]
    phase: Literal["action", "compensation"] = "action"
    # The last five strike only where a callback worker runs (book_car): elsewhere they are inert.
    kind: Literal["business_error", "transient_error", "timeout", "crash_after_effect",
                  "timeout_after_effect", "no_reply", "missed_heartbeat", "late_reply",
                  "duplicate_reply", "duplicate_delivery"]
    times: int | None = Field(default=None, ge=1, le=100)
    seconds: float | None = Field(default=None, ge=0, le=900)


class TripRequest(BaseModel):
    """One trip: a seat on ``flight_id``, ``nights`` at ``hotel_id``, a car of ``car_class``, paid
    ``amount_cents`` from the traveller's account, confirmed as an itinerary, then notified."""

    model_config = ConfigDict(extra="forbid", strict=True)

    #: Set by whoever starts the execution (the API takes it from the Idempotency-Key header and
    #: refuses it in the body); a direct start puts it in the input.
    saga_id: str | None = Field(default=None, min_length=1, max_length=80,
                                pattern=r"^[A-Za-z0-9_.:#-]+$")
    trip_id: Identifier
    traveller_id: Identifier
    flight_id: Identifier
    hotel_id: Identifier
    car_class: Identifier
    nights: int = Field(ge=1, le=365)
    amount_cents: int = Field(ge=1, le=100_000_000)
    email: str | None = Field(default=None, max_length=254, pattern=r"^[^@\s]+@[^@\s]+$")
    #: Demo only: faults the simulated participants inject into this saga.
    faults: list[FaultRule] = Field(default_factory=list, max_length=10)
    #: Demo only: also read fault rules from the fault table while the saga runs.
    fault_table: bool = False
