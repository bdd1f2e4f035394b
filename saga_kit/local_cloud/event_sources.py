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
import time
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


class _BackgroundPoller:
    """A daemon thread that runs delivery rounds until stopped.

    Polling slows down while rounds find nothing: the cloud lives for a whole test session, and
    every poll takes the GIL from the handlers that do the work. A round that fails while the
    cloud is stopping ends the thread quietly; one that fails otherwise ends it too, and
    :meth:`raise_if_failed` says so instead of letting deliveries stop unnoticed.
    """

    def __init__(self, name: str, has_sources: bool, poll_seconds: float,
                 idle_poll_seconds: float) -> None:
        self._has_sources = has_sources
        self._poll = poll_seconds
        self._idle_poll = idle_poll_seconds
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._run, name=name, daemon=True)
        #: What ended the poller, if a round failed while the cloud was running.
        self.error: Exception | None = None

    def start(self) -> Any:
        """Starts polling (a no-op without mappings); returns the poller."""
        if self._has_sources:
            self._poller.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stops polling, waiting up to ``timeout`` for the round under way."""
        self._stop.set()
        if self._poller.is_alive():
            self._poller.join(timeout)

    def raise_if_failed(self) -> None:
        """Raises :class:`LocalCloudError` if a round failed and ended the poller."""
        if self.error is not None:
            raise LocalCloudError(f"{self._poller.name} stopped: {self.error!r}") from self.error

    def _round(self) -> bool:
        """One pass over the sources; whether it delivered anything."""
        raise NotImplementedError

    def _idle_round(self) -> None:
        """Called after a round that delivered nothing."""

    def _run(self) -> None:
        wait = self._poll
        while not self._stop.is_set():
            try:
                delivered = self._round()
            except Exception as error:
                if self._stop.is_set():
                    return
                self.error = error
                raise
            if not delivered:
                self._idle_round()
            wait = self._poll if delivered else min(wait * 2, self._idle_poll)
            self._stop.wait(wait)


class ContinuousDelivery(_BackgroundPoller):
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
        sources = [_source(sqs_client, m) for m in mappings]
        super().__init__("callback-delivery", bool(sources), poll_seconds, idle_poll_seconds)
        self._lambda = lambda_client
        self._sqs = sqs_client
        self._region = region
        self._batches: list[threading.Thread] = []
        self._sources = sources

    def stop(self, timeout: float = 5.0) -> None:
        """Stops polling and waits up to ``timeout`` for the batches under way."""
        super().stop(timeout)
        for batch in list(self._batches):
            batch.join(timeout)

    def _round(self) -> bool:
        delivered = False
        for queue_url, queue_arn, function_arn, batch_size, reports in self._sources:
            messages = self._sqs.receive_message(
                QueueUrl=queue_url, MaxNumberOfMessages=batch_size, WaitTimeSeconds=0,
                AttributeNames=["All"], MessageAttributeNames=["All"],
            ).get("Messages", [])
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
        return delivered


# -- DynamoDB streams -------------------------------------------------------------------------


@contextmanager
def no_inline_stream_delivery() -> Iterator[None]:
    """Stops moto from invoking DynamoDB stream mappings inside the write that made the record.

    moto calls the function synchronously, in the writer's thread (a handler's own store write
    would run another handler inside it), retries nothing, and then empties the shard, so a
    reader of the stream sees nothing. :class:`StreamDelivery` delivers instead.
    """
    from moto.dynamodb.models.table import Table

    registry = property(lambda _table: {}, lambda _table, _value: None)
    with patched(Table, "lambda_event_source_mappings", registry):
        yield


class MotoStreams:
    """The three DynamoDB Streams calls the delivery needs, straight on moto's backend.

    boto3's ``dynamodbstreams`` client gets "404 Not yet implemented" from ``mock_aws`` in moto
    5.2.5, while the backend behind it works; the local cloud runs in-process, so it reads the
    backend, with the same request and answer shapes as the API.
    """

    def __init__(self, account_id: str, region: str) -> None:
        from moto.dynamodbstreams.models import dynamodbstreams_backends

        self._backend = dynamodbstreams_backends[account_id][region]

    def describe_stream(self, StreamArn: str) -> dict[str, Any]:
        return {"StreamDescription": self._backend.describe_stream(StreamArn)}

    def get_shard_iterator(self, StreamArn: str, ShardId: str,
                           ShardIteratorType: str) -> dict[str, Any]:
        iterator = self._backend.get_shard_iterator(StreamArn, ShardId, ShardIteratorType)
        return {"ShardIterator": iterator.arn}

    def get_records(self, ShardIterator: str, Limit: int) -> dict[str, Any]:
        page = dict(self._backend.get_records(ShardIterator, Limit))
        # moto keeps every iterator it hands out; a poller asks for one every few milliseconds.
        self._backend.shard_iterators.pop(ShardIterator, None)
        return page


class _StreamSource:
    """One stream mapping: where its shard iterator stands, and what a failed batch becomes."""

    def __init__(self, streams: Any, mapping: dict[str, Any]) -> None:
        self.stream_arn: str = mapping["EventSourceArn"]
        self.function_arn: str = mapping["FunctionArn"]
        self.batch_size = int(mapping.get("BatchSize") or 100)
        self.reports_failures = "ReportBatchItemFailures" in mapping.get("FunctionResponseTypes", [])
        self.max_retries = int(mapping.get("MaximumRetryAttempts", -1))
        self.on_failure = (mapping.get("DestinationConfig", {}).get("OnFailure", {})
                           .get("Destination", ""))
        shard = streams.describe_stream(StreamArn=self.stream_arn)["StreamDescription"]["Shards"][0]
        self.shard_id: str = shard["ShardId"]
        self.iterator: str = streams.get_shard_iterator(
            StreamArn=self.stream_arn, ShardId=self.shard_id,
            ShardIteratorType=mapping.get("StartingPosition") or "TRIM_HORIZON")["ShardIterator"]


class StreamDelivery(_BackgroundPoller):
    """Delivers the DynamoDB stream records of some event source mappings in the background, in
    order, the way Lambda's stream poller does.

    A batch is retried until it succeeds, from its first failed record when the function reports
    partial failures, up to the mapping's ``MaximumRetryAttempts``; then the batch's position
    goes to the on-failure destination (an SQS queue) and delivery moves on, as on AWS. Retries
    follow at once (Lambda backs off; tests should not wait for it). :meth:`wait_drained` waits
    until every record written so far was delivered.
    """

    def __init__(self, lambda_client: Any, streams_client: Any, sqs_client: Any,
                 mappings: list[dict[str, Any]], poll_seconds: float = 0.01,
                 idle_poll_seconds: float = 0.1) -> None:
        sources = [_StreamSource(streams_client, m) for m in mappings]
        super().__init__("stream-delivery", bool(sources), poll_seconds, idle_poll_seconds)
        self._lambda = lambda_client
        self._streams = streams_client
        self._sqs = sqs_client
        self._sources = sources
        self._idle = threading.Condition()
        self._rounds = 0

    def wait_drained(self, timeout: float = 10.0) -> None:
        """Waits for a whole polling round that found nothing new, begun after this call:
        every change written before it has then been delivered. ``TimeoutError`` otherwise."""
        if not self._poller.is_alive():
            self.raise_if_failed()
            return
        deadline = time.monotonic() + timeout
        with self._idle:
            wanted = self._rounds + 2  # the round under way may have read before our caller wrote
            while self._rounds < wanted:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"stream records still undelivered after {timeout} s")
                self._idle.wait(remaining)

    def _round(self) -> bool:
        return any([self._deliver_next(source) for source in self._sources])

    def _idle_round(self) -> None:
        with self._idle:
            self._rounds += 1
            self._idle.notify_all()

    def _deliver_next(self, source: _StreamSource) -> bool:
        page = self._streams.get_records(ShardIterator=source.iterator, Limit=source.batch_size)
        records = page.get("Records", [])
        if not records:
            source.iterator = page["NextShardIterator"]  # as on AWS, an iterator serves once
            return False
        for record in records:
            record.setdefault("eventSourceARN", source.stream_arn)
            record.setdefault("eventSource", "aws:dynamodb")
        pending = records
        attempts = 0
        while pending:
            failed_from = self._invoke(source, pending)
            if failed_from is None:
                break
            attempts += 1
            pending = pending[failed_from:]
            if 0 <= source.max_retries < attempts:
                self._give_up(source, pending)
                break
        source.iterator = page["NextShardIterator"]
        return True

    def _invoke(self, source: _StreamSource, records: list[dict[str, Any]]) -> int | None:
        """Delivers one batch; returns the index of the first record to deliver again, or
        ``None`` when the batch succeeded."""
        answer = self._lambda.invoke(FunctionName=source.function_arn,
                                     Payload=json.dumps({"Records": records}, default=str).encode())
        payload = json.loads(answer["Payload"].read() or b"null")
        if answer.get("FunctionError"):
            return 0
        if source.reports_failures and isinstance(payload, dict):
            failed = {f.get("itemIdentifier") for f in payload.get("batchItemFailures") or []}
            for index, record in enumerate(records):
                if record["dynamodb"]["SequenceNumber"] in failed:
                    return index
        return None

    def _give_up(self, source: _StreamSource, records: list[dict[str, Any]]) -> None:
        if not source.on_failure.startswith("arn:aws:sqs:"):
            return
        queue_url = self._sqs.get_queue_url(QueueName=source.on_failure.split(":")[-1])["QueueUrl"]
        self._sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps({
            "requestContext": {"functionArn": source.function_arn,
                               "condition": "RetryAttemptsExhausted"},
            "DDBStreamBatchInfo": {
                "shardId": source.shard_id, "streamArn": source.stream_arn,
                "startSequenceNumber": records[0]["dynamodb"]["SequenceNumber"],
                "endSequenceNumber": records[-1]["dynamodb"]["SequenceNumber"],
                "batchSize": len(records)},
        }))
