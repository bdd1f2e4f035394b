"""The ``Saga`` construct: one saga declaration in, a compensating Step Functions saga out.

For each step it creates the action's and the compensation's Lambda functions (from one shared
code asset, with the Powertools layer), and chains them into a Standard state machine:

* the happy path is the action tasks in order, then ``SagaSucceeded``: N task states and one
  terminal state, nothing else, because progress is recorded by the handlers themselves;
* every action before or at the pivot has a ``Retry`` for transient errors only and a ``Catch``
  that records which step failed under ``$.failure`` and enters the compensation chain at that
  very step (a timed-out or crashed action may have taken effect), which then walks back to the
  first step in strict reverse order and ends in ``SagaCompensated``;
* a compensation that exhausts its own retries records the failed compensation and those still
  pending under ``$.compensation_failure`` and ends in ``CompensationFailed``;
* steps after the pivot retry every error and, if even that is exhausted, end in
  ``ForwardRecoveryFailed`` without compensating anything.

It also owns the tables the handler runtime needs: the Powertools idempotency table, the
barrier table that refuses actions arriving after their compensation, and the saga store that
answers "what happened to saga X?" (kept current by the handlers, with each execution's ending
recorded from Step Functions' status events).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from aws_cdk import (
    Acknowledgment,
    CfnOutput,
    Duration,
    RemovalPolicy,
    Stack,
    Tags,
    Validations,
)
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from saga_kit.cdk.callbacks import CallbackQueue
from saga_kit.cdk.declaration import (
    SQS_SERVICE_ERRORS,
    ParallelGroup,
    RetryPolicy,
    SagaDeclarationError,
    SagaDefinition,
    Step,
    StepKind,
    WorkflowType,
    missing_handlers,
)
from saga_kit.cdk.functions import SagaKitRuntime
from saga_kit.cdk.nag import acknowledge
from saga_kit.cdk.operations import SagaOperations
from saga_kit.cdk.outcomes import SagaOutcomeMetrics
from saga_kit.cdk.parking import CompensationParking
from saga_kit.cdk.status_events import ExecutionStatusEvents
from saga_kit.cdk.store import SagaStore
from saga_kit.cdk.stuck import StuckSagaDetector
from saga_kit.cdk.tables import durable_table
from saga_kit.contract import (
    GROUP_COMPENSATION_FAILED_ERROR,
    GROUP_STEP_FAILED_ERROR,
    METRICS_NAMESPACE,
    SAGA_TAG,
    TASK_TOKEN_FIELD,
    Env,
    output_key,
    pascal_name,
    state_name,
)


class Saga(Construct):
    """Deploys one :class:`SagaDefinition` as a Step Functions saga with its Lambda handlers.

    Args:
        scope: Parent construct.
        construct_id: Construct id.
        definition: The validated saga declaration.
        code: Lambda code with every handler the declaration names, usually
            ``lambda_.Code.from_asset("lambdas")``. It needs only the team's own participants:
            the construct ships ``saga_kit.runtime`` to every function as a layer.
        environment: Extra environment variables for every handler (participant table names...).
        removal_policy: Removal policy of the saga's own tables. Defaults to ``RETAIN``: the
            idempotency records of a live saga must survive a stack mistake.
        max_receive_count: Deliveries of a parked compensation to the redrive Lambda before SQS
            moves it to the dead-letter queue.
        alarm_topic: SNS topic that receives every alarm of the saga (:attr:`alarms`, listed in
            ``docs/alarms.md``): parked compensations and dead-letter queues, failed
            compensations, unexpected endings, stuck sagas, callback commands waiting too long,
            Lambda errors and throttles (optional; without it the alarms only show in the
            console and on the saga's dashboard).
        parked_deadline: How long after parking a saga is still finished by the redrive
            Lambda (default 90 days); past it a redrive is refused and alarmed.
        metrics_namespace: CloudWatch namespace of the saga's EMF metrics (default
            ``SagaKit``). Sagas of one team usually share one; the ``SagaType`` dimension
            tells them apart.
        handlers_dir: The directory ``code`` was built from; when given, every handler the
            declaration names must exist there, or synthesis fails naming the step.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        definition: SagaDefinition,
        code: lambda_.Code,
        environment: Mapping[str, str] | None = None,
        removal_policy: RemovalPolicy = RemovalPolicy.RETAIN,
        max_receive_count: int = 3,
        alarm_topic: sns.ITopic | None = None,
        handlers_dir: Path | None = None,
        parked_deadline: Duration | None = None,
        metrics_namespace: str = METRICS_NAMESPACE,
    ) -> None:
        super().__init__(scope, construct_id)
        if handlers_dir is not None:
            problems = missing_handlers(definition, Path(handlers_dir))
            if problems:
                listing = "\n".join(f"  - {p}" for p in problems)
                raise SagaDeclarationError(f"saga '{definition.name}' is not valid:\n{listing}")
        #: The stack's Saga Kit runtime: layers, kit code, version stamp (shared by its sagas).
        self.kit = SagaKitRuntime.of(self)
        self.definition = definition
        if not metrics_namespace or len(metrics_namespace) > 255 or metrics_namespace.startswith(
                "AWS/"):
            raise SagaDeclarationError(
                f"saga '{definition.name}': metrics_namespace {metrics_namespace!r} cannot be "
                "used; give 1-255 characters not starting with 'AWS/' (reserved for AWS)")
        #: The CloudWatch namespace of the saga's EMF metrics.
        self.metrics_namespace = metrics_namespace
        # Lets operators (and the Prometheus exporter's tag selection) find the saga's resources.
        Tags.of(self).add(SAGA_TAG, definition.name)
        self.idempotency_table = durable_table(
            self, "IdempotencyTable", partition_key="id", ttl_attribute="expiration",
            removal_policy=removal_policy,
        )
        self.barrier_table = durable_table(
            self, "BarrierTable", partition_key="saga", sort_key="step",
            ttl_attribute="expires_at", removal_policy=removal_policy,
        )
        self._environment = {
            Env.SAGA_TYPE: definition.name,
            Env.IDEMPOTENCY_TABLE: self.idempotency_table.table_name,
            Env.BARRIER_TABLE: self.barrier_table.table_name,
            "POWERTOOLS_SERVICE_NAME": definition.name,
            "POWERTOOLS_METRICS_NAMESPACE": self.metrics_namespace,
            **(environment or {}),
        }
        self.store = SagaStore(self, "Store", removal_policy=removal_policy)
        self._environment[Env.STORE_TABLE] = self.store.table.table_name
        self.action_functions: dict[str, lambda_.Function] = {}
        self.compensation_functions: dict[str, lambda_.Function] = {}
        #: The command queue of each callback phase, by (step, phase).
        self.callback_queues: dict[tuple[str, str], CallbackQueue] = {}
        for step in definition.steps:
            self.action_functions[step.name] = self._function(step, "action", step.action, code)
            if step.compensation:
                self.compensation_functions[step.name] = self._function(
                    step, "compensation", step.compensation, code)
            for phase, functions in (("action", self.action_functions),
                                     ("compensation", self.compensation_functions)):
                if step.is_callback(phase) and step.callback is not None:
                    self.callback_queues[(step.name, phase)] = CallbackQueue(
                        self, f"{pascal_name(step.name)}{phase.capitalize()}Commands",
                        saga_name=definition.name, step_name=step.name, phase=phase,
                        worker=functions[step.name], callback=step.callback,
                        alarm_topic=alarm_topic)

        self.parking = CompensationParking(
            self, "Parking", definition=definition, kit=self.kit, store=self.store,
            barrier_table=self.barrier_table, idempotency_table=self.idempotency_table,
            compensation_functions=self.compensation_functions,
            metrics_namespace=self.metrics_namespace, max_receive_count=max_receive_count,
            parked_deadline=parked_deadline, alarm_topic=alarm_topic,
        )
        self._park: sfn.IChainable | None = None

        self.log_group = logs.LogGroup(
            self,
            "ExecutionLogs",
            retention=logs.RetentionDays.THREE_MONTHS,
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            definition_body=sfn.DefinitionBody.from_chainable(self._definition()),
            state_machine_type=(sfn.StateMachineType.EXPRESS
                                if definition.workflow is WorkflowType.EXPRESS
                                else sfn.StateMachineType.STANDARD),
            query_language=sfn.QueryLanguage.JSON_PATH,
            tracing_enabled=True,
            logs=sfn.LogOptions(
                destination=self.log_group, level=sfn.LogLevel.ALL, include_execution_data=True
            ),
            comment=definition.description or f"Saga {definition.name}",
        )
        for (step_name, phase) in self.callback_queues:
            functions = (self.action_functions if phase == "action"
                         else self.compensation_functions)
            # SendTaskSuccess / SendTaskFailure / SendTaskHeartbeat on this state machine only.
            self.state_machine.grant_task_response(functions[step_name])
        self.status_events = ExecutionStatusEvents(
            self, "StatusEvents", saga_name=definition.name, kit=self.kit, store=self.store,
            state_machine=self.state_machine, metrics_namespace=self.metrics_namespace,
            alarm_topic=alarm_topic)
        self.outcome_metrics = SagaOutcomeMetrics(
            self, "OutcomeMetrics", saga_name=definition.name, kit=self.kit, store=self.store,
            metrics_namespace=self.metrics_namespace, alarm_topic=alarm_topic)
        self.stuck_detector = StuckSagaDetector(
            self, "StuckDetector", saga_name=definition.name, kit=self.kit, store=self.store,
            state_machine=self.state_machine, thresholds=definition.stuck_thresholds(),
            metrics_namespace=self.metrics_namespace)
        #: Every alarm of the saga and its dashboard; created last, once all it watches exists.
        self.operations = SagaOperations(self, "Operations", saga=self, alarm_topic=alarm_topic)
        self._publish_outputs()
        self._acknowledge_nag_findings()

    def _acknowledge_nag_findings(self) -> None:
        """The cdk-nag findings this construct accepts on purpose, each with its reason."""
        stack = Stack.of(self)
        xray = (
            "AwsSolutions::AwsSolutions-IAM5[Resource::*]",
            "X-Ray PutTraceSegments/PutTelemetryRecords support no resource-level permissions.",
        )
        basic_role = (
            "AwsSolutions::AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/"
            "service-role/AWSLambdaBasicExecutionRole]",
            "AWSLambdaBasicExecutionRole is the AWS-maintained policy that only lets a function "
            "write its own CloudWatch Logs.",
        )
        for function in [*self.functions, self.parking.redrive_function,
                         self.status_events.function, self.outcome_metrics.function,
                         self.stuck_detector.function]:
            for rule, reason in (xray, basic_role):
                Validations.of(function).acknowledge(Acknowledgment(id=rule, reason=reason))

        def invoke_versions(caller: Construct, callees: list[lambda_.Function]) -> None:
            for callee in callees:
                logical_id = stack.resolve(stack.get_logical_id(callee.node.default_child))
                Validations.of(caller).acknowledge(Acknowledgment(
                    id=f"AwsSolutions::AwsSolutions-IAM5[Resource::<{logical_id}.Arn>:*]",
                    reason="'<function arn>:*' allows invoking versions and aliases of the "
                    "saga's own functions, nothing else.",
                ))

        state_machine_id = stack.resolve(stack.get_logical_id(
            self.state_machine.node.default_child))
        acknowledge(self.stuck_detector.function,
                    "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:states:<AWS::Region>:"
                    f"<AWS::AccountId>:execution:<{state_machine_id}.Name>:*]",
                    "The stuck detector reads the history of the saga's own executions, whose "
                    "names are the saga ids: one state machine, reading only.")
        invoke_versions(self.state_machine, self.functions)
        invoke_versions(self.parking.redrive_function,
                        list(self.compensation_functions.values()))
        Validations.of(self.state_machine).acknowledge(
            Acknowledgment(id=xray[0], reason=xray[1])
        )

    @property
    def alarms(self) -> list[cloudwatch.Alarm]:
        """Every alarm of the saga, each named ``<stack>-<saga>-<concern>``."""
        return self.operations.alarms

    @property
    def dashboard(self) -> cloudwatch.Dashboard:
        """The saga type's CloudWatch dashboard."""
        return self.operations.dashboard

    @property
    def functions(self) -> list[lambda_.Function]:
        """Every handler function of the saga, actions and compensations."""
        return [*self.action_functions.values(), *self.compensation_functions.values()]

    def grant(self, step_name: str, *grants: Callable[[iam.IGrantable], Any]) -> None:
        """Grants a participant resource to a step's action *and* compensation together.

        Pass the resource's grant methods; each is called with both functions::

            saga.grant("reserve_inventory", inventory.grant_read_write_data)
            saga.grant("charge_payment", payments.grant_read_write_data, keys.grant_decrypt)

        A compensation needs what its action needs: granting the action alone passes synth and
        deploy, then the compensation gets AccessDenied, is retried, and the saga is parked.
        """
        if not grants:
            raise SagaDeclarationError(
                f"saga '{self.definition.name}', step '{step_name}': grant() needs at least one "
                "grant method, e.g. saga.grant(step, table.grant_read_write_data)")
        for function in self.step_functions(step_name):
            for grant in grants:
                grant(function)

    def step_functions(self, step_name: str) -> list[lambda_.Function]:
        """The action and (if any) compensation functions of one step.

        To give a step access to a participant use :meth:`grant`, which covers both.
        """
        if step_name not in {s.name for s in self.definition.steps}:
            raise SagaDeclarationError(
                f"saga '{self.definition.name}' has no step '{step_name}'; its steps are: "
                f"{', '.join(s.name for s in self.definition.steps)}")
        found = [self.action_functions[step_name]]
        if step_name in self.compensation_functions:
            found.append(self.compensation_functions[step_name])
        return found

    @property
    def outputs(self) -> dict[str, str]:
        """What operators and the ``saga`` CLI need, by :data:`saga_kit.contract.OUTPUT_KEYS`
        name (tokens until deploy)."""
        parking = self.parking
        return {
            "StateMachineArn": self.state_machine.state_machine_arn,
            "StoreTableName": self.store.table.table_name,
            "IdempotencyTableName": self.idempotency_table.table_name,
            "BarrierTableName": self.barrier_table.table_name,
            "CompensationQueueUrl": parking.queue.queue_url,
            "CompensationQueueArn": parking.queue.queue_arn,
            "CompensationDeadLetterQueueUrl": parking.dead_letter_queue.queue_url,
            "CompensationDeadLetterQueueArn": parking.dead_letter_queue.queue_arn,
            "RedriveFunctionName": parking.redrive_function.function_name,
            "ExecutionLogGroupName": self.log_group.log_group_name,
        }

    def _publish_outputs(self) -> None:
        """One stack output per :data:`~saga_kit.contract.OUTPUT_KEYS` name, keyed
        ``<SagaName><Name>`` (:func:`saga_kit.contract.output_key`), so the CLI finds any saga
        of any stack by stack name and saga name."""
        stack = Stack.of(self)
        for name, value in self.outputs.items():
            key = output_key(self.definition.name, name)
            if stack.node.try_find_child(key) is not None:
                raise SagaDeclarationError(
                    f"saga '{self.definition.name}': stack {stack.stack_name} already has an "
                    f"output {key}; two sagas of one stack need different names")
            output = CfnOutput(stack, key, value=value,
                               description=f"Saga {self.definition.name}: {name}")
            output.override_logical_id(key)

    def add_environment(self, key: str, value: str) -> None:
        """Sets an environment variable on every handler function."""
        for function in self.functions:
            function.add_environment(key, value)

    def _function(self, step: Step, phase: str, handler: str, code: lambda_.Code
                  ) -> lambda_.Function:
        suffix = "Action" if phase == "action" else "Compensation"
        construct_id = f"{pascal_name(step.name)}{suffix}"
        function = self.kit.function(
            self,
            construct_id,
            handler=handler,
            code=code,
            timeout=Duration.seconds(step.effective_lambda_timeout),
            memory_size=step.memory_size,
            environment={
                **self._environment,
                Env.STEP: step.name,
                Env.PHASE: phase,
                # Without a compensation the action needs no late-action barrier.
                Env.HAS_COMPENSATION: "true" if step.compensation else "false",
                # The caps the synth-time state-size check counted on, enforced by the runtime.
                Env.MAX_RESULT_BYTES: str(step.max_result_bytes if phase == "action"
                                          else step.max_compensation_result_bytes),
                **({Env.MAX_INPUT_BYTES: str(self.definition.max_input_bytes)}
                   if phase == "action" else {}),
                **self._callback_environment(step, phase),
            },
            description=f"Saga {self.definition.name}: {phase} of step {step.name}",
        )
        self.idempotency_table.grant_read_write_data(function)
        self.barrier_table.grant_read_write_data(function)
        self.store.grant_update(function)
        return function

    @staticmethod
    def _callback_environment(step: Step, phase: str) -> dict[str, str]:
        """What a callback worker needs to pace its heartbeats and give up on a closed task."""
        if not step.is_callback(phase) or step.callback is None:
            return {}
        environment = {Env.TASK_TIMEOUT_SECONDS: str(step.timeout_seconds)}
        if step.callback.heartbeat_seconds is not None:
            environment[Env.CALLBACK_HEARTBEAT_SECONDS] = str(step.callback.heartbeat_seconds)
        return environment

    # -- state machine ---------------------------------------------------------------------

    def _task(self, step: Step, phase: str, state_name: str) -> sfn.TaskStateBase:
        """The task of one phase of a step: a Lambda invocation, or a callback command."""
        functions = self.action_functions if phase == "action" else self.compensation_functions
        result_key = "results" if phase == "action" else "compensations"
        event: dict[str, Any] = {
            "saga_type": self.definition.name,
            "step": step.name,
            "phase": phase,
            "execution_name": sfn.JsonPath.string_at("$$.Execution.Name"),
            "execution_arn": sfn.JsonPath.string_at("$$.Execution.Id"),
            "state": sfn.JsonPath.entire_payload,
        }
        timeout = sfn.Timeout.duration(Duration.seconds(step.timeout_seconds))
        if step.is_callback(phase) and step.callback is not None:
            heartbeat = step.callback.heartbeat_seconds
            return tasks.SqsSendMessage(
                self,
                state_name,
                state_name=state_name,
                queue=self.callback_queues[(step.name, phase)].queue,
                integration_pattern=sfn.IntegrationPattern.WAIT_FOR_TASK_TOKEN,
                message_body=sfn.TaskInput.from_object(
                    {**event, TASK_TOKEN_FIELD: sfn.JsonPath.task_token}),
                result_path=f"$.{result_key}.{step.name}",
                task_timeout=timeout,
                heartbeat_timeout=(sfn.Timeout.duration(Duration.seconds(heartbeat))
                                   if heartbeat is not None else None),
            )
        return tasks.LambdaInvoke(
            self,
            state_name,
            state_name=state_name,
            lambda_function=functions[step.name],
            payload=sfn.TaskInput.from_object(event),
            payload_response_only=True,
            retry_on_service_exceptions=False,
            result_path=f"$.{result_key}.{step.name}",
            task_timeout=timeout,
        )

    @staticmethod
    def _add_retry(task: sfn.TaskStateBase, policy: RetryPolicy) -> None:
        if policy.max_attempts == 0:
            return
        errors = policy.retried_errors
        if isinstance(task, tasks.SqsSendMessage) and errors != ["States.ALL"]:
            errors = [*errors, *SQS_SERVICE_ERRORS]
        task.add_retry(
            errors=errors,
            interval=Duration.seconds(policy.interval_seconds),
            max_attempts=policy.max_attempts,
            backoff_rate=policy.backoff_rate,
            max_delay=Duration.seconds(policy.max_delay_seconds),
            jitter_strategy=sfn.JitterType.FULL if policy.full_jitter else sfn.JitterType.NONE,
        )

    def _failed_saga(self, outcome: str) -> sfn.Fail:
        """A terminal Fail state whose error is ``<outcome>.<failed step>``."""
        return sfn.Fail(
            self,
            outcome,
            state_name=outcome,
            error_path=sfn.JsonPath.format(
                f"{outcome}.{{}}", sfn.JsonPath.string_at("$.failure.step")),
            cause_path=sfn.JsonPath.json_to_string(sfn.JsonPath.object_at("$.failure")),
        )

    def _definition(self) -> sfn.IChainable:
        stages = self.definition.stages
        # The error names the outcome and the step that failed ("SagaCompensated.charge_payment");
        # the cause carries the original error and cause.
        compensated = self._ending(self._failed_saga("SagaCompensated"), "compensated")
        forward_failed = self._ending(self._failed_saga("ForwardRecoveryFailed"), "failed")

        # Compensation chain, built from the first stage forward so each compensation knows
        # where to go next: the previous stage's compensation, or SagaCompensated. A group
        # compensates all its steps at once, in a Parallel state of its own.
        compensation_entry: dict[str, sfn.IChainable] = {}
        next_undo: sfn.IChainable = compensated
        for stage in stages:
            if isinstance(stage, ParallelGroup):
                undo_group = self._group_compensation(stage)
                undo_group.next(next_undo)
                next_undo = undo_group
                for step in stage.steps:
                    compensation_entry[step.name] = next_undo
                continue
            if stage.compensation:
                task = self._compensation_task(stage)
                task.add_catch(self._compensation_failed(stage).next(self._parking()),
                               errors=["States.ALL"], result_path="$.compensation_failure")
                task.next(next_undo)
                next_undo = task
            compensation_entry[stage.name] = next_undo

        chain: sfn.Chain | None = None
        for stage in stages:
            if isinstance(stage, ParallelGroup):
                state: sfn.TaskStateBase | sfn.Parallel = self._group(
                    stage, compensation_entry[stage.steps[0].name])
            else:
                state = self._action_task(stage)
                record = self._failure_record(stage)
                state.add_catch(record, errors=["States.ALL"], result_path="$.failure")
                record.next(forward_failed if stage.kind is StepKind.RETRIABLE
                            else compensation_entry[stage.name])
            chain = sfn.Chain.start(state) if chain is None else chain.next(state)
        assert chain is not None  # the declaration guarantees at least one step
        return chain.next(self._ending(
            sfn.Succeed(self, "SagaSucceeded", state_name="SagaSucceeded"), "completed"))

    def _ending(self, terminal: sfn.State, status: str) -> sfn.IChainable:
        """The terminal state, preceded for an Express saga by the store write of its ending.

        Step Functions sends "Execution Status Change" events to EventBridge for Standard
        workflows only, so an Express saga records what the state machine decided itself, on
        the way out. A failed write (the store unavailable) still ends the saga as decided.
        """
        if self.definition.workflow is not WorkflowType.EXPRESS:
            return terminal
        record = self.store.status_update(
            self, f"record_{status}", saga_name=self.definition.name, status=status,
            sets={"execution_status": tasks.DynamoAttributeValue.from_string(
                "SUCCEEDED" if status == "completed" else "FAILED")})
        record.add_retry(errors=["States.ALL"], max_attempts=3, interval=Duration.seconds(1),
                         backoff_rate=2, jitter_strategy=sfn.JitterType.FULL)
        record.add_catch(terminal, errors=["States.ALL"], result_path="$.store_error")
        return record.next(terminal)

    def _action_task(self, step: Step) -> sfn.TaskStateBase:
        task = self._task(step, "action", state_name(step.name, "action"))
        self._add_retry(task, step.effective_retry)
        return task

    def _compensation_task(self, step: Step) -> sfn.TaskStateBase:
        task = self._task(step, "compensation", state_name(step.name, "compensation"))
        self._add_retry(task, step.compensation_retry)
        return task

    def _failure_record(self, step: Step) -> sfn.Pass:
        """Records which step failed, with the caught error, under ``$.failure``."""
        return sfn.Pass(
            self,
            f"{step.name} failed",
            state_name=f"{step.name}_failed",
            parameters={
                "step": step.name,
                "error": sfn.JsonPath.string_at("$.failure.Error"),
                "cause": sfn.JsonPath.string_at("$.failure.Cause"),
            },
            result_path="$.failure",
        )

    def _group(self, group: ParallelGroup, compensate: sfn.IChainable) -> sfn.Parallel:
        """The group's Parallel state: each branch its steps in order; a failing step ends its
        branch with :data:`~saga_kit.contract.GROUP_STEP_FAILED_ERROR` (the failure record as
        cause), which stops the siblings and enters the group's compensation."""
        parallel = sfn.Parallel(
            self, group.name, state_name=group.name,
            # Each branch returns the whole state; keep every result under $.results, flat, so
            # later steps read a group step's result like any other.
            result_selector=self._group_results(group),
            result_path="$.results",
        )
        for chain in group.chains:
            branch: sfn.Chain | None = None
            for step in chain:
                task = self._action_task(step)
                abandon = sfn.Fail(
                    self, f"{step.name} abandoned", state_name=f"{step.name}_abandoned",
                    error=GROUP_STEP_FAILED_ERROR,
                    cause_path=sfn.JsonPath.json_to_string(sfn.JsonPath.object_at("$.failure")))
                task.add_catch(self._failure_record(step).next(abandon), errors=["States.ALL"],
                               result_path="$.failure")
                branch = sfn.Chain.start(task) if branch is None else branch.next(task)
            assert branch is not None
            parallel.branch(branch)
        # A branch's own failure record, back from JSON; anything else fails the group as such.
        unpacked = self._unpack(f"{group.name}_failed", f"{group.name}_failure", "$.failure",
                                ["step", "error", "cause"])
        parallel.add_catch(unpacked, errors=[GROUP_STEP_FAILED_ERROR], result_path="$.failure")
        unpacked.next(compensate)
        other = sfn.Pass(
            self, f"{group.name} error", state_name=f"{group.name}_error",
            parameters={"step": group.name,
                        "error": sfn.JsonPath.string_at("$.failure.Error"),
                        "cause": sfn.JsonPath.string_at("$.failure.Cause")},
            result_path="$.failure")
        parallel.add_catch(other, errors=["States.ALL"], result_path="$.failure")
        other.next(compensate)
        return parallel

    def _group_results(self, group: ParallelGroup) -> dict[str, str]:
        """The group's ResultSelector: every result so far, from the branch that holds it."""
        selector: dict[str, str] = {}
        for step in self.definition.steps[: self.definition.steps.index(group.steps[0])]:
            selector[step.name] = sfn.JsonPath.string_at(f"$[0].results.{step.name}")
        for index, chain in enumerate(group.chains):
            for step in chain:
                selector[step.name] = sfn.JsonPath.string_at(f"$[{index}].results.{step.name}")
        return selector

    def _unpack(self, parse_name: str, lift_name: str, path: str,
                fields: list[str]) -> sfn.Chain:
        """Two Pass states that turn a caught ``{Error, Cause}`` whose cause is a JSON record
        back into that record at ``path`` (Pass parameters must be an object, so the parsed
        record lands one level down first)."""
        parse = sfn.Pass(
            self, parse_name.replace("_", " "), state_name=parse_name,
            parameters={"record": sfn.JsonPath.string_to_json(
                sfn.JsonPath.string_at(f"{path}.Cause"))},
            result_path=path)
        lifted: dict[str, Any] = {}
        for name in fields:
            source = f"{path}.record.{name}"
            if name == "pending_compensations":
                lifted[name] = sfn.JsonPath.list_at(source)
            elif name == "attempts":
                lifted[name] = sfn.JsonPath.number_at(source)
            else:
                lifted[name] = sfn.JsonPath.string_at(source)
        lift = sfn.Pass(self, lift_name.replace("_", " "), state_name=lift_name,
                        parameters=lifted, result_path=path)
        return sfn.Chain.start(parse).next(lift)

    def _group_compensation(self, group: ParallelGroup) -> sfn.Parallel:
        """Compensates every step of a group, its branches in parallel, each branch nearest step
        first. A compensation that gives up ends its branch with the failure record as cause,
        which stops the siblings and parks the saga with every group compensation still listed
        (the redrive skips the ones already done: their stored result answers)."""
        parallel = sfn.Parallel(
            self, f"compensate {group.name}", state_name=f"compensate_{group.name}",
            result_path=sfn.JsonPath.DISCARD)
        for chain in group.chains:
            branch: sfn.Chain | None = None
            for step in reversed(chain):
                task = self._compensation_task(step)
                give_up = sfn.Fail(
                    self, f"compensate {step.name} abandoned",
                    state_name=f"compensate_{step.name}_abandoned",
                    error=GROUP_COMPENSATION_FAILED_ERROR,
                    cause_path=sfn.JsonPath.json_to_string(
                        sfn.JsonPath.object_at("$.compensation_failure")))
                task.add_catch(self._compensation_failed(step).next(give_up),
                               errors=["States.ALL"], result_path="$.compensation_failure")
                branch = sfn.Chain.start(task) if branch is None else branch.next(task)
            assert branch is not None
            parallel.branch(branch)
        unpacked = self._unpack(
            f"compensate_{group.name}_failed", f"compensate_{group.name}_failure",
            "$.compensation_failure",
            ["failed_compensation", "error", "cause", "pending_compensations", "attempts"])
        parallel.add_catch(unpacked, errors=[GROUP_COMPENSATION_FAILED_ERROR],
                           result_path="$.compensation_failure")
        unpacked.next(self._parking())
        # Any other failure of the Parallel state itself: park with the group's whole plan.
        first = self.definition.undo_plan(group.steps[-1].name)
        other = sfn.Pass(
            self, f"compensate {group.name} error", state_name=f"compensate_{group.name}_error",
            parameters={
                "failed_compensation": first[0],
                "error": sfn.JsonPath.string_at("$.compensation_failure.Error"),
                "cause": sfn.JsonPath.string_at("$.compensation_failure.Cause"),
                "pending_compensations": first[1:],
                "attempts": 0,
            },
            result_path="$.compensation_failure")
        parallel.add_catch(other, errors=["States.ALL"], result_path="$.compensation_failure")
        other.next(self._parking())
        return parallel

    def _parking(self) -> sfn.IChainable:
        if self._park is None:
            self._park = self.parking.park()
        return self._park

    def _compensation_failed(self, step: Step) -> sfn.Pass:
        """Records which compensation failed and what is still to undo, in the one order the
        redrive accepts (:meth:`SagaDefinition.undo_plan`).

        The record replaces the caught error (``{Error, Cause}``) under the same key, so the
        state, and the parked message made of it, carries each piece of context once.
        """
        return sfn.Pass(
            self,
            f"compensate {step.name} failed",
            state_name=f"compensate_{step.name}_failed",
            parameters={
                "failed_compensation": step.name,
                "error": sfn.JsonPath.string_at("$.compensation_failure.Error"),
                "cause": sfn.JsonPath.string_at("$.compensation_failure.Cause"),
                "pending_compensations": self.definition.undo_plan(step.name)[1:],
                "attempts": step.compensation_retry.max_attempts + 1,
            },
            result_path="$.compensation_failure",
        )
