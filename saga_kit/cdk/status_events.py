"""Execution status events: how each saga execution ended, recorded in the saga store.

An EventBridge rule on the saga's "Step Functions Execution Status Change" events invokes a
small Lambda (``saga_kit.runtime.status_events``) that writes the ending to the store: the terminal
statuses (completed, compensated, failed) come from there only, because only Step Functions
knows whether it accepted a task's result. A second rule brings an execution redriven in Step
Functions back out of ``failed``. Every ending that is not one of the saga's own (completed,
``SagaCompensated.*``, ``CompensationFailed`` after parking) counts in ``SagaFailedUnexpectedly``,
with an alarm. An event that still fails after EventBridge's retries lands in a dead-letter
queue, with an alarm, so a store that disagrees with Step Functions is always noticed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aws_cdk import Acknowledgment, Duration, Validations
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from saga_kit.cdk.alarms import (
    cli_target,
    dead_letter_alarm,
    inspect_command,
    saga_metric,
    threshold_alarm,
)
from saga_kit.cdk.queues import durable_queue
from saga_kit.contract import STATUS_CHANGE_DETAIL_TYPE, Env, Metric

if TYPE_CHECKING:
    from saga_kit.cdk.functions import SagaKitRuntime
    from saga_kit.cdk.store import SagaStore

#: The execution statuses recorded (RUNNING is written by the API and the handlers).
ENDED_STATUSES = ["SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"]


class ExecutionStatusEvents(Construct):
    """The rule, Lambda, dead-letter queue and alarm that record execution endings.

    Args:
        saga_name: The saga's declared name.
        kit: The stack's Saga Kit runtime (the function runs from its code).
        store: The saga store the endings are recorded in.
        state_machine: The saga's state machine, whose status events are recorded.
        metrics_namespace: Namespace of the saga's EMF metrics.
        alarm_topic: SNS topic notified by both alarms: an unexpected ending, an event in the
            dead-letter queue (optional).
    """

    def __init__(self, scope: Construct, construct_id: str, *, saga_name: str,
                 kit: SagaKitRuntime, store: SagaStore, state_machine: sfn.IStateMachine,
                 metrics_namespace: str, alarm_topic: sns.ITopic | None = None) -> None:
        super().__init__(scope, construct_id)
        name = saga_name
        self.function = kit.function(
            self,
            "Function",
            handler="saga_kit.runtime.status_events.handler",
            timeout=Duration.seconds(30),
            environment={
                Env.SAGA_TYPE: name,
                Env.STORE_TABLE: store.table.table_name,
                "POWERTOOLS_SERVICE_NAME": name,
                "POWERTOOLS_METRICS_NAMESPACE": metrics_namespace,
            },
            description=f"Saga {name}: records how each execution ended in the saga store",
        )
        store.grant_update(self.function)
        # A redriven execution's saga is reopened from what its item says (store.reopen).
        store.grant_get(self.function)
        self.dead_letter_queue = durable_queue(
            self,
            "DeadLetterQueue",
            retention=Duration.days(14),
        )
        Validations.of(self.dead_letter_queue).acknowledge(Acknowledgment(
            id="AwsSolutions::AwsSolutions-SQS3",
            reason="This queue is itself the dead-letter queue of the status-event rule's target.",
        ))
        machine = state_machine.state_machine_arn
        self.rule = self._rule("Rule", f"Saga {name}: execution endings to the saga store",
                               {"stateMachineArn": [machine], "status": ENDED_STATUSES})
        # RedriveExecution resumes a failed execution: its RUNNING event carries redriveCount.
        self.redrive_rule = self._rule(
            "RedriveRule", f"Saga {name}: executions redriven in Step Functions to the saga store",
            {"stateMachineArn": [machine], "status": ["RUNNING"],
             "redriveCount": [{"numeric": [">", 0]}]})
        target = cli_target(self, name)
        self.unexpected_ending_alarm = threshold_alarm(
            self, "UnexpectedEndingAlarm", topic=alarm_topic, saga_name=name,
            concern="unexpected-endings", description=(
                f"Saga {name}: an execution ended in a way the saga does not expect "
                "(ForwardRecoveryFailed, ParkingFailed, States.Runtime, TIMED_OUT, ABORTED...): "
                "its participants may hold effects nobody will undo. Next: find the saga ids "
                f"with aws logs tail {self.function.log_group.log_group_name} --since 1h "
                "--filter-pattern '\"saga ended unexpectedly\"'; then "
                f"{inspect_command(self, name)} (its timeline, the ending, what to do) and "
                "finish or undo its steps by hand."),
            metric=saga_metric(metrics_namespace, name, Metric.SAGA_FAILED_UNEXPECTEDLY,
                               period=Duration.minutes(1)),
            threshold=0,
        )
        self.alarm = dead_letter_alarm(
            self, self.dead_letter_queue, saga_name=name, concern="status-events-dlq",
            topic=alarm_topic, description=(
                f"Saga {name}: an execution ending could not be recorded in the saga store "
                "after EventBridge's retries; the event is in the status-event DLQ and the store "
                "disagrees with Step Functions for that saga. Next: read the event's detail (the "
                "execution) in the SQS console (Send and receive messages, Poll for messages) "
                f"and the status-event function's log for the error; saga stuck {target} "
                "lists the sagas the store still shows as unfinished."))

    def _rule(self, construct_id: str, description: str, detail: dict[str, object]) -> events.Rule:
        """A rule on the saga's execution status events that invokes the status-event Lambda,
        retried 8 times over a day, then parked in the dead-letter queue."""
        return events.Rule(
            self, construct_id, description=description,
            event_pattern=events.EventPattern(
                source=["aws.states"], detail_type=[STATUS_CHANGE_DETAIL_TYPE],
                detail=detail),
            targets=[targets.LambdaFunction(self.function, dead_letter_queue=self.dead_letter_queue,
                                            retry_attempts=8, max_event_age=Duration.hours(24))],
        )
