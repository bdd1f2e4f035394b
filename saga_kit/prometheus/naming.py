"""How prometheus/cloudwatch_exporter names the series and labels it exports.

The exporter's Java source (``src/main/java/io/prometheus/cloudwatch/CloudWatchCollector.java``)
builds every name from the rule's namespace, metric name and statistic, and every label from a
CloudWatch dimension. These functions repeat those rules exactly, so the alert rules and the
dashboard the kit generates query the series the exporter really exports:

* series: ``safeName(namespace.toLowerCase() + "_" + toSnakeCase(metric))`` then ``_sum``,
  ``_sample_count``, ``_minimum``, ``_maximum`` or ``_average`` for a statistic, or
  ``"_" + safeName(toSnakeCase(p))`` for an extended statistic ``p``. The namespace is only
  lower-cased, never snake-cased: ``SagaKit`` gives ``sagakit_...`` and ``AWS/States`` gives
  ``aws_states_...``; no ``aws_`` is added to a custom namespace.
* labels: ``safeLabelName(toSnakeCase(dimension))`` (``SagaType`` is ``saga_type``,
  ``StateMachineArn`` is ``state_machine_arn``), plus ``job`` (the lower-cased namespace
  through ``safeName``) and an empty ``instance``.
* ``aws_resource_info``: one series per tagged resource an ``aws_tag_select`` found, labelled
  ``arn``, the resource id dimension (snake-cased) and ``tag_<key>`` for each tag, the key through
  ``safeLabelName`` but not snake-cased (``saga-kit:saga`` is ``tag_saga_kit_saga``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

__all__ = [
    "RESOURCE_INFO",
    "STATISTIC_SUFFIXES",
    "dimension_label",
    "job_label",
    "promql_regex",
    "series_name",
    "snake_case",
    "tag_label",
]

#: ``sampleLabelSuffixBy``: the suffix of each plain CloudWatch statistic.
STATISTIC_SUFFIXES: Final = {
    "Sum": "_sum",
    "SampleCount": "_sample_count",
    "Minimum": "_minimum",
    "Maximum": "_maximum",
    "Average": "_average",
}
#: The info series ``aws_tag_select`` adds for each tagged resource it found.
RESOURCE_INFO: Final = "aws_resource_info"

# The DynamoDB metrics the exporter renames ``..._index`` when asked per secondary index; the
# kit does not read them, but a name function that forgot them would lie for that namespace.
_DYNAMODB_INDEX_METRICS: Final = frozenset({
    "ConsumedReadCapacityUnits", "ConsumedWriteCapacityUnits", "ProvisionedReadCapacityUnits",
    "ProvisionedWriteCapacityUnits", "ReadThrottleEvents", "WriteThrottleEvents",
})


def snake_case(text: str) -> str:
    """``toSnakeCase``: an underscore between a lower-case letter or digit and the upper-case
    letter after it, then all lower case (``HTTPCode_Backend_2XX`` is
    ``httpcode_backend_2_xx``, as the exporter's own tests assert)."""
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", text).lower()


def _safe_name(text: str) -> str:
    # ``safeName``: invalid characters become underscores, runs of underscores merge.
    return re.sub(r"__+", "_", re.sub(r"[^a-zA-Z0-9:_]", "_", text))


def _safe_label_name(text: str) -> str:
    # ``safeLabelName``: as safeName, without the colon a label name may not hold.
    return re.sub(r"__+", "_", re.sub(r"[^a-zA-Z0-9_]", "_", text))


def series_name(namespace: str, metric: str, statistic: str,
                dimensions: tuple[str, ...] | list[str] = ()) -> str:
    """The series the exporter exports for one CloudWatch metric and statistic.

    ``statistic`` is a plain statistic (``Sum``, ``Maximum``...) or an extended one (``p99``,
    ``p99.9``): ``series_name("SagaKit", "StepDuration", "p99")`` is
    ``sagakit_step_duration_p99`` and ``series_name("AWS/SQS",
    "ApproximateNumberOfMessagesVisible", "Maximum")`` is
    ``aws_sqs_approximate_number_of_messages_visible_maximum``. ``dimensions`` matters only for
    the DynamoDB index metrics the exporter renames.
    """
    base = _safe_name(f"{namespace.lower()}_{snake_case(metric)}")
    if (namespace == "AWS/DynamoDB" and "GlobalSecondaryIndexName" in dimensions
            and metric in _DYNAMODB_INDEX_METRICS):
        base += "_index"
    if statistic in STATISTIC_SUFFIXES:
        return base + STATISTIC_SUFFIXES[statistic]
    if not re.fullmatch(r"p\d+(\.\d+)?", statistic):
        raise ValueError(f"{statistic!r} is neither a CloudWatch statistic "
                         f"({', '.join(STATISTIC_SUFFIXES)}) nor a percentile such as p99")
    return f"{base}_{_safe_name(snake_case(statistic))}"


def dimension_label(dimension: str) -> str:
    """The label of a CloudWatch dimension: ``SagaType`` is ``saga_type``."""
    return _safe_label_name(snake_case(dimension))


def job_label(namespace: str) -> str:
    """The ``job`` label the exporter puts on a namespace's series (Prometheus keeps it as
    ``exported_job`` unless the scrape sets ``honor_labels``): ``AWS/States`` is ``aws_states``."""
    return _safe_name(namespace.lower())


def tag_label(tag_key: str) -> str:
    """The ``aws_resource_info`` label of a resource tag: ``saga-kit:saga`` is
    ``tag_saga_kit_saga`` (tag keys are case sensitive, so they are not snake-cased)."""
    return "tag_" + _safe_label_name(tag_key)


def promql_regex(names: Iterable[str]) -> str:
    """The body of a PromQL ``=~"..."`` matcher that matches exactly ``names``: RE2
    metacharacters escaped, then backslashes doubled for the PromQL string literal."""
    escaped = [re.sub(r"([\\.+*?()|\[\]{}^$])", r"\\\1", name) for name in sorted(set(names))]
    return "|".join(escaped).replace("\\", "\\\\")
