"""Counted stock held per saga, on DynamoDB: shared by the example apps' booking participants.

Goods on a shelf, seats on a flight, rooms in a hotel, cars of a class: a counter item
(``<kind>#<id>`` with a numeric attribute) and, per saga, a hold item (``<kind>#<saga id>``) that
records what the saga took and from which counter, so the undo needs nothing but the saga id.

:func:`take` goes through ``ctx.transact_write`` (the late-action barrier joins the transaction
when the handler is ``@saga_step(transactional=True)``) and is idempotent by the hold item: a
repeat finds the hold recorded and takes nothing. :func:`give_back` deletes the hold and restores
the counter in one transaction, and does nothing when there is no hold.
"""

from __future__ import annotations

from typing import Any

from saga_kit.runtime import BusinessError, StepContext, TransactionConditionFailed, dynamodb_client


def take(ctx: StepContext, *, table: str, counter: str, attribute: str, hold: str, quantity: int,
         details: dict[str, Any], sold_out: BusinessError) -> None:
    """Takes ``quantity`` from ``attribute`` of the item ``counter`` and records the hold ``hold``.

    Args:
        counter: The counter item's ``pk``, e.g. ``flight#FL-100``.
        hold: The hold item's ``pk``, e.g. ``booking#<saga id>``.
        details: More attributes for the hold item (DynamoDB typed values).
        sold_out: Raised when the counter holds fewer than ``quantity`` (or does not exist).
    """
    try:
        ctx.transact_write(
            [
                {
                    "Update": {
                        "TableName": table,
                        "Key": {"pk": {"S": counter}},
                        "UpdateExpression": "SET #n = #n - :q",
                        "ConditionExpression": "#n >= :q",
                        "ExpressionAttributeNames": {"#n": attribute},
                        "ExpressionAttributeValues": {":q": {"N": str(quantity)}},
                    }
                },
                {
                    "Put": {
                        "TableName": table,
                        "Item": {
                            **details,
                            "pk": {"S": hold},
                            "counter": {"S": counter},
                            "quantity": {"N": str(quantity)},
                        },
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                },
            ]
        )
    except TransactionConditionFailed as failure:
        if 1 not in failure.failed_items:
            raise sold_out from None
        # The hold exists: an earlier attempt applied it, so this one is a repeat.


def give_back(ctx: StepContext, *, table: str, attribute: str, hold: str) -> int | None:
    """Returns a hold's quantity to its counter and deletes the hold.

    Returns the quantity given back, or ``None`` when there was no hold (never taken, or given
    back already, possibly by a duplicate running concurrently).
    """
    item = dynamodb_client().get_item(
        TableName=table, Key={"pk": {"S": hold}}, ConsistentRead=True
    ).get("Item")
    if item is None:
        return None
    quantity = item["quantity"]["N"]
    try:
        ctx.transact_write(
            [
                {
                    "Delete": {
                        "TableName": table,
                        "Key": {"pk": {"S": hold}},
                        "ConditionExpression": "attribute_exists(pk)",
                    }
                },
                {
                    "Update": {
                        "TableName": table,
                        "Key": {"pk": {"S": item["counter"]["S"]}},
                        "UpdateExpression": "SET #n = #n + :q",
                        "ExpressionAttributeNames": {"#n": attribute},
                        "ExpressionAttributeValues": {":q": {"N": quantity}},
                    }
                },
            ]
        )
    except TransactionConditionFailed:
        return None  # given back concurrently by a duplicate
    return int(quantity)
