"""A payments ledger on DynamoDB, shared by the example apps' payment participants.

Accounts (``account#<name>``, attribute ``balance`` in cents) and one charge per saga
(``charge#<saga id>``: ``customer``, ``amount``, ``status`` ``charged`` or ``refunded``) live in
one table. A charge moves money from the payer's account to the payee's (a merchant, a travel
agency); a refund moves it back. Money is only ever moved inside one transaction, so the sum over
all accounts never changes: that is what the apps' books check after any mix of sagas.

The charge goes through ``ctx.transact_write``, so the late-action barrier joins its transaction
(a handler declared ``@saga_step(transactional=True)``), and it is idempotent by the charge item:
a repeat finds the charge recorded and moves nothing.
"""

from __future__ import annotations

from typing import Any

from status_items import status_change

from saga_kit.runtime import BusinessError, StepContext, TransactionConditionFailed, dynamodb_client


def charge_key(saga_id: str) -> dict[str, Any]:
    """The key of a saga's charge item."""
    return {"pk": {"S": f"charge#{saga_id}"}}


def _move(table: str, account: str, delta: str) -> dict[str, Any]:
    return {
        "Update": {
            "TableName": table,
            "Key": {"pk": {"S": f"account#{account}"}},
            "UpdateExpression": "SET balance = if_not_exists(balance, :zero) + :delta",
            "ExpressionAttributeValues": {":delta": {"N": delta}, ":zero": {"N": "0"}},
        }
    }


def charge(ctx: StepContext, *, table: str, payer: str, payee: str, amount: int,
           declined: BusinessError) -> None:
    """Moves ``amount`` cents from ``payer`` to ``payee`` once per saga, recording the charge.

    Raises:
        declined: the payer's balance does not cover the amount (nothing was moved).
    """
    debit = _move(table, payer, str(-amount))
    debit["Update"]["ConditionExpression"] = "balance >= :amount"
    debit["Update"]["ExpressionAttributeValues"][":amount"] = {"N": str(amount)}
    try:
        ctx.transact_write(
            [
                debit,
                _move(table, payee, str(amount)),
                {
                    "Put": {
                        "TableName": table,
                        "Item": {
                            **charge_key(ctx.saga_id),
                            "customer": {"S": payer},
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
            raise declined from None
        # The charge exists: an earlier attempt made it, so this one is a repeat.


def refund(ctx: StepContext, *, table: str, payee: str) -> int | None:
    """Moves the saga's charge back from ``payee`` to the payer, if it is not refunded yet.

    Returns the cents refunded, or ``None`` when there was nothing to refund (no charge, or one
    already refunded, possibly by a duplicate running concurrently).
    """
    item = dynamodb_client().get_item(
        TableName=table, Key=charge_key(ctx.saga_id), ConsistentRead=True
    ).get("Item")
    if item is None or item["status"]["S"] != "charged":
        return None
    amount = item["amount"]["N"]
    try:
        ctx.transact_write(
            [
                status_change(table, charge_key(ctx.saga_id), "charged", "refunded"),
                _move(table, item["customer"]["S"], amount),
                _move(table, payee, f"-{amount}"),
            ]
        )
    except TransactionConditionFailed:
        return None  # refunded concurrently by a duplicate
    return int(amount)
