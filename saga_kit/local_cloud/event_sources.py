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
import threading
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


def _source(sqs_client: Any, mapping: dict[str, Any]) -> tuple[str, str, str, int, bool]:
    """What delivering a mapping needs: queue URL and ARN, function ARN, batch size (SQS gives
    at most 10 a receive), and whether the function reports partial batch failures."""
    return (sqs_client.get_queue_url(QueueName=mapping["EventSourceArn"].split(":")[-1])["QueueUrl"],
            mapping["EventSourceArn"], mapping["FunctionArn"],
            min(int(mapping.get("BatchSize") or 10), 10),
            "ReportBatchItemFailures" in mapping.get("FunctionResponseTypes", []))


def pump_sqs_event_sources(lambda_client: Any, sqs_client: Any, region: str,
                           max_batches: int = 10_000, functions: set[str] | None = None,
                           skip: set[str] | None = None) -> int:
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
        names = {mapping["FunctionArn"], mapping["FunctionArn"].split(":")[-1]}
        if functions is not None and not names & functions:
            continue
        if skip and names & skip:
            continue
        queue_url, _, function_arn, batch_size, reports_failures = _source(sqs_client, mapping)
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
            _deliver_batch(lambda_client, sqs_client, queue_url, function_arn, messages,
                           [_record(m, source_arn, region) for m in messages], reports_failures)
    return delivered


def _deliver_batch(lambda_client: Any, sqs_client: Any, queue_url: str, function_arn: str,
                   messages: list[dict[str, Any]], records: list[dict[str, Any]],
                   reports_failures: bool) -> None:
    answer = lambda_client.invoke(FunctionName=function_arn,
                                  Payload=json.dumps({"Records": records}).encode())
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
                QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0)
        else:
            sqs_client.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])


class ContinuousDelivery:
    """Delivers the messages of some SQS event source mappings as they arrive, in the
    background, each batch in its own thread, the way Lambda's poller serves a queue.

    For callback steps: the state machine waits for the worker's reply, so nothing must wait for
    a test to pump, and one slow worker (a participant that takes its time) must not hold up
    another's commands. A received message stays invisible while its batch runs; a failed one
    is released at once and, past ``maxReceiveCount``, moved to its dead-letter queue by SQS.
    """

    def __init__(self, lambda_client: Any, sqs_client: Any, region: str,
                 mappings: list[dict[str, Any]], poll_seconds: float = 0.01,
                 idle_poll_seconds: float = 0.1) -> None:
        self._lambda = lambda_client
        self._sqs = sqs_client
        self._region = region
        self._poll = poll_seconds
        self._idle_poll = idle_poll_seconds
        self._stop = threading.Event()
        self._batches: list[threading.Thread] = []
        self._sources = [_source(sqs_client, m) for m in mappings]
        self._poller = threading.Thread(target=self._run, name="callback-delivery", daemon=True)

    def start(self) -> ContinuousDelivery:
        """Starts polling (a no-op without mappings)."""
        if self._sources:
            self._poller.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stops polling and waits up to ``timeout`` for the batches under way."""
        self._stop.set()
        if self._poller.is_alive():
            self._poller.join(timeout)
        for batch in list(self._batches):
            batch.join(timeout)

    def _run(self) -> None:
        # Polling slows down while the queues stay empty: the cloud lives for a whole test
        # session, and every receive takes the GIL from the handlers that do the work.
        wait = self._poll
        while not self._stop.is_set():
            delivered = False
            for queue_url, queue_arn, function_arn, batch_size, reports in self._sources:
                try:
                    messages = self._sqs.receive_message(
                        QueueUrl=queue_url, MaxNumberOfMessages=batch_size, WaitTimeSeconds=0,
                        AttributeNames=["All"], MessageAttributeNames=["All"],
                    ).get("Messages", [])
                except Exception:  # the cloud is stopping under us
                    if self._stop.is_set():
                        return
                    raise
                if not messages:
                    continue
                records = [_record(m, queue_arn, self._region) for m in messages]
                batch = threading.Thread(
                    target=_deliver_batch, name=f"deliver-{queue_arn.split(':')[-1]}",
                    args=(self._lambda, self._sqs, queue_url, function_arn, messages, records,
                          reports), daemon=True)
                self._batches = [b for b in self._batches if b.is_alive()] + [batch]
                batch.start()
                delivered = True
            wait = self._poll if delivered else min(wait * 2, self._idle_poll)
            self._stop.wait(wait)
