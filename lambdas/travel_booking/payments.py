"""Payments participant: the trip's price moves from the traveller's account to the agency's.

The ledger is :mod:`ledger`'s, the order app's too: one charge per saga, refunded by moving it
back, money only ever moved inside one transaction so the sum over all accounts never changes.
"""

from __future__ import annotations

import os
from typing import Any

import fault_injection as faults
import ledger

from saga_kit.runtime import BusinessError, StepContext, saga_step

AGENCY_ACCOUNT = "agency"


class InsufficientFunds(BusinessError):
    """The traveller's balance does not cover the trip."""


def _table() -> str:
    return os.environ["PAYMENTS_TABLE"]


@faults.injected
@saga_step(transactional=True)
def charge_payment(ctx: StepContext) -> dict[str, Any]:
    """Charges the trip's price to the traveller, once per saga."""
    traveller, amount = str(ctx.input["traveller_id"]), int(ctx.input["amount_cents"])
    ledger.charge(ctx, table=_table(), payer=traveller, payee=AGENCY_ACCOUNT, amount=amount,
                  declined=InsufficientFunds(f"balance of {traveller} does not cover {amount}"))
    faults.after_effect(ctx)
    return {"charge_id": ctx.saga_id, "amount_cents": amount}


@faults.injected
@saga_step(transactional=True)
def refund_payment(ctx: StepContext) -> dict[str, Any]:
    """Refunds the saga's charge, if there is one that is not refunded yet."""
    faults.count_run(ctx)
    refunded = ledger.refund(ctx, table=_table(), payee=AGENCY_ACCOUNT)
    if refunded is None:
        return {"refunded_cents": 0}  # no charge, or refunded already (maybe by a duplicate)
    faults.after_effect(ctx)
    return {"refunded_cents": refunded}
