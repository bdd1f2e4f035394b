"""Payments participant: a ledger of account balances and one charge per saga.

A charge moves money from the customer's account to the merchant's; a refund moves it back.
Money is only ever moved inside one transaction, so the sum over all accounts never changes. The
ledger is :mod:`ledger`'s, shared with the travel app's payments.
"""

from __future__ import annotations

import os
from typing import Any

import fault_injection as faults
import ledger

from saga_kit.runtime import BusinessError, StepContext, saga_step

MERCHANT_ACCOUNT = "merchant"


class PaymentDeclined(BusinessError):
    """The customer's balance does not cover the amount."""


def _table() -> str:
    return os.environ["PAYMENTS_TABLE"]


@faults.injected
@saga_step(transactional=True)
def charge_payment(ctx: StepContext) -> dict[str, Any]:
    """Charges the order amount to the customer, once per saga."""
    customer, amount = ctx.input["customer_id"], int(ctx.input["amount_cents"])
    ledger.charge(ctx, table=_table(), payer=customer, payee=MERCHANT_ACCOUNT, amount=amount,
                  declined=PaymentDeclined(f"balance of {customer} does not cover {amount}"))
    faults.after_effect(ctx)
    return {"charge_id": ctx.saga_id, "amount_cents": amount}


@faults.injected
@saga_step
def refund_payment(ctx: StepContext) -> dict[str, Any]:
    """Refunds the saga's charge, if there is one that is not refunded yet."""
    faults.count_run(ctx)
    refunded = ledger.refund(ctx, table=_table(), payee=MERCHANT_ACCOUNT)
    if refunded is None:
        return {"refunded_cents": 0}  # no charge, or refunded already (maybe by a duplicate)
    faults.after_effect(ctx)
    return {"refunded_cents": refunded}
