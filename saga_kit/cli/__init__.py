"""The ``saga`` command line (``saga_kit.cli.main``) and the operator functions behind it, for
scripts and tests that drive deployed sagas with boto3 clients.

Example::

    from saga_kit.cli import outcome, start_saga, wait_for_execution

    saga_id, arn = start_saga(sfn, state_machine_arn, {"order_id": "42"})
    wait_for_execution(sfn, arn)
    print(outcome(sfn, arn).status)        # "completed", "compensated", "parked", ...

Importing this package does not import the CDK, the local cloud, the command line itself or the
Lambda runtime (``find_stuck`` and ``StuckSaga`` come from :mod:`saga_kit.runtime.stuck` on first
use: the runtime creates its handlers' loggers at import, which ``saga demo`` must configure first).
"""

from typing import Any

from saga_kit.cli.dlq import ParkedView, RedriveError, list_parked, peek, redrive
from saga_kit.cli.executions import (
    SagaOutcome,
    history,
    new_saga_id,
    outcome,
    start_saga,
    stored_status,
    wait_for_execution,
)

__all__ = [
    "ParkedView",
    "RedriveError",
    "SagaOutcome",
    "StuckSaga",
    "find_stuck",
    "history",
    "list_parked",
    "new_saga_id",
    "outcome",
    "peek",
    "redrive",
    "start_saga",
    "stored_status",
    "wait_for_execution",
]


def __getattr__(name: str) -> Any:
    if name in ("StuckSaga", "find_stuck"):
        from saga_kit.runtime import stuck

        return getattr(stuck, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
