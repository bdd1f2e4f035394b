"""The local cloud's CloudWatch for metrics: the EMF documents the handlers print, kept.

In Lambda, Powertools Metrics prints each flush as one EMF JSON line to stdout and CloudWatch
Logs turns it into metrics. In the local cloud the handlers run in-process, where stdout is the
test's or the terminal's (and a command's ``--json`` output); :func:`captured_emf` takes each
document into an :class:`EmfSink` instead, so tests assert on the metrics a saga emitted and
``saga serve`` exposes them to Prometheus. The patch shadows ``print`` in the one Powertools
module that prints EMF, for the cloud's lifetime only; anything else it prints is printed.
"""

from __future__ import annotations

import builtins
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from saga_kit.local_cloud._patching import patched

#: The Powertools module whose ``print`` writes EMF documents.
EMF_MODULE = "aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch"

Subscriber = Callable[[dict[str, Any]], None]


class EmfSink:
    """Every EMF document printed while the cloud runs, in order; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._documents: list[dict[str, Any]] = []
        self._subscribers: list[Subscriber] = []

    def add(self, document: dict[str, Any]) -> None:
        with self._lock:
            self._documents.append(document)
            subscribers = list(self._subscribers)
        for subscriber in subscribers:
            subscriber(document)

    def subscribe(self, subscriber: Subscriber, *, replay: bool = True) -> Callable[[], None]:
        """Calls ``subscriber`` with every document from now on (and, with ``replay``, with those
        already kept); returns the function that unsubscribes it."""
        with self._lock:
            self._subscribers.append(subscriber)
            past = list(self._documents) if replay else []
        for document in past:
            subscriber(document)

        def unsubscribe() -> None:
            with self._lock:
                if subscriber in self._subscribers:
                    self._subscribers.remove(subscriber)

        return unsubscribe

    def documents(self, **dimensions: str) -> list[dict[str, Any]]:
        """The documents kept so far whose dimension values include ``dimensions``
        (``documents(SagaType="order_fulfillment")``)."""
        with self._lock:
            kept = list(self._documents)
        return [d for d in kept if all(d.get(k) == v for k, v in dimensions.items())]

    def values(self, metric: str, **dimensions: str) -> list[float]:
        """Every value of ``metric`` in the matching documents, in order."""
        found: list[float] = []
        for document in self.documents(**dimensions):
            if metric not in _metric_names(document):
                continue
            value = document.get(metric)
            found.extend(value if isinstance(value, list) else [value])
        return found


def _metric_names(document: dict[str, Any]) -> set[str]:
    return {metric["Name"] for directive in document.get("_aws", {}).get("CloudWatchMetrics", [])
            for metric in directive.get("Metrics", [])}


@contextmanager
def captured_emf(sink: EmfSink) -> Iterator[None]:
    """Takes every EMF document Powertools prints into ``sink``, off stdout."""
    import importlib

    module = importlib.import_module(EMF_MODULE)

    def keep(*args: Any, **kwargs: Any) -> None:
        if len(args) == 1 and isinstance(args[0], str) and args[0].startswith('{"_aws"'):
            try:
                sink.add(json.loads(args[0]))
                return
            except ValueError:
                pass  # not a document after all: print it
        builtins.print(*args, **kwargs)

    with patched(module, "print", keep):
        yield
