"""Payments participant: a ledger of account balances and one charge per saga.

A charge moves money from the customer's account to the merchant's; a refund moves it back.
Money is only ever moved inside one transaction, so the sum over all accounts never changes.
"""

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

MERCHANT_ACCOUNT = "merchant"


class PaymentDeclined(BusinessError):
    """The customer's balance does not cover the amount."""


def _table() -> str:
    return os.environ["PAYMENTS_TABLE"]


def _charge_key(saga_id: str) -> dict[str, Any]:
    return {"pk": {"S": f"charge#{saga_id}"}}


def _move(account: str, delta: str) -> dict[str, Any]:
    return {
        "Update": {
            "TableName": _table(),
            "Key": {"pk": {"S": f"account#{account}"}},
            "UpdateExpression": "SET balance = if_not_exists(balance, :zero) + :delta",
            "ExpressionAttributeValues": {":delta": {"N": delta}, ":zero": {"N": "0"}},
        }
    }


@faults.injected
@saga_step(transactional=True)
def charge_payment(ctx: StepContext) -> dict[str, Any]:
    """Charges the order amount to the customer, once per saga."""
    customer, amount = ctx.input["customer_id"], int(ctx.input["amount_cents"])
    debit = _move(customer, str(-amount))
    debit["Update"]["ConditionExpression"] = "balance >= :amount"
    debit["Update"]["ExpressionAttributeValues"][":amount"] = {"N": str(amount)}
    try:
        ctx.transact_write(
            [
                debit,
                _move(MERCHANT_ACCOUNT, str(amount)),
                {
                    "Put": {
                        "TableName": _table(),
                        "Item": {
                            **_charge_key(ctx.saga_id),
                            "customer": {"S": customer},
                            "amount": {"N": str(amount)},
                            "status": {"S": "charged"},
                        },
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                },
            ]
        )
    except TransactionConditionFailed as failure:
        if 2 not in failure.failed_items:
            raise PaymentDeclined(f"balance of {customer} does not cover {amount}") from None
    faults.after_effect(ctx)
    return {"charge_id": ctx.saga_id, "amount_cents": amount}


@faults.injected
@saga_step
def refund_payment(ctx: StepContext) -> dict[str, Any]:
    """Refunds the saga's charge, if there is one that is not refunded yet."""
    faults.count_run(ctx)
    charge = dynamodb_client().get_item(
        TableName=_table(), Key=_charge_key(ctx.saga_id), ConsistentRead=True
    ).get("Item")
    if charge is None or charge["status"]["S"] != "charged":
        return {"refunded_cents": 0}
    amount = charge["amount"]["N"]
    try:
        ctx.transact_write(
            [
                {
                    "Update": {
                        "TableName": _table(),
                        "Key": _charge_key(ctx.saga_id),
                        "UpdateExpression": "SET #s = :refunded",
                        "ConditionExpression": "#s = :charged",
                        "ExpressionAttributeNames": {"#s": "status"},
                        "ExpressionAttributeValues": {
                            ":refunded": {"S": "refunded"},
                            ":charged": {"S": "charged"},
                        },
                    }
                },
                _move(charge["customer"]["S"], amount),
                _move(MERCHANT_ACCOUNT, f"-{amount}"),
            ]
        )
    except TransactionConditionFailed:
        return {"refunded_cents": 0}  # refunded concurrently by a duplicate
    faults.after_effect(ctx)
    return {"refunded_cents": int(amount)}
