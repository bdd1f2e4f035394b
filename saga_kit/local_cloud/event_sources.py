"""SQS event source mappings, delivered the way Lambda's poller does, when the caller asks.

moto invokes an SQS event source mapping synchronously inside ``SendMessage``, once, ignores
``batchItemFailures`` and never retries a failed message, so redrive and dead-letter behaviour
cannot be tested on it. LocalCloud turns that off and delivers instead through
:func:`pump_sqs_event_sources`: receive a batch (which counts a delivery and, past the queue's
``maxReceiveCount``, moves the message to its DLQ, as SQS does), invoke the function with a
Lambda-shaped SQS event, delete what succeeded and release what failed. A failed message is made
visible again at once instead of after the visibility timeout (the queue's timeout is minutes;
tests should not wait for it), so a pump runs until every mapped queue is empty.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from saga_kit.local_cloud._patching import patched
from saga_kit.local_cloud.errors import LocalCloudError


@contextmanager
def no_inline_sqs_delivery() -> Iterator[None]:
    """Stops moto from invoking SQS event source mappings inside ``SendMessage``."""
    from moto.sqs.models import Queue

    # A class-level property hides the per-queue registry moto fills and reads.
    registry = property(lambda _queue: {}, lambda _queue, _value: None)
    with patched(Queue, "lambda_event_source_mappings", registry):
        yield


def _record(message: dict[str, Any], queue_arn: str, region: str) -> dict[str, Any]:
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": message.get("Attributes", {}),
        "messageAttributes": message.get("MessageAttributes", {}),
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }


def pump_sqs_event_sources(lambda_client: Any, sqs_client: Any, region: str,
                           max_batches: int = 10_000, functions: set[str] | None = None) -> int:
    """Delivers every message of every enabled SQS mapping (of ``functions``, names or ARNs,
    when given) until the queues are empty.

    Returns the number of batches delivered. Raises :class:`LocalCloudError` if the queues do not
    drain within ``max_batches`` (a failing message with no DLQ would circulate forever).
    """
    delivered = 0
    mappings = []
    for page in lambda_client.get_paginator("list_event_source_mappings").paginate():
        mappings.extend(page["EventSourceMappings"])
    for mapping in mappings:
        source_arn = mapping.get("EventSourceArn", "")
        if not source_arn.startswith("arn:aws:sqs:") or mapping.get("State") not in (
            "Enabled", None
        ):
            continue
        if functions is not None and not ({mapping["FunctionArn"],
                                           mapping["FunctionArn"].split(":")[-1]} & functions):
            continue
        queue_url = sqs_client.get_queue_url(QueueName=source_arn.split(":")[-1])["QueueUrl"]
        reports_failures = "ReportBatchItemFailures" in mapping.get("FunctionResponseTypes", [])
        batch_size = min(int(mapping.get("BatchSize") or 10), 10)
        while True:
            if delivered >= max_batches:
                raise LocalCloudError(f"{source_arn} did not drain in {max_batches} batches")
            messages = sqs_client.receive_message(
                QueueUrl=queue_url, MaxNumberOfMessages=batch_size, WaitTimeSeconds=0,
                AttributeNames=["All"], MessageAttributeNames=["All"],
            ).get("Messages", [])
            if not messages:
                break
            delivered += 1
            event = {"Records": [_record(m, source_arn, region) for m in messages]}
            answer = lambda_client.invoke(FunctionName=mapping["FunctionArn"],
                                          Payload=json.dumps(event).encode())
            payload = json.loads(answer["Payload"].read() or b"null")
            if answer.get("FunctionError"):
                failed = {m["MessageId"] for m in messages}
            elif reports_failures and isinstance(payload, dict):
                failed = {f["itemIdentifier"] for f in payload.get("batchItemFailures") or []}
            else:
                failed = set()
            for message in messages:
                if message["MessageId"] in failed:
                    sqs_client.change_message_visibility(
                        QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"],
                        VisibilityTimeout=0)
                else:
                    sqs_client.delete_message(QueueUrl=queue_url,
                                              ReceiptHandle=message["ReceiptHandle"])
    return delivered
