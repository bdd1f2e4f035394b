"""How the kit builds its alarms: a name an operator reads, a description that says what to do.

Every alarm of a saga is named ``<stack>-<saga>-<concern>`` (:func:`alarm_name`), so the console's
alarm list, an SNS e-mail's subject and a pager message all say which deployment, which saga and
what went wrong before anyone opens anything. Its description says what happened and the next
command to run (``saga stuck``, ``saga dlq list``...), since the description is the body of the
notification the on-call engineer reads first.
"""

from __future__ import annotations

from aws_cdk import Duration, Stack, Token
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from saga_kit.contract import Dimension

#: The period of the kit's own metrics in alarms and graphs, unless one says otherwise.
METRIC_PERIOD = Duration.minutes(5)
#: CloudWatch's limits on an alarm's name and description.
MAX_ALARM_NAME = 255
MAX_ALARM_DESCRIPTION = 1024


def alarm_name(scope: Construct, saga_name: str, concern: str) -> str:
    """``<stack>-<saga>-<concern>``, e.g. ``Shop-checkout-stuck-sagas``.

    The stack name keeps two deployments of one app in one region apart (alarm names are unique
    per account and region); the concern comes last and is never cut, so a name that would pass
    CloudWatch's 255 characters loses the end of its stack name instead.
    """
    suffix = f"-{saga_name}-{concern}"
    stack_name = Stack.of(scope).stack_name
    if Token.is_unresolved(stack_name):
        return f"{stack_name}{suffix}"
    return f"{stack_name[: max(1, MAX_ALARM_NAME - len(suffix))]}{suffix}"[:MAX_ALARM_NAME]


def cli_target(scope: Construct, saga_name: str) -> str:
    """``--stack <stack> --saga <saga>``: how the ``saga`` command finds this saga, written out
    so a description's commands can be pasted as they are."""
    return f"--stack {Stack.of(scope).stack_name} --saga {saga_name}"


def inspect_command(scope: Construct, saga_name: str) -> str:
    """``saga inspect <saga> SAGA_ID --stack <stack>``: one saga's timeline and next action, for
    the operator to fill in the saga id (the execution name)."""
    return f"saga inspect {saga_name} SAGA_ID --stack {Stack.of(scope).stack_name}"


def duration_text(seconds: int) -> str:
    """Seconds as ``saga stuck --older-than`` reads them: ``15m``, ``2h``, ``90s``."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def saga_metric(namespace: str, saga_name: str, name: str, *, step: str | None = None,
                statistic: str = "Sum", period: Duration = METRIC_PERIOD,
                label: str | None = None) -> cloudwatch.Metric:
    """One of the kit's metrics (:class:`~saga_kit.contract.Metric`) of saga ``saga_name`` in
    ``namespace``, for the whole saga or for one ``step``: the dimensions the runtime emits."""
    dimensions = {Dimension.SAGA_TYPE: saga_name}
    if step is not None:
        dimensions[Dimension.STEP] = step
    return cloudwatch.Metric(namespace=namespace, metric_name=name, dimensions_map=dimensions,
                             statistic=statistic, period=period, label=label)


def threshold_alarm(
    scope: Construct,
    construct_id: str,
    *,
    saga_name: str,
    concern: str,
    description: str,
    metric: cloudwatch.IMetric,
    threshold: float,
    topic: sns.ITopic | None = None,
    evaluation_periods: int = 1,
    datapoints_to_alarm: int | None = None,
    comparison_operator: cloudwatch.ComparisonOperator = (
        cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD),
) -> cloudwatch.Alarm:
    """An alarm named ``<stack>-<saga>-<concern>`` (:func:`alarm_name`) on ``metric`` against
    ``threshold`` (above it, unless ``comparison_operator`` says otherwise) over
    ``evaluation_periods`` periods, notifying ``topic`` when given.

    Missing data is "not breaching": the queues and functions these watch are silent when all
    is well. A description longer than CloudWatch accepts fails synthesis here rather than the
    deployment later.
    """
    if not Token.is_unresolved(description) and len(description) > MAX_ALARM_DESCRIPTION:
        raise ValueError(f"alarm {construct_id}: description of {len(description)} characters; "
                         f"CloudWatch accepts {MAX_ALARM_DESCRIPTION}")
    alarm = cloudwatch.Alarm(
        scope,
        construct_id,
        alarm_name=alarm_name(scope, saga_name, concern),
        alarm_description=description,
        metric=metric,
        threshold=threshold,
        comparison_operator=comparison_operator,
        evaluation_periods=evaluation_periods,
        datapoints_to_alarm=datapoints_to_alarm,
        treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
    )
    if topic is not None:
        alarm.add_alarm_action(cloudwatch_actions.SnsAction(topic))
    return alarm


def dead_letter_alarm(scope: Construct, queue: sqs.IQueue, *, saga_name: str, concern: str,
                      description: str, topic: sns.ITopic | None = None) -> cloudwatch.Alarm:
    """An alarm (construct id ``DeadLetterAlarm``) as soon as a message sits in the dead-letter
    queue ``queue``: something the saga handed over was given up on, and only an operator can
    finish it."""
    return threshold_alarm(
        scope, "DeadLetterAlarm", saga_name=saga_name, concern=concern, topic=topic,
        description=description,
        metric=queue.metric_approximate_number_of_messages_visible(
            period=Duration.minutes(1), statistic="Maximum"),
        threshold=0)
