"""Self-test Lambda: writes one DynamoDB item per call and returns its input.

Event keys (all optional except ``id``):
- ``fail_times``: raise ``FlakyError`` on the first N attempts for this id.
- ``sleep``: seconds to sleep before writing (to outlive a Task's TimeoutSeconds).
"""

from __future__ import annotations

import os
import time
from typing import Any

import boto3


class FlakyError(Exception):
    """Custom error the state machine retries on."""


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Record the call in the table named by TABLE_NAME and echo the event."""
    table = boto3.resource("dynamodb").Table(os.environ["TABLE_NAME"])
    item_id = str(event["id"])
    attempts = table.update_item(
        Key={"pk": f"attempts#{item_id}"},
        UpdateExpression="ADD attempts :one",
        ExpressionAttributeValues={":one": 1},
        ReturnValues="UPDATED_NEW",
    )["Attributes"]["attempts"]
    if int(attempts) <= int(event.get("fail_times", 0)):
        raise FlakyError(f"attempt {attempts} of {item_id} fails on purpose")
    time.sleep(float(event.get("sleep", 0)))
    table.put_item(
        Item={
            "pk": item_id,
            "function_name": context.function_name,
            "env_function_name": os.getenv("AWS_LAMBDA_FUNCTION_NAME", ""),
            "remaining_ms": int(context.get_remaining_time_in_millis()),
        }
    )
    return event
