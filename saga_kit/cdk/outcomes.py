"""Saga outcome metrics: each status change of the saga store, counted once.

A saga's outcome is decided in several places (the status-event Lambda for a Standard saga's
ending, the state machine itself for an Express saga's, the parking state, the redrive Lambda),
but every one of them lands in the saga store by a conditional write that moves the status
forward only. The store's stream holds one record per change, so a small Lambda on that stream
(``saga_kit.runtime.outcomes``) counts SagaStarted, SagaCompleted, SagaCompensated, SagaParked,
SagaFailedUnexpectedly and SagaDuration exactly once per change, whoever wrote it and however
often a writer was retried. A batch that keeps failing goes to a dead-letter queue, with an
alarm, so a gap in the metrics is never silent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aws_cdk import Duration
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_sns as sns
from constructs import Construct

from saga_kit.cdk.alarms import dead_letter_alarm
from saga_kit.cdk.nag import acknowledge
from saga_kit.cdk.queues import durable_queue
from saga_kit.contract import Env

if TYPE_CHECKING:
    from saga_kit.cdk.functions import SagaKitRuntime
    from saga_kit.cdk.store import SagaStore


class SagaOutcomeMetrics(Construct):
    """The store-stream Lambda that counts saga outcomes, its dead-letter queue and alarm.

    Args:
        saga_name: The saga's declared name (the ``SagaType`` dimension).
        kit: The stack's Saga Kit runtime (the function runs from its code).
        store: The saga store whose stream is counted.
        metrics_namespace: Namespace of the saga's EMF metrics.
        alarm_topic: SNS topic notified when a batch lands in the dead-letter queue (optional).
    """

    def __init__(self, scope: Construct, construct_id: str, *, saga_name: str,
                 kit: SagaKitRuntime, store: SagaStore, metrics_namespace: str,
                 alarm_topic: sns.ITopic | None = None) -> None:
        super().__init__(scope, construct_id)
        self.function = kit.function(
            self, "Function",
            handler="saga_kit.runtime.outcomes.handler",
            timeout=Duration.seconds(30),
            environment={
                Env.SAGA_TYPE: saga_name,
                "POWERTOOLS_SERVICE_NAME": saga_name,
                "POWERTOOLS_METRICS_NAMESPACE": metrics_namespace,
            },
            description=f"Saga {saga_name}: counts saga outcomes from the saga store's stream",
        )
        self.dead_letter_queue = durable_queue(self, "DeadLetterQueue", retention=Duration.days(14))
        acknowledge(self.dead_letter_queue, "AwsSolutions-SQS3",
                    "This queue is itself the on-failure destination of the outcome metrics' "
                    "stream mapping.")
        self.function.add_event_source(event_sources.DynamoEventSource(
            store.table,
            starting_position=lambda_.StartingPosition.TRIM_HORIZON,
            batch_size=100,
            bisect_batch_on_error=True,
            retry_attempts=10,
            report_batch_item_failures=True,
            on_failure=event_sources.SqsDlq(self.dead_letter_queue),
        ))
        self.dead_letter_alarm = dead_letter_alarm(
            self, self.dead_letter_queue, saga_name=saga_name, concern="outcome-metrics-dlq",
            topic=alarm_topic, description=(
                f"Saga {saga_name}: saga store changes could not be counted in the outcome "
                "metrics (SagaStarted, SagaCompleted, ...): the dashboard undercounts, and the "
                "executions-failed alarm may take compensated sagas for unexpected endings. The "
                "sagas themselves are unaffected. Next: "
                "read the outcome function's log (description 'counts saga outcomes') for the "
                "error, fix and redeploy; the DLQ messages only name the stream positions "
                "that were skipped: delete them once read."))
