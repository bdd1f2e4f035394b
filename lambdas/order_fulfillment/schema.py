"""The order saga's input: what ``POST /sagas/order_fulfillment`` accepts.

One model, two places: the API handler validates each request with it, and synthesis turns it
into the API Gateway request model, so a bad order is refused at the gateway with the same rules.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

Identifier = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:#-]+$")]


class FaultRule(BaseModel):
    """A fault for the simulated participants to inject (see ``fault_injection``)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    step: Literal["reserve_inventory", "charge_payment", "create_shipment", "send_confirmation"]
    phase: Literal["action", "compensation"] = "action"
    kind: Literal["business_error", "transient_error", "timeout", "crash_after_effect",
                  "timeout_after_effect"]
    times: int | None = Field(default=None, ge=1, le=100)
    seconds: float | None = Field(default=None, ge=0, le=900)


class OrderRequest(BaseModel):
    """One order line: reserve ``quantity`` of ``sku``, charge ``amount_cents``, ship, confirm."""

    model_config = ConfigDict(extra="forbid", strict=True)

    order_id: Identifier
    customer_id: Identifier
    sku: Identifier
    quantity: int = Field(ge=1, le=10_000)
    amount_cents: int = Field(ge=1, le=100_000_000)
    address: str = Field(default="", max_length=500)
    #: Demo only: faults the simulated participants inject into this saga.
    faults: list[FaultRule] = Field(default_factory=list, max_length=10)
    #: Demo only: also read fault rules from the fault table while the saga runs.
    fault_table: bool = False
