"""Stuck-saga detection: a scheduled Lambda that finds sagas nothing is working on.

Every five minutes ``saga_kit.runtime.stuck`` queries the saga store's status index for sagas
running or compensating with no progress for longer than the saga's ``stuck_after_seconds``
(or a callback step waiting for its reply longer than its own threshold), emits ``SagasStuck``
and logs each one (id, status, current step, since when, execution ARN), so the alarm on
``SagasStuck`` leads straight to them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aws_cdk import ArnFormat, Duration, Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from saga_kit.contract import Env, StuckThresholds

if TYPE_CHECKING:
    from saga_kit.cdk.functions import SagaKitRuntime
    from saga_kit.cdk.store import SagaStore

#: How often the detector runs.
DETECTION_INTERVAL = Duration.minutes(5)


class StuckSagaDetector(Construct):
    """The scheduled detector of one saga type.

    Args:
        saga_name: The saga's declared name.
        kit: The stack's Saga Kit runtime.
        store: The saga store it queries.
        state_machine: The saga's state machine (the detector reads where a stuck execution is).
        thresholds: The declaration's :meth:`SagaDefinition.stuck_thresholds`.
        metrics_namespace: Namespace of ``SagasStuck``.
    """

    def __init__(self, scope: Construct, construct_id: str, *, saga_name: str,
                 kit: SagaKitRuntime, store: SagaStore, state_machine: sfn.StateMachine,
                 thresholds: StuckThresholds, metrics_namespace: str) -> None:
        super().__init__(scope, construct_id)
        self.thresholds = thresholds
        self.function = kit.function(
            self, "Function",
            handler="saga_kit.runtime.stuck.handler",
            timeout=Duration.seconds(120),
            environment={
                Env.SAGA_TYPE: saga_name,
                Env.STORE_TABLE: store.table.table_name,
                Env.STUCK_THRESHOLDS: thresholds.to_json(),
                "POWERTOOLS_SERVICE_NAME": saga_name,
                "POWERTOOLS_METRICS_NAMESPACE": metrics_namespace,
            },
            description=f"Saga {saga_name}: reports sagas stuck past their threshold",
        )
        store.grant_read(self.function)
        # Where a stuck execution is: its latest history events (reading only).
        executions = Stack.of(self).format_arn(
            service="states", resource="execution", arn_format=ArnFormat.COLON_RESOURCE_NAME,
            resource_name=f"{state_machine.state_machine_name}:*")
        self.function.add_to_role_policy(iam.PolicyStatement(
            actions=["states:GetExecutionHistory", "states:DescribeExecution"],
            resources=[executions]))
        self.schedule = events.Rule(
            self, "Schedule", schedule=events.Schedule.rate(DETECTION_INTERVAL),
            description=f"Saga {saga_name}: look for stuck sagas",
            targets=[targets.LambdaFunction(self.function, retry_attempts=0)])
