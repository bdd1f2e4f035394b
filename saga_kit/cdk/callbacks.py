"""The queue of an asynchronous participant: where the state machine sends a callback command.

A callback step's command goes, with its task token, to the step's own queue
(``sqs:sendMessage.waitForTaskToken``); the step's worker Lambda consumes it and replies to Step
Functions. The queue reports partial batch failures (a command whose reply could not be sent is
delivered again, alone) and has a dead-letter queue with an alarm: a command nobody could answer
is kept for an operator, and the saga, which stops waiting at its timeout or missed heartbeat,
compensates meanwhile.
"""

from __future__ import annotations

from aws_cdk import Duration, Stack
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from saga_kit.cdk.alarms import dead_letter_alarm, inspect_command
from saga_kit.cdk.declaration import Callback
from saga_kit.cdk.queues import durable_queue

#: AWS's advice for a queue feeding a Lambda: a visibility timeout of six times the function's,
#: so a command is not delivered again while a slow worker (and its retries) still holds it.
VISIBILITY_TIMEOUT_FACTOR = 6


class CallbackQueue(Construct):
    """The command queue, its dead-letter queue and alarm, and the worker's event source.

    Args:
        saga_name: The saga's name (queue names and alarm text).
        step_name: The callback step.
        phase: ``"action"`` or ``"compensation"``.
        worker: The step's handler function; it consumes the queue.
        callback: The step's :class:`~saga_kit.cdk.declaration.Callback` options.
        alarm_topic: SNS topic notified when a command reaches the dead-letter queue.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        saga_name: str,
        step_name: str,
        phase: str,
        worker: lambda_.Function,
        callback: Callback,
        alarm_topic: sns.ITopic | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        name = f"{Stack.of(self).stack_name}-{saga_name}-{step_name}-{phase}"[:76]
        self.dead_letter_queue = durable_queue(
            self,
            "DeadLetterQueue",
            queue_name=f"{name}-dlq",
            retention=Duration.days(14),
        )
        self.queue = durable_queue(
            self,
            "Queue",
            queue_name=name,
            retention=Duration.days(4),
            visibility_timeout=Duration.seconds(
                VISIBILITY_TIMEOUT_FACTOR * worker.timeout.to_seconds()
                if worker.timeout else 6 * 60),
            dead_letter_queue=sqs.DeadLetterQueue(
                max_receive_count=callback.max_receive_count, queue=self.dead_letter_queue),
        )
        worker.add_event_source(event_sources.SqsEventSource(
            self.queue, batch_size=callback.batch_size, report_batch_item_failures=True))
        self.dead_letter_alarm = dead_letter_alarm(
            self, self.dead_letter_queue, saga_name=saga_name,
            concern=f"{step_name}-{phase}-commands-dlq", topic=alarm_topic, description=(
                f"Saga {saga_name}: a {phase} command of callback step {step_name} was never "
                "answered and is in the command DLQ; the saga stopped waiting at its timeout "
                f"and compensated (or parked). Next: find out why the {step_name} worker failed "
                "(its log, the dashboard's Lambda errors); the saga id is in the message (SQS "
                f"console, Poll for messages); {inspect_command(self, saga_name)} shows how it "
                "ended. Then delete the message: its task is closed, a redrive would only be "
                "refused."))
