"""Operations: the alarms and the CloudWatch dashboard of one saga type.

The ``Saga`` construct creates :class:`SagaOperations` last, once every resource it watches
exists. The parts of a saga that own a queue alarm their queue themselves (parking,
status events, callback queues, outcome metrics); this construct adds the alarms on what the
saga does as a whole, and on its functions, and collects every alarm of the saga in
:attr:`SagaOperations.alarms`. Named ``<stack>-<saga>-...``:

* ``sagas-parked``: a compensation gave up after its retries (``SagaParked``);
* ``<step>-compensation-failed``: an attempt of that step's compensation failed;
* ``executions-failed-unexpectedly``: Step Functions counted more failed executions than the
  saga compensated or parked;
* ``executions-timed-out``, ``executions-aborted``: an execution hit the state machine's
  timeout, or was stopped;
* ``stuck-sagas``: the stuck detector found sagas past their threshold;
* ``<step>-<phase>-commands-waiting``: a callback command waited unanswered past its threshold;
* ``lambda-errors[-n]``: a kit function or a callback worker raised;
* ``step-error-rate[-n]``: a step handler failed at least half its calls for 15 minutes;
* ``lambda-throttles[-n]``: any function of the saga was throttled.

Every alarm has an explicit name (see :func:`saga_kit.cdk.alarms.alarm_name`) and a description
that ends in the command to run next; ``docs/alarms.md`` lists them all.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, TypeVar

from aws_cdk import Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from constructs import Construct

from saga_kit.cdk.alarms import (
    METRIC_PERIOD,
    cli_target,
    duration_text,
    inspect_command,
    saga_metric,
    threshold_alarm,
)
from saga_kit.cdk.stuck import DETECTION_INTERVAL
from saga_kit.contract import Metric, pascal_name, state_name

if TYPE_CHECKING:
    from saga_kit.cdk.construct import Saga
    from saga_kit.cdk.declaration import Step

T = TypeVar("T")

#: The period of the saga-level alarms and of the dashboard's graphs: the stuck detector's
#: interval, and long enough that a saga's few events a minute make a readable count.
PERIOD = METRIC_PERIOD
#: CloudWatch evaluates at most 10 metrics in one metric-math alarm (a hard limit).
MAX_ALARM_METRICS = 10
#: Step handlers whose error rate one alarm watches: two metrics (errors, invocations) each.
RATE_FUNCTIONS_PER_ALARM = MAX_ALARM_METRICS // 2
#: Share of a step handler's calls (percent) that must fail, period after period, before its
#: error rate alarms.
STEP_ERROR_RATE_PERCENT = 50
#: Consecutive periods that share must hold: a run of business declines is over sooner.
STEP_ERROR_RATE_PERIODS = 3


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """``items`` in as few consecutive slices of at most ``size`` as possible, of even length
    (11 functions make alarms of 6 and 5, not 10 and a lonely 1)."""
    count = -(-len(items) // size)
    start = 0
    for index in range(count):
        length = len(items) // count + (1 if index < len(items) % count else 0)
        yield items[start:start + length]
        start += length


class SagaOperations(Construct):
    """Every alarm of one saga and its dashboard.

    Args:
        saga: The saga, with all its resources created.
        alarm_topic: SNS topic notified by the alarms created here (optional). The saga gives
            the same topic to the constructs that own the other alarms, so the topic receives
            every alarm of :attr:`alarms`.

    Attributes:
        alarms: Every alarm of the saga, those of its queues included, in creation order.
        dashboard: The saga type's CloudWatch dashboard, named ``<stack>-<saga>-<region>``.
    """

    def __init__(self, scope: Construct, construct_id: str, *, saga: Saga,
                 alarm_topic: sns.ITopic | None = None) -> None:
        super().__init__(scope, construct_id)
        self.saga = saga
        self.topic = alarm_topic
        definition = saga.definition
        self.saga_name = definition.name
        self.namespace = saga.metrics_namespace
        self.stack_name = Stack.of(self).stack_name
        self.target = cli_target(self, self.saga_name)
        self.inspect = inspect_command(self, self.saga_name)
        #: The functions of the saga, each with the label alarms and graphs show for it.
        self.step_function_labels: list[tuple[lambda_.Function, str]] = [
            *((saga.action_functions[s.name], f"{s.name} action") for s in definition.steps),
            *((saga.compensation_functions[s.name], f"{s.name} compensation")
              for s in definition.steps if s.name in saga.compensation_functions),
        ]
        self.kit_function_labels: list[tuple[lambda_.Function, str]] = [
            (saga.parking.redrive_function, "redrive"),
            (saga.status_events.function, "status events"),
            (saga.outcome_metrics.function, "outcome metrics"),
            (saga.stuck_detector.function, "stuck detector"),
        ]
        workers = {(saga.action_functions if phase == "action"
                    else saga.compensation_functions)[step].node.path
                   for step, phase in saga.callback_queues}
        #: Step handlers Step Functions invokes directly: a business error is a Lambda error.
        self.synchronous_handlers = [(f, label) for f, label in self.step_function_labels
                                     if f.node.path not in workers]
        #: Functions that raise only when something is broken: the kit's own, and callback
        #: workers (their step's failure is the reply they send, not an error they raise).
        self.raising_only_when_broken = [
            *self.kit_function_labels,
            *((f, label) for f, label in self.step_function_labels if f.node.path in workers)]

        self.sagas_parked_alarm = self._sagas_parked_alarm()
        self.compensation_failed_alarms = {
            step.name: self._compensation_failed_alarm(step)
            for step in definition.steps if step.compensation}
        self.unexplained_failures = self._unexplained_failures()
        self.executions_failed_alarm = self._executions_failed_alarm()
        self.executions_timed_out_alarm, self.executions_aborted_alarm = (
            self._execution_ending_alarms())
        self.stuck_alarm = self._stuck_alarm()
        self.callback_wait_alarms = {
            key: self._callback_wait_alarm(*key) for key in saga.callback_queues}
        self.lambda_error_alarms = self._lambda_error_alarms()
        self.step_error_rate_alarms = self._step_error_rate_alarms()
        self.throttle_alarms = self._throttle_alarms()

        # Every alarm below the saga, whichever part of it owns the alarm: a part that gains an
        # alarm later is on the list (and, given the same topic, notifies) without a change here.
        self.alarms: list[cloudwatch.Alarm] = [
            c for c in saga.node.find_all() if isinstance(c, cloudwatch.Alarm)]
        self.dashboard = self._dashboard()

    # -- metrics ------------------------------------------------------------------------------

    def saga_metric(self, name: str, *, statistic: str = "Sum", step: str | None = None,
                    label: str | None = None, period: Duration = PERIOD) -> cloudwatch.Metric:
        """One of the kit's metrics of this saga (:class:`~saga_kit.contract.Metric`), in the
        saga's namespace, for the whole saga or for one ``step``."""
        return saga_metric(self.namespace, self.saga_name, name, step=step, statistic=statistic,
                           period=period, label=label)

    def _alarm(self, construct_id: str, concern: str, description: str,
               metric: cloudwatch.IMetric, threshold: float, *, evaluation_periods: int = 1,
               datapoints_to_alarm: int | None = None,
               comparison_operator: cloudwatch.ComparisonOperator = (
                   cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD),
               ) -> cloudwatch.Alarm:
        """An alarm named ``<stack>-<saga>-<concern>`` that notifies the saga's topic."""
        return threshold_alarm(
            self, construct_id, saga_name=self.saga_name, concern=concern,
            description=description, metric=metric, threshold=threshold, topic=self.topic,
            evaluation_periods=evaluation_periods, datapoints_to_alarm=datapoints_to_alarm,
            comparison_operator=comparison_operator)

    # -- what the sagas do --------------------------------------------------------------------

    def _sagas_parked_alarm(self) -> cloudwatch.Alarm:
        name = self.saga_name
        return self._alarm(
            "SagasParkedAlarm", "sagas-parked", (
                f"Saga {name}: a compensation gave up after its retries and the saga was parked "
                "on the compensation queue; the redrive Lambda retries it there, and moves it to "
                "the DLQ if it cannot finish (alarm parked-compensation-in-dlq). Next: saga "
                f"stuck {self.target} --status parked --older-than 0s lists the parked sagas "
                "and the compensation-failed alarm names the step; read that compensation's "
                "log and fix its participant."),
            self.saga_metric(Metric.SAGA_PARKED), 0)

    def _compensation_failed_alarm(self, step: Step) -> cloudwatch.Alarm:
        """One alarm per compensated step, not one sum: the notification then names the
        compensation that fails, which is the handler and the participant to look at; a saga
        has a handful of compensations, so a handful of alarms."""
        name = self.saga_name
        attempts = step.compensation_retry.max_attempts + 1
        return self._alarm(
            f"{pascal_name(step.name)}CompensationFailedAlarm",
            f"{step.name}-compensation-failed", (
                f"Saga {name}: an attempt to compensate step {step.name} failed. Step Functions "
                f"tries it {attempts} times in all, then parks the saga (alarm sagas-parked); a "
                "compensation must succeed eventually, so every failure is a defect or an "
                f"outage of the participant. Next: the log of {step.name}'s compensation "
                f"function (description 'Saga {name}: compensation of step {step.name}'), the "
                "dashboard's Compensation failures; then saga stuck "
                f"{self.target} --status compensating --older-than 0s."),
            self.saga_metric(Metric.COMPENSATION_FAILED, step=step.name), 0)

    def _unexplained_failures(self) -> cloudwatch.MathExpression:
        """Failed executions the saga did not decide on: Step Functions' ``ExecutionsFailed``
        less the sagas compensated or parked in the same period.

        A compensated saga ends in ``SagaCompensated.<step>`` and a parked one in
        ``CompensationFailed``: both are failed executions by design. What is left is
        ``ForwardRecoveryFailed``, ``ParkingFailed``, ``States.Runtime``... A saga parked
        earlier and compensated now by the redrive counts as compensated without a failed
        execution, which only lowers the result (never alarms).
        """
        machine = self.saga.state_machine
        return cloudwatch.MathExpression(
            expression="FILL(failed, 0) - FILL(compensated, 0) - FILL(parked, 0)",
            using_metrics={
                "failed": machine.metric_failed(period=PERIOD, statistic="Sum"),
                "compensated": self.saga_metric(Metric.SAGA_COMPENSATED),
                "parked": self.saga_metric(Metric.SAGA_PARKED),
            },
            label="Failed executions not compensated or parked",
            period=PERIOD)

    def _executions_failed_alarm(self) -> cloudwatch.Alarm:
        name = self.saga_name
        # The two sides come from different places: ExecutionsFailed from Step Functions as the
        # execution ends, SagaCompensated/SagaParked from the saga store's stream a few seconds
        # later. A saga ending just before a period boundary shows as +1 in one period and -1
        # in the next, so one positive period is not enough: 2 of 3 periods over 0 is. A single
        # unexpected ending is already alarmed, from the saga store, by unexpected-endings;
        # this alarm is Step Functions' own count, which still works when the store's pipeline
        # does not (an unrecorded compensation then shows here, period after period).
        return self._alarm(
            "ExecutionsFailedAlarm", "executions-failed-unexpectedly", (
                f"Saga {name}: Step Functions counts more failed executions than sagas "
                "compensated or parked (2 of the last 3 periods of 5 minutes): executions end "
                "unexpectedly, or their endings are not reaching the saga store. Next: the "
                "state machine's failed executions in the Step Functions console (filter "
                "Failed; an error other than SagaCompensated.* or CompensationFailed is "
                f"unexpected); saga stuck {self.target} lists sagas the store still shows as "
                "unfinished; check the status-events-dlq and outcome-metrics-dlq alarms."),
            self.unexplained_failures, 0,
            evaluation_periods=3, datapoints_to_alarm=2)

    def _execution_ending_alarms(self) -> tuple[cloudwatch.Alarm, cloudwatch.Alarm]:
        """``ExecutionsTimedOut`` and ``ExecutionsAborted``: the saga never ends that way on
        purpose (each step has its own timeout, and nothing of the kit stops an execution), so
        one is enough to alarm."""
        name = self.saga_name
        machine = self.saga.state_machine
        consequence = ("no compensation ran, so its participants may hold effects nobody will "
                       "undo")
        timed_out = self._alarm(
            "ExecutionsTimedOutAlarm", "executions-timed-out", (
                f"Saga {name}: an execution hit the state machine's timeout and stopped where it "
                f"was; {consequence}. Next: find it in the Step Functions console (filter Timed "
                f"out), then {self.inspect} (the saga id is the execution name) and finish or "
                "undo its steps by hand."),
            machine.metric_timed_out(period=PERIOD, statistic="Sum"), 0)
        aborted = self._alarm(
            "ExecutionsAbortedAlarm", "executions-aborted", (
                f"Saga {name}: an execution was stopped (StopExecution, by a person or a "
                f"script); {consequence}. Next: find it in the Step Functions console (filter "
                f"Aborted), then {self.inspect} (the saga id is the execution name) and finish "
                "or undo its steps by hand; to end a saga, let it fail and compensate rather "
                "than stop it."),
            machine.metric_aborted(period=PERIOD, statistic="Sum"), 0)
        return timed_out, aborted

    def _stuck_alarm(self) -> cloudwatch.Alarm:
        name = self.saga_name
        thresholds = self.saga.stuck_detector.thresholds
        minutes = f"{thresholds.saga_seconds / 60:g}"
        detector_logs = self.saga.stuck_detector.function.log_group.log_group_name
        # The detector emits SagasStuck every 5 minutes, 0 when none; its runs drift against the
        # period boundaries, so a period may hold no run: with 1 of 2 periods the alarm stays in
        # ALARM across such a gap instead of flapping to OK and notifying again.
        return self._alarm(
            "StuckSagasAlarm", "stuck-sagas", (
                f"Saga {name}: sagas are running or compensating with no progress for over "
                f"{minutes} minutes (callback steps: their own threshold). Next: saga stuck "
                f"{self.target} --older-than {duration_text(thresholds.saga_seconds)} lists them "
                "with the step each waits in; the detector logs each one it counted: aws logs "
                f"tail {detector_logs} --since 15m --filter-pattern '\"saga stuck\"'. Then "
                f"{self.inspect} for one of them."),
            self.saga_metric(Metric.SAGAS_STUCK, statistic="Maximum",
                             period=DETECTION_INTERVAL), 0,
            evaluation_periods=2, datapoints_to_alarm=1)

    def _callback_wait_alarm(self, step_name: str, phase: str) -> cloudwatch.Alarm:
        name = self.saga_name
        step = self.saga.definition.step(step_name)
        # The stuck detector's threshold for this task, but never more than the step's timeout:
        # past it the saga has stopped waiting and compensated, so the command is one the
        # worker left unanswered for good.
        threshold = min(self.saga.stuck_detector.thresholds.for_state(state_name(step_name, phase)),
                        step.timeout_seconds)
        queue = self.saga.callback_queues[(step_name, phase)].queue
        # The age of the oldest message counts while a worker holds it too: the worker deletes
        # a command only once it has answered, so this is how long the saga has been waiting.
        return self._alarm(
            f"{pascal_name(step_name)}{phase.capitalize()}CommandsWaitingAlarm",
            f"{step_name}-{phase}-commands-waiting", (
                f"Saga {name}: a {phase} command of callback step {step_name} has waited over "
                f"{threshold} s in its queue without an answer: its worker is not taking "
                "commands (errors, throttles, a disabled trigger) or not answering them. At "
                f"{step.timeout_seconds} s the saga stops waiting and compensates. Next: the "
                f"dashboard's Callback command queues and Lambda errors, the {step_name} "
                "worker's log and its SQS trigger (Lambda console, Configuration, Triggers); "
                f"saga stuck {self.target} --older-than {duration_text(threshold)} lists the "
                "sagas waiting."),
            queue.metric_approximate_age_of_oldest_message(period=Duration.minutes(1),
                                                           statistic="Maximum"),
            threshold)

    # -- the saga's Lambda functions ----------------------------------------------------------

    @staticmethod
    def _groups(functions: Sequence[tuple[lambda_.Function, str]], size: int
                ) -> Iterator[tuple[int, str, Sequence[tuple[lambda_.Function, str]], str]]:
        """``functions`` in groups of at most ``size`` for one alarm each: (index from 1, the
        concern's suffix ``-<index>``, empty when one alarm is enough, the group, its labels)."""
        groups = list(chunks(functions, size))
        for index, group in enumerate(groups, start=1):
            yield (index, f"-{index}" if len(groups) > 1 else "", group,
                   ", ".join(label for _, label in group))

    def _lambda_error_alarms(self) -> list[cloudwatch.Alarm]:
        """``Errors`` of the functions that raise only when broken, summed, 10 per alarm."""
        name = self.saga_name
        alarms = []
        for index, suffix, group, labels in self._groups(self.raising_only_when_broken,
                                                         MAX_ALARM_METRICS):
            alarms.append(self._alarm(
                f"LambdaErrorsAlarm{index}", f"lambda-errors{suffix}", (
                    f"Saga {name}: a function that raises only when something is broken raised "
                    f"(one of: {labels}). The kit's functions record endings, count outcomes, "
                    "finish parked sagas and find stuck ones; a callback worker replies its "
                    "step's failure instead of raising, so its errors are crashes, timeouts or "
                    "missing permissions. Next: the dashboard's Lambda errors names the "
                    "function; read its log (Lambda console, the function's Monitor tab, View "
                    "CloudWatch logs) for the exception, fix and redeploy."),
                _sum_of([f.metric_errors(period=PERIOD, statistic="Sum", label=label)
                         for f, label in group], "Errors"), 0))
        return alarms

    def _step_error_rate_alarms(self) -> list[cloudwatch.Alarm]:
        """Error rate of the step handlers Step Functions invokes: the highest of up to five
        functions per alarm (each needs its errors and its invocations).

        Not ``Errors > 0``: a step's business error (a declined payment, no stock) is raised, so
        it is a Lambda error, and the saga compensates it by design. A handler failing at least
        half of its calls for 15 minutes is broken (a bad deploy, a missing permission, a
        participant down) or is declining everything, which is worth a look as well.
        """
        name = self.saga_name
        alarms = []
        for index, suffix, group, labels in self._groups(self.synchronous_handlers,
                                                         RATE_FUNCTIONS_PER_ALARM):
            rates: dict[str, cloudwatch.IMetric] = {}
            for position, (function, label) in enumerate(group):
                rates[f"rate{position}"] = cloudwatch.MathExpression(
                    expression=f"100 * FILL(errors{position}, 0) / invocations{position}",
                    using_metrics={
                        f"errors{position}": function.metric_errors(period=PERIOD,
                                                                    statistic="Sum"),
                        f"invocations{position}": function.metric_invocations(period=PERIOD,
                                                                              statistic="Sum"),
                    },
                    label=f"{label} error %", period=PERIOD)
            alarms.append(self._alarm(
                f"StepErrorRateAlarm{index}", f"step-error-rate{suffix}", (
                    f"Saga {name}: a step handler ({labels}) failed at least "
                    f"{STEP_ERROR_RATE_PERCENT}% of its calls in each of the last "
                    f"{STEP_ERROR_RATE_PERIODS} periods of 5 minutes, so most sagas reaching it "
                    "compensate. Business errors count too; a handler declining everything is "
                    "worth a look as well. Next: the dashboard's Step failures and Lambda errors "
                    "name the step; its log says which error (BusinessError: the participant "
                    "says no; anything else: a defect, a permission, an outage); the "
                    "Lambda console's Monitor tab shows the function."),
                cloudwatch.MathExpression(
                    expression=f"MAX([{', '.join(rates)}])", using_metrics=rates,
                    label="Highest step handler error %", period=PERIOD),
                STEP_ERROR_RATE_PERCENT,
                comparison_operator=cloudwatch.ComparisonOperator
                .GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                evaluation_periods=STEP_ERROR_RATE_PERIODS))
        return alarms

    def _throttle_alarms(self) -> list[cloudwatch.Alarm]:
        """``Throttles`` of every function of the saga, summed, 10 per alarm. A throttled step
        is retried by Step Functions and a throttled worker by SQS, but each retry delays a saga
        and the next may be the last: any throttle says the account or the function runs out of
        concurrency."""
        name = self.saga_name
        alarms = []
        functions = [*self.step_function_labels, *self.kit_function_labels]
        for index, suffix, group, labels in self._groups(functions, MAX_ALARM_METRICS):
            alarms.append(self._alarm(
                f"LambdaThrottlesAlarm{index}", f"lambda-throttles{suffix}", (
                    f"Saga {name}: Lambda throttled a function of the saga (one of: {labels}); "
                    "its calls are retried, but sagas slow down and may exhaust their retries "
                    "and compensate. Next: the dashboard's Lambda throttles names the function; "
                    "compare the account's ConcurrentExecutions with its concurrency quota "
                    "(Service Quotas, AWS Lambda) and the function's reserved concurrency, and "
                    "ask for more, or lower the callback queues' batch size."),
                _sum_of([f.metric_throttles(period=PERIOD, statistic="Sum", label=label)
                         for f, label in group], "Throttles"), 0))
        return alarms

    # -- dashboard ----------------------------------------------------------------------------

    def _dashboard(self) -> cloudwatch.Dashboard:
        """The saga type's dashboard, named ``<stack>-<saga>-<region>``: dashboard names are
        global to the account, so an app deployed to two regions needs the region in it."""
        saga = self.saga
        name = self.saga_name
        region = Stack.of(self).region
        dashboard = cloudwatch.Dashboard(
            self, "Dashboard", dashboard_name=f"{self.stack_name}-{name}-{region}",
            default_interval=Duration.hours(3))
        steps = [s.name for s in saga.definition.steps]
        compensated = [s.name for s in saga.definition.steps if s.compensation]
        dashboard.add_widgets(cloudwatch.TextWidget(
            width=24, height=3, markdown=(
                f"## Saga {name} ({self.stack_name})\n"
                f"Stuck: `saga stuck {self.target}` · parked: `saga dlq list {self.target}` · "
                f"one saga: `{self.inspect}` · every alarm explained: Saga Kit's "
                "docs/alarms.md")))
        dashboard.add_widgets(cloudwatch.AlarmStatusWidget(
            title="Alarms", alarms=self.alarms, width=24,
            height=2 + (len(self.alarms) + 3) // 4))
        dashboard.add_widgets(
            self._graph("Sagas started, completed, compensated and parked", [
                self.saga_metric(metric, label=label) for metric, label in (
                    (Metric.SAGA_STARTED, "started"), (Metric.SAGA_COMPLETED, "completed"),
                    (Metric.SAGA_COMPENSATED, "compensated"), (Metric.SAGA_PARKED, "parked"))]),
            self._graph("Unexpected endings", [
                self.saga_metric(Metric.SAGA_FAILED_UNEXPECTEDLY, label="failed unexpectedly"),
                self.unexplained_failures,
                saga.state_machine.metric_timed_out(period=PERIOD, statistic="Sum",
                                                    label="timed out"),
                saga.state_machine.metric_aborted(period=PERIOD, statistic="Sum",
                                                  label="aborted")]),
        )
        dashboard.add_widgets(
            self._graph("Stuck sagas", [self.saga_metric(
                Metric.SAGAS_STUCK, statistic="Maximum", label="stuck",
                period=DETECTION_INTERVAL)], width=8),
            self._graph("Saga duration (ms), p50 and p99", [
                self.saga_metric(Metric.SAGA_DURATION, statistic=p, label=p)
                for p in ("p50", "p99")], width=8),
            self._graph("Compensation failures", [
                self.saga_metric(Metric.COMPENSATION_FAILED, step=s, label=s)
                for s in compensated], width=8),
        )
        dashboard.add_widgets(
            self._graph("Step latency (ms), p50 and p99", [
                self.saga_metric(Metric.STEP_DURATION, statistic=p, step=s, label=f"{s} {p}")
                for s in steps for p in ("p50", "p99")]),
            self._graph("Compensation latency (ms), p50 and p99", [
                self.saga_metric(Metric.COMPENSATION_DURATION, statistic=p, step=s,
                                 label=f"{s} {p}")
                for s in compensated for p in ("p50", "p99")]),
        )
        dead_letter_queues = [
            (saga.parking.dead_letter_queue, "compensation DLQ"),
            (saga.status_events.dead_letter_queue, "status events DLQ"),
            (saga.outcome_metrics.dead_letter_queue, "outcome metrics DLQ"),
            *((q.dead_letter_queue, f"{step} {phase} commands DLQ")
              for (step, phase), q in saga.callback_queues.items()),
        ]
        dashboard.add_widgets(
            self._graph("Step failures", [
                self.saga_metric(Metric.STEP_FAILED, step=s, label=s) for s in steps]),
            self._graph("DLQ depth (messages)", [
                q.metric_approximate_number_of_messages_visible(
                    period=Duration.minutes(1), statistic="Maximum", label=label)
                for q, label in dead_letter_queues]),
        )
        queue = saga.parking.queue
        queue_widgets = [cloudwatch.GraphWidget(
            title="Compensation queue: parked sagas and oldest (s)", width=12, height=6,
            left=[queue.metric_approximate_number_of_messages_visible(
                      period=Duration.minutes(1), statistic="Maximum", label="compensation queue"),
                  saga.parking.dead_letter_queue.metric_approximate_number_of_messages_visible(
                      period=Duration.minutes(1), statistic="Maximum", label="DLQ")],
            right=[queue.metric_approximate_age_of_oldest_message(
                period=Duration.minutes(1), statistic="Maximum", label="oldest (s)")])]
        if saga.callback_queues:
            queue_widgets.append(cloudwatch.GraphWidget(
                title="Callback command queues: waiting and oldest (s)", width=12, height=6,
                left=[q.queue.metric_approximate_number_of_messages_visible(
                    period=Duration.minutes(1), statistic="Maximum", label=f"{s} {p} waiting")
                    for (s, p), q in saga.callback_queues.items()],
                right=[q.queue.metric_approximate_age_of_oldest_message(
                    period=Duration.minutes(1), statistic="Maximum", label=f"{s} {p} oldest (s)")
                    for (s, p), q in saga.callback_queues.items()]))
        dashboard.add_widgets(*queue_widgets)
        functions = [*self.step_function_labels, *self.kit_function_labels]
        dashboard.add_widgets(
            self._graph("Lambda errors", [f.metric_errors(period=PERIOD, statistic="Sum",
                                                          label=label) for f, label in functions]),
            self._graph("Lambda throttles", [
                f.metric_throttles(period=PERIOD, statistic="Sum", label=label)
                for f, label in functions]),
        )
        return dashboard

    @staticmethod
    def _graph(title: str, metrics: Sequence[cloudwatch.IMetric], width: int = 12
               ) -> cloudwatch.GraphWidget:
        return cloudwatch.GraphWidget(title=title, left=list(metrics), width=width, height=6)


def _sum_of(metrics: Sequence[cloudwatch.IMetric], label: str) -> cloudwatch.MathExpression:
    """The sum of up to :data:`MAX_ALARM_METRICS` metrics, a missing one counting 0 (Lambda
    publishes nothing for a function that was not called)."""
    if len(metrics) > MAX_ALARM_METRICS:
        raise ValueError(f"{len(metrics)} metrics in one alarm; CloudWatch allows "
                         f"{MAX_ALARM_METRICS}")
    return cloudwatch.MathExpression(
        expression=" + ".join(f"FILL(m{i}, 0)" for i in range(len(metrics))),
        using_metrics={f"m{i}": metric for i, metric in enumerate(metrics)},
        label=label, period=PERIOD)

