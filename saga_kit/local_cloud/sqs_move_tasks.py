"""``StartMessageMoveTask`` for moto's SQS: the API behind the console's "Start DLQ redrive".

moto 5.2.5 does not implement ``StartMessageMoveTask``, ``ListMessageMoveTasks`` or
``CancelMessageMoveTask``. This adds them to moto's SQS front end with the semantics the kit
relies on: every message in the source (dead-letter) queue moves to the destination queue, or,
without a destination, back to the queue that uses the source as its dead-letter queue; moved
messages start over with a receive count of zero. moto runs the move at once, so a task is
``COMPLETED`` as soon as it starts, and cancelling one fails as AWS does for a finished task.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from saga_kit.local_cloud._patching import patched

_tasks: list[dict[str, Any]] = []
_tasks_lock = threading.Lock()


def _queue_by_arn(backend: Any, arn: str) -> Any:
    from moto.sqs.exceptions import QueueDoesNotExist

    for queue in backend.queues.values():
        if queue.queue_arn == arn:
            return queue
    raise QueueDoesNotExist()


def _start_message_move_task(self: Any) -> Any:
    from moto.core.responses import ActionResult
    from moto.sqs.exceptions import InvalidParameterValue

    backend = self.sqs_backend
    source_arn = self._get_param("SourceArn")
    if not source_arn:
        raise InvalidParameterValue("SourceArn is required")
    source = _queue_by_arn(backend, source_arn)
    origins = backend.list_dead_letter_source_queues(source.name)
    if not origins:
        raise InvalidParameterValue(f"Source queue {source_arn} is not a dead-letter queue")
    destination_arn = self._get_param("DestinationArn")
    if destination_arn:
        destination = _queue_by_arn(backend, destination_arn)
    else:
        if len(origins) != 1:
            raise InvalidParameterValue(
                f"Source queue {source_arn} is the dead-letter queue of {len(origins)} queues; "
                "give a DestinationArn"
            )
        destination = origins[0]
    to_move = [m for m in source._messages if m.visible]
    moved = 0
    for message in to_move:
        source._messages.remove(message)
        source.pending_messages.discard(message)
        backend.send_message(destination.name, message.body,
                             message_attributes=message.message_attributes or None)
        moved += 1
    handle = uuid.uuid4().hex
    now = int(time.time() * 1000)
    with _tasks_lock:
        _tasks.append({
            "TaskHandle": handle,
            "Status": "COMPLETED",
            "SourceArn": source_arn,
            "DestinationArn": destination.queue_arn,
            "ApproximateNumberOfMessagesMoved": moved,
            "ApproximateNumberOfMessagesToMove": len(to_move),
            "StartedTimestamp": now,
        })
    return ActionResult({"TaskHandle": handle})


def _list_message_move_tasks(self: Any) -> Any:
    from moto.core.responses import ActionResult

    source_arn = self._get_param("SourceArn")
    _queue_by_arn(self.sqs_backend, source_arn)
    limit = int(self._get_param("MaxResults") or 1)
    with _tasks_lock:
        found = [dict(t) for t in reversed(_tasks) if t["SourceArn"] == source_arn][:limit]
    for task in found:
        task.pop("TaskHandle")  # AWS returns it only for a running task
    return ActionResult({"Results": found})


def _cancel_message_move_task(self: Any) -> Any:
    from moto.sqs.exceptions import InvalidParameterValue

    handle = self._get_param("TaskHandle")
    with _tasks_lock:
        known = any(t["TaskHandle"] == handle for t in _tasks)
    if not known:
        raise InvalidParameterValue(f"Task {handle} does not exist")
    raise InvalidParameterValue(f"Task {handle} is already COMPLETED and cannot be cancelled")


@contextmanager
def message_move_tasks() -> Iterator[None]:
    """Adds the three message-move-task actions to moto's SQS while the cloud runs."""
    from moto.sqs.responses import SQSResponse

    with ExitStack() as stack:
        stack.enter_context(patched(SQSResponse, "start_message_move_task",
                                    _start_message_move_task))
        stack.enter_context(patched(SQSResponse, "list_message_move_tasks",
                                    _list_message_move_tasks))
        stack.enter_context(patched(SQSResponse, "cancel_message_move_task",
                                    _cancel_message_move_task))
        try:
            yield
        finally:
            with _tasks_lock:
                _tasks.clear()
