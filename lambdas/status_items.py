"""One item per saga whose ``status`` moves once: a shipment, an itinerary, a charge.

Shared by the example apps' participants: an undo is a conditional status change, so a repeat
(or a duplicate running concurrently) finds the status already moved and changes nothing.
"""

from __future__ import annotations

from typing import Any


def status_change(table: str, key: dict[str, Any], from_status: str, to_status: str
                  ) -> dict[str, Any]:
    """A ``TransactWriteItems`` entry moving ``key``'s status from ``from_status`` to
    ``to_status``; its condition fails if the item is not in ``from_status``."""
    return {
        "Update": {
            "TableName": table,
            "Key": key,
            "UpdateExpression": "SET #s = :to",
            "ConditionExpression": "#s = :from",
            "ExpressionAttributeNames": {"#s": "status"},
            "ExpressionAttributeValues": {":to": {"S": to_status}, ":from": {"S": from_status}},
        }
    }
