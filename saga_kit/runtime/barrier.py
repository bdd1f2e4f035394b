"""The late-action barrier: an action that arrives after its compensation has no effect.

One DynamoDB item per (saga, step) records whether the action started and whether the step was
compensated. The compensation marks the item first and only then undoes; the action checks the
mark with a conditional write before its side effect and, for DynamoDB participants, again inside
the very transaction that performs the side effect (:meth:`StepBarrier.condition_check`). Either
check failing means the compensation got there first, and the action must not take effect.
"""

from __future__ import annotations

import time
from typing import Any

from botocore.exceptions import ClientError

from saga_kit.runtime.errors import LateActionRefused

#: Barrier items outlive any saga by far; they are dropped by TTL after this long.
BARRIER_TTL_SECONDS = 30 * 24 * 3600

_NOT_COMPENSATED = "attribute_not_exists(compensated_at)"


class StepBarrier:
    """The barrier item of one step of one saga."""

    def __init__(self, client: Any, table_name: str, saga_type: str, saga_id: str, step: str):
        self._client = client
        self.table_name = table_name
        self.key = {"saga": {"S": f"{saga_type}#{saga_id}"}, "step": {"S": step}}

    def enter_action(self) -> None:
        """Records that the action starts; refuses it if the step was already compensated.

        Raises:
            LateActionRefused: the compensation of this step already ran.
        """
        now = int(time.time())
        try:
            self._client.update_item(
                TableName=self.table_name,
                Key=self.key,
                UpdateExpression=(
                    "SET action_started_at = if_not_exists(action_started_at, :now), "
                    "expires_at = :ttl ADD action_attempts :one"
                ),
                ConditionExpression=_NOT_COMPENSATED,
                ExpressionAttributeValues={
                    ":now": {"N": str(now)},
                    ":ttl": {"N": str(now + BARRIER_TTL_SECONDS)},
                    ":one": {"N": "1"},
                },
            )
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                raise LateActionRefused(
                    f"step {self.key['step']['S']} of saga {self.key['saga']['S']} was already "
                    "compensated; this late action has no effect"
                ) from None
            raise

    def condition_check(self) -> dict[str, Any]:
        """A ``TransactWriteItems`` entry that fails if the step has been compensated.

        Put it in the same transaction as the action's side effect to make the check and the
        effect atomic.
        """
        return {
            "ConditionCheck": {
                "TableName": self.table_name,
                "Key": self.key,
                "ConditionExpression": _NOT_COMPENSATED,
            }
        }

    def transactional_entry(self) -> dict[str, Any]:
        """A ``TransactWriteItems`` entry that records the action as taken, unless the step has
        been compensated: the barrier written atomically with the action's side effect."""
        now = int(time.time())
        return {
            "Update": {
                "TableName": self.table_name,
                "Key": self.key,
                "UpdateExpression": (
                    "SET action_started_at = if_not_exists(action_started_at, :now), "
                    "expires_at = :ttl ADD action_attempts :one"
                ),
                "ConditionExpression": _NOT_COMPENSATED,
                "ExpressionAttributeValues": {
                    ":now": {"N": str(now)},
                    ":ttl": {"N": str(now + BARRIER_TTL_SECONDS)},
                    ":one": {"N": "1"},
                },
            }
        }

    def extend_expiry(self, expires_at: int) -> bool:
        """Keeps the item until at least ``expires_at`` (epoch seconds), if it exists; returns
        whether it does. Never creates one: a missing item means the action never started."""
        try:
            self._client.update_item(
                TableName=self.table_name,
                Key=self.key,
                UpdateExpression="SET expires_at = :ttl",
                ConditionExpression="attribute_exists(step) AND (attribute_not_exists(expires_at) "
                                    "OR expires_at < :ttl)",
                ExpressionAttributeValues={":ttl": {"N": str(expires_at)}},
                # A refused update says why in the same answer: no item, or already kept longer.
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            return bool(error.response.get("Item"))
        return True

    def compensated(self) -> bool:
        """Whether the step's compensation has run (no action of it can take effect now)."""
        item = self._client.get_item(TableName=self.table_name, Key=self.key, ConsistentRead=True,
                                     ProjectionExpression="compensated_at").get("Item") or {}
        return "compensated_at" in item

    def enter_compensation(self) -> bool:
        """Marks the step compensated (no later action can take effect) and reports whether the
        action ever started, i.e. whether there can be anything to undo."""
        now = int(time.time())
        answer = self._client.update_item(
            TableName=self.table_name,
            Key=self.key,
            UpdateExpression=(
                "SET compensated_at = if_not_exists(compensated_at, :now), expires_at = :ttl"
            ),
            ExpressionAttributeValues={
                ":now": {"N": str(now)},
                ":ttl": {"N": str(now + BARRIER_TTL_SECONDS)},
            },
            ReturnValues="ALL_OLD",
        )
        return "action_started_at" in answer.get("Attributes", {})
