"""Finding sagas stuck in production: one query on the saga store's (status, updated_at) index."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from saga_kit.contract import STATUS_INDEX


def find_stuck(dynamodb: Any, table: str, *, status: str = "compensating",
               older_than: timedelta = timedelta(minutes=15),
               now: datetime | None = None) -> list[dict[str, str]]:
    """Sagas in ``status`` whose last update is older than ``older_than``, oldest first.

    "Stuck in compensating for more than 15 minutes" is the default question: a compensation
    that keeps failing updates its saga at every attempt, so a saga that stopped being updated
    is one that nothing is working on.
    """
    cutoff = (now or datetime.now(UTC)) - older_than
    cutoff_text = cutoff.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + (
        f"{cutoff.microsecond // 1000:03d}Z")
    found: list[dict[str, str]] = []
    kwargs: dict[str, Any] = {
        "TableName": table,
        "IndexName": STATUS_INDEX,
        "KeyConditionExpression": "#status = :status AND updated_at < :cutoff",
        "ExpressionAttributeNames": {"#status": "status"},
        "ExpressionAttributeValues": {":status": {"S": status}, ":cutoff": {"S": cutoff_text}},
    }
    while True:
        page = dynamodb.query(**kwargs)
        for item in page.get("Items", []):
            found.append({key: value.get("S", "") for key, value in item.items()})
        if "LastEvaluatedKey" not in page:
            return found
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
