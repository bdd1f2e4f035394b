"""Callback workers: a step's handler answering commands from its SQS queue.

For a step declared with ``Callback``, the state machine sends the step event with a task token
to the step's queue and waits. The step's ``@saga_step`` handler, deployed as the queue's
worker, gets SQS batches; each record is one command:

1. a first heartbeat, when the step has one: a command whose task is already closed (the saga
   timed out or its group was stopped while the command waited in the queue) is dropped
   without running the action, because Step Functions would refuse its answer anyway;
2. the step itself, exactly as for a synchronous step: idempotent on (saga, step, phase), through
   the late-action barrier;
3. the reply: ``SendTaskSuccess`` with the result, or ``SendTaskFailure`` with the exception's
   class name as the error (the name the step's Retry and Catch match, as for a Lambda's
   ``errorType``) and its message as the cause.

A reply Step Functions refuses because the task is closed (timed out, stopped, already answered)
is logged and the command consumed: the duplicate or late answer changes nothing, and its effect,
if any, went through the barrier. A reply that could not be sent for any other reason fails the
record alone (partial batch failure), so SQS delivers the command again and the idempotent step
answers it from its stored result; past ``max_receive_count`` the command goes to the
dead-letter queue, and the saga compensates at its timeout. A malformed command is failed the
same way: parked in the dead-letter queue, never dropped.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from saga_kit.contract import TASK_TOKEN_FIELD, Env
from saga_kit.runtime.errors import CallbackTaskClosed, MalformedCommand

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

logger = Logger()

#: Step Functions' answers to a reply or heartbeat for a task that no longer waits.
TASK_CLOSED_ERRORS = frozenset({"TaskTimedOut", "TaskDoesNotExist", "InvalidToken"})
#: Step Functions' limit on a task failure's cause.
MAX_CAUSE_CHARS = 32_768

RunStep = Callable[[dict[str, Any], Any, "CallbackTask"], dict[str, Any]]


def is_command_batch(event: Any) -> bool:
    """Whether a handler's event is an SQS batch (a callback worker) rather than a step event."""
    return isinstance(event, dict) and isinstance(event.get("Records"), list)


class CallbackTask:
    """The Step Functions task one command belongs to: heartbeats and the reply."""

    def __init__(self, sfn: Any, token: str) -> None:
        self._sfn = sfn
        self.token = token

    @property
    def has_heartbeat(self) -> bool:
        """Whether the step declares a heartbeat (only then does Step Functions take one)."""
        return bool(os.environ.get(Env.CALLBACK_HEARTBEAT_SECONDS))

    def heartbeat(self) -> None:
        """Tells Step Functions the work goes on.

        Raises:
            CallbackTaskClosed: the task no longer waits; stop working.
        """
        if not self.has_heartbeat:
            return
        if not self._call(self._sfn.send_task_heartbeat, taskToken=self.token):
            raise CallbackTaskClosed("Step Functions no longer waits for this step")

    def succeed(self, result: dict[str, Any]) -> bool:
        """Replies with the step's result; ``False`` if the task was already closed."""
        return self._call(self._sfn.send_task_success, taskToken=self.token,
                          output=json.dumps(result, default=str))

    def fail(self, error: BaseException) -> bool:
        """Replies with the step's failure; ``False`` if the task was already closed."""
        return self._call(self._sfn.send_task_failure, taskToken=self.token,
                          error=type(error).__name__[:256], cause=str(error)[:MAX_CAUSE_CHARS])

    @staticmethod
    def _call(operation: Callable[..., Any], **kwargs: Any) -> bool:
        try:
            operation(**kwargs)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in TASK_CLOSED_ERRORS:
                return False
            raise
        return True


def serve_commands(event: dict[str, Any], context: Any, run_step: RunStep, sfn: Any
                   ) -> dict[str, Any]:
    """Answers every command of an SQS batch; returns the partial batch failures."""
    # Imported here: every step's handler imports this module, and only workers need batching
    # (kept off the cold start of synchronous steps).
    from aws_lambda_powertools.utilities.batch import (
        BatchProcessor,
        EventType,
        process_partial_response,
    )

    # A processor per invocation: it holds the batch's state, and the local cloud runs
    # invocations of one function concurrently in one process.
    # Every record failing is still a partial answer: each command goes back on its own.
    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)

    def answer(record: SQSRecord) -> None:
        command = _parse(record)
        task = CallbackTask(sfn, command.pop(TASK_TOKEN_FIELD))
        try:
            task.heartbeat()
        except CallbackTaskClosed:
            logger.warning("command dropped: its task is closed; nothing was done",
                           extra={"step": command.get("step"), "message_id": record.message_id})
            return
        try:
            result = run_step(command, context, task)
        except Exception as error:  # the step's failure is the reply, as a Lambda's errorType
            replied = task.fail(error)
            outcome = "failure"
        else:
            replied = task.succeed(result)
            outcome = "success"
        if not replied:
            logger.warning(f"{outcome} reply refused: the task is closed (late or duplicate)",
                           extra={"step": command.get("step"), "message_id": record.message_id})

    return process_partial_response(event=event, record_handler=answer, processor=processor,
                                    context=context)


def _parse(record: SQSRecord) -> dict[str, Any]:
    try:
        command = json.loads(record.body)
    except (TypeError, ValueError) as error:
        raise MalformedCommand(f"command is not JSON: {error}") from None
    if not isinstance(command, dict) or not isinstance(command.get(TASK_TOKEN_FIELD), str):
        raise MalformedCommand(f"command has no {TASK_TOKEN_FIELD!r}; not sent by the saga")
    return command
