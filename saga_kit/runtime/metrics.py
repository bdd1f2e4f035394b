"""The kit's EMF metric sets: one namespace, the saga type always, the step where it applies.

Powertools adds a ``service`` dimension from ``POWERTOOLS_SERVICE_NAME`` by default; the kit
sets the service to the saga's name for its logs, so as a dimension it would only repeat
``SagaType`` (and double the dimension sets an alarm has to name). It is left out.
"""

from __future__ import annotations

import os

from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

from saga_kit.contract import METRICS_NAMESPACE, Dimension

__all__ = ["MetricUnit", "saga_metrics"]


def saga_metrics(saga_type: str, step: str | None = None) -> EphemeralMetrics:
    """A fresh metric set in the function's namespace (``POWERTOOLS_METRICS_NAMESPACE``, set by
    the construct), with ``SagaType`` and, when given, ``Step`` as dimensions. Flush it once."""
    metrics = EphemeralMetrics(
        namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", METRICS_NAMESPACE), service="")
    metrics.add_dimension(name=Dimension.SAGA_TYPE, value=saga_type)
    if step is not None:
        metrics.add_dimension(name=Dimension.STEP, value=step)
    return metrics
