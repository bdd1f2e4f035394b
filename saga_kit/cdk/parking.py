"""Parking: a compensation that exhausts its retries is never lost.

The state machine puts one message on the saga's compensation queue with everything needed to
finish without the execution, records the saga as ``parked`` and ends in ``CompensationFailed``.
The redrive Lambda consumes that queue and finishes the pending compensations in strict reverse
order through the same handlers and idempotency keys. A message it cannot finish returns to the
queue; after ``max_receive_count`` deliveries SQS moves it to the dead-letter queue, from which an
operator redrives it ("Start DLQ redrive" in the SQS console, or ``saga dlq redrive``) once the
cause is fixed. Alarms fire on any message in the DLQ and on a compensation queue that is not
draining.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING

from aws_cdk import Aws, Duration, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from saga_kit.cdk.alarms import cli_target, dead_letter_alarm, saga_metric, threshold_alarm
from saga_kit.cdk.queues import durable_queue
from saga_kit.contract import (
    DEFAULT_PARKED_DEADLINE_SECONDS,
    MESSAGE_KIND,
    MESSAGE_VERSION,
    Env,
    Metric,
)

if TYPE_CHECKING:
    from saga_kit.cdk.declaration import SagaDefinition
    from saga_kit.cdk.functions import SagaKitRuntime
    from saga_kit.cdk.store import SagaStore


class CompensationParking(Construct):
    """Compensation queue, its DLQ, the redrive Lambda and the alarms of one saga.

    Args:
        definition: The saga whose failed compensations are parked here.
        kit: The stack's Saga Kit runtime (the redrive Lambda runs from its code).
        store: The saga store, where a parked saga is recorded.
        barrier_table: The saga's late-action barrier table.
        idempotency_table: The saga's Powertools idempotency table.
        compensation_functions: The compensation function of each step that has one.
        metrics_namespace: Namespace of the saga's EMF metrics.
        max_receive_count: Deliveries of a message before SQS moves it to the DLQ.
        oldest_message_alarm: Age of the oldest message in the compensation queue that raises
            the "not draining" alarm (default 15 minutes).
        parked_deadline: How long after parking the redrive Lambda still finishes a saga
            (default 90 days, as long as Step Functions keeps the execution's history to check
            it against). Past it a redrive is refused, alarmed, and the saga stays parked.
        alarm_topic: SNS topic notified by the alarms (optional).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        definition: SagaDefinition,
        kit: SagaKitRuntime,
        store: SagaStore,
        barrier_table: dynamodb.ITable,
        idempotency_table: dynamodb.ITable,
        compensation_functions: Mapping[str, lambda_.IFunction],
        metrics_namespace: str,
        max_receive_count: int = 3,
        oldest_message_alarm: Duration | None = None,
        parked_deadline: Duration | None = None,
        alarm_topic: sns.ITopic | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.definition = definition
        self.store = store
        self.parked_deadline = parked_deadline or Duration.seconds(DEFAULT_PARKED_DEADLINE_SECONDS)
        compensation_steps = [s for s in definition.steps if s.compensation]
        # The redrive runs a message's compensations synchronously, one after the other, and the
        # messages of a batch one after the other: its timeout must cover a whole batch, or a
        # timeout would send finishable neighbours back (and, three times over, to the DLQ).
        per_message = sum(s.timeout_seconds for s in compensation_steps)
        batch_size = max(1, min(5, (900 - 30) // max(per_message, 1)))
        redrive_timeout = min(900, 30 + batch_size * per_message)

        queue_name = f"{Stack.of(self).stack_name}-{definition.name}-compensations"[:80]
        queue_arn = f"arn:{Aws.PARTITION}:sqs:{Aws.REGION}:{Aws.ACCOUNT_ID}:{queue_name}"
        self.dead_letter_queue = durable_queue(
            self,
            "DeadLetterQueue",
            queue_name=f"{queue_name[:76]}-dlq",
            retention=Duration.days(14),
            # Only the compensation queue may use it as its DLQ (by ARN: a reference would be a
            # dependency cycle, the queue already points here).
            redrive_allow_policy=sqs.RedriveAllowPolicy(
                redrive_permission=sqs.RedrivePermission.BY_QUEUE,
                source_queues=[sqs.Queue.from_queue_arn(self, "SourceQueueRef", queue_arn)],
            ),
        )
        self.queue = durable_queue(
            self,
            "Queue",
            queue_name=queue_name,
            retention=Duration.days(14),
            visibility_timeout=Duration.seconds(6 * redrive_timeout),
            dead_letter_queue=sqs.DeadLetterQueue(
                max_receive_count=max_receive_count, queue=self.dead_letter_queue
            ),
        )

        self.redrive_function = kit.function(
            self,
            "RedriveFunction",
            handler="saga_kit.runtime.redrive.handler",
            timeout=Duration.seconds(redrive_timeout),
            environment={
                Env.SAGA_TYPE: definition.name,
                Env.STORE_TABLE: store.table.table_name,
                Env.BARRIER_TABLE: barrier_table.table_name,
                Env.IDEMPOTENCY_TABLE: idempotency_table.table_name,
                Env.PARKED_DEADLINE_SECONDS: str(int(self.parked_deadline.to_seconds())),
                Env.COMPENSATION_FUNCTIONS: Stack.of(self).to_json_string(
                    {name: fn.function_name for name, fn in compensation_functions.items()}
                ),
                # The one order each failed compensation's message must list, so a message
                # cannot reorder or skip compensations.
                Env.COMPENSATION_PLANS: json.dumps(
                    {s.name: definition.undo_plan(s.name) for s in compensation_steps}),
                Env.COMPENSATION_TIMEOUT: str(max(s.timeout_seconds
                                                     for s in compensation_steps)),
                "POWERTOOLS_SERVICE_NAME": definition.name,
                "POWERTOOLS_METRICS_NAMESPACE": metrics_namespace,
            },
            description=f"Saga {definition.name}: finishes parked compensations",
        )
        for function in compensation_functions.values():
            function.grant_invoke(self.redrive_function)
        store.grant_update(self.redrive_function)
        # Every delivery keeps the parked saga's barrier items and idempotency records alive.
        barrier_table.grant_read_write_data(self.redrive_function)
        idempotency_table.grant_read_write_data(self.redrive_function)
        self.redrive_function.add_event_source(
            event_sources.SqsEventSource(self.queue, batch_size=batch_size,
                                         report_batch_item_failures=True)
        )

        name = definition.name
        target = cli_target(self, name)
        self.dlq_alarm = dead_letter_alarm(
            self, self.dead_letter_queue, saga_name=name, concern="parked-compensation-in-dlq",
            topic=alarm_topic, description=(
                f"Saga {name}: a parked compensation failed every redrive attempt and is in the "
                "compensation DLQ; what its saga did is not undone yet. Next: saga dlq list "
                f"{target} (saga id, failed compensation, error); fix the cause (that "
                "compensation's log, its participant); then saga dlq redrive "
                f"{target} and check that saga dlq list comes back empty."))
        backlog = oldest_message_alarm or Duration.minutes(15)
        self.backlog_alarm = threshold_alarm(
            self, "BacklogAlarm", topic=alarm_topic,
            saga_name=name, concern="compensation-queue-not-draining", description=(
                f"Saga {name}: a parked compensation has waited over "
                f"{backlog.to_minutes():g} minutes in the compensation queue: the redrive "
                "Lambda is failing it or not consuming the queue. Next: read the redrive "
                "function's log (description 'finishes parked compensations') and the "
                f"dashboard's Lambda errors; after {max_receive_count} failed deliveries a "
                f"message moves to the DLQ (saga dlq list {target})."),
            metric=self.queue.metric_approximate_age_of_oldest_message(
                period=Duration.minutes(1), statistic="Maximum"),
            threshold=backlog.to_seconds(),
        )
        # SQS drops a message 14 days after it was enqueued, and a DLQ redrive enqueues it
        # anew: this age restarts at every redrive, so it says how long until SQS drops the
        # message, not how long the saga has been parked (the message's parked_at says that).
        self.dlq_age_alarm = threshold_alarm(
            self, "DeadLetterAgeAlarm", topic=alarm_topic,
            saga_name=name, concern="parked-compensation-expiring", description=(
                f"Saga {name}: a parked compensation has sat in the DLQ for 7 days since it was "
                "parked or last redriven; SQS drops it 7 days from now. Next: saga dlq list "
                f"{target} (how long each saga has been parked), fix the cause, then saga dlq "
                f"redrive {target}."),
            metric=self.dead_letter_queue.metric_approximate_age_of_oldest_message(
                period=Duration.minutes(5), statistic="Maximum"),
            threshold=Duration.days(7).to_seconds(),
        )
        deadline_days = f"{self.parked_deadline.to_days():g}"
        self.deadline_alarm = threshold_alarm(
            self, "ParkedPastDeadlineAlarm", topic=alarm_topic,
            saga_name=name, concern="parked-past-deadline", description=(
                f"Saga {name}: the redrive refused a saga parked more than {deadline_days} days "
                "ago. It stays parked and the kit undid nothing: finish it by hand. Next: saga "
                f"dlq list {target} (the message's pending compensations say what is still to "
                "undo), undo those effects in the participants, then delete the message from "
                "the DLQ in the SQS console."),
            metric=saga_metric(metrics_namespace, name, Metric.PARKED_PAST_DEADLINE),
            threshold=0,
        )

    def park(self) -> sfn.IChainable:
        """States that park ``$.compensation_failure`` (queue, then store) and fail the saga."""
        send = tasks.SqsSendMessage(
            self,
            "park_compensation",
            state_name="park_compensation",
            queue=self.queue,
            # The whole saga state, once: input, results, compensations, the original failure
            # and the compensation failure (which compensation, error, cause, what is pending).
            message_body=sfn.TaskInput.from_object({
                "kind": MESSAGE_KIND,
                "version": MESSAGE_VERSION,
                "saga_type": self.definition.name,
                "execution_arn": sfn.JsonPath.string_at("$$.Execution.Id"),
                "execution_name": sfn.JsonPath.string_at("$$.Execution.Name"),
                # Kept through every DLQ redrive (SQS gives a redriven message a new enqueue
                # time): the redrive Lambda's deadline counts from here.
                "parked_at": sfn.JsonPath.string_at("$$.State.EnteredTime"),
                "state": sfn.JsonPath.entire_payload,
            }),
            result_path=sfn.JsonPath.DISCARD,
        )
        send.add_retry(errors=["States.ALL"], max_attempts=5, interval=Duration.seconds(1),
                       backoff_rate=2, jitter_strategy=sfn.JitterType.FULL)
        # If even parking fails, end in a state of its own whose cause keeps the full context.
        send.add_catch(
            self._with_failure("ParkingFailed cause").next(sfn.Fail(
                self, "ParkingFailed", state_name="ParkingFailed", error="ParkingFailed",
                cause_path=sfn.JsonPath.json_to_string(
                    sfn.JsonPath.object_at("$.compensation_failure")))),
            errors=["States.ALL"], result_path="$.store_error",
        )
        terminal = self._with_failure("CompensationFailed cause").next(sfn.Fail(
            self, "CompensationFailed", state_name="CompensationFailed", error="CompensationFailed",
            cause_path=sfn.JsonPath.json_to_string(sfn.JsonPath.object_at("$.compensation_failure")),
        ))

        update = self.store.status_update(
            self, "record_parked", saga_name=self.definition.name, status="parked",
            sets={"parked_compensation": tasks.DynamoAttributeValue.from_string(
                sfn.JsonPath.string_at("$.compensation_failure.failed_compensation"))})
        # Finished meanwhile by the redrive (terminal status kept) or store unavailable: the
        # message is already parked, which is what matters.
        update.add_catch(terminal, errors=["States.ALL"], result_path="$.store_error")
        return send.next(update.next(terminal))

    def _with_failure(self, state_name: str) -> sfn.Pass:
        """The execution's cause: the compensation failure with the saga type and the original
        failure, which the parked message carries elsewhere in the state."""
        return sfn.Pass(
            self, state_name, state_name=state_name,
            parameters={
                "saga_type": self.definition.name,
                "failed_compensation": sfn.JsonPath.string_at(
                    "$.compensation_failure.failed_compensation"),
                "error": sfn.JsonPath.string_at("$.compensation_failure.error"),
                "cause": sfn.JsonPath.string_at("$.compensation_failure.cause"),
                "pending_compensations": sfn.JsonPath.list_at(
                    "$.compensation_failure.pending_compensations"),
                "attempts": sfn.JsonPath.number_at("$.compensation_failure.attempts"),
                "failure": sfn.JsonPath.object_at("$.failure"),
            },
            result_path="$.compensation_failure",
        )
