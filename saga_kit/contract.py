"""The names and limits the CDK side, the Lambda runtime and the CLI agree on, written once.

The constructs write these into environment variables, state machine definitions, queue messages
and stack outputs; the runtime and the CLI read them back. This module imports nothing outside the
standard library, so the Lambda runtime, the CDK side and the CLI can all depend on it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

__all__ = [
    "ALLOWED_FROM",
    "COMPENSATED",
    "COMPENSATING",
    "COMPLETED",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_COMPENSATION_RESULT_BYTES",
    "DEFAULT_MAX_INPUT_BYTES",
    "DEFAULT_MAX_RESULT_BYTES",
    "DEFAULT_PARKED_DEADLINE_SECONDS",
    "DEFAULT_STUCK_AFTER_SECONDS",
    "FAILED",
    "IDEMPOTENCY_HEADER",
    "MESSAGE_KIND",
    "MESSAGE_VERSION",
    "MESSAGE_VERSIONS",
    "METRICS_NAMESPACE",
    "OUTPUT_KEYS",
    "PARKED",
    "PAST_DEADLINE_METRIC",
    "PHASES",
    "REOPENED_FROM",
    "RESERVED_STATE_KEYS",
    "RUNNING",
    "SAGA_TAG",
    "STATUSES",
    "STATUS_CHANGE_DETAIL_TYPE",
    "STATUS_INDEX",
    "STUCK_STATUSES",
    "TERMINAL_STATUSES",
    "UNEXPECTED_ENDING_METRIC",
    "Dimension",
    "Env",
    "Metric",
    "StuckThresholds",
    "execution_arn",
    "output_key",
    "pascal_name",
    "saga_outputs",
    "state_name",
]

# -- environment variables the constructs set and the runtime reads ----------------------------


class Env:
    """Environment variable names of the kit's Lambda functions."""

    #: Version of Saga Kit that synthesized the function; the runtime refuses to run another.
    KIT_VERSION: Final = "SAGA_KIT_VERSION"
    SAGA_TYPE: Final = "SAGA_TYPE"
    STEP: Final = "SAGA_STEP"
    PHASE: Final = "SAGA_PHASE"
    HAS_COMPENSATION: Final = "SAGA_HAS_COMPENSATION"
    IDEMPOTENCY_TABLE: Final = "SAGA_IDEMPOTENCY_TABLE"
    BARRIER_TABLE: Final = "SAGA_BARRIER_TABLE"
    STORE_TABLE: Final = "SAGA_STORE_TABLE"
    MAX_RESULT_BYTES: Final = "SAGA_MAX_RESULT_BYTES"
    MAX_INPUT_BYTES: Final = "SAGA_MAX_INPUT_BYTES"
    PARKED_DEADLINE_SECONDS: Final = "SAGA_PARKED_DEADLINE_SECONDS"
    COMPENSATION_FUNCTIONS: Final = "SAGA_COMPENSATION_FUNCTIONS"
    #: JSON: for each step with a compensation, the compensations a parked message must list
    #: when that one failed, in order (``SagaDefinition.undo_plan``).
    COMPENSATION_PLANS: Final = "SAGA_COMPENSATION_PLANS"
    #: Callback workers: the declared heartbeat (absent without one) and the task's timeout.
    CALLBACK_HEARTBEAT_SECONDS: Final = "SAGA_CALLBACK_HEARTBEAT_SECONDS"
    TASK_TIMEOUT_SECONDS: Final = "SAGA_TASK_TIMEOUT_SECONDS"
    COMPENSATION_TIMEOUT: Final = "SAGA_COMPENSATION_TIMEOUT"
    API_ROUTES: Final = "SAGA_API_ROUTES"
    API_MAX_BODY_BYTES: Final = "SAGA_API_MAX_BODY_BYTES"
    API_REQUIRE_IDEMPOTENCY_KEY: Final = "SAGA_API_REQUIRE_IDEMPOTENCY_KEY"
    #: The stuck detector's thresholds, as :meth:`StuckThresholds.to_json` writes them.
    STUCK_THRESHOLDS: Final = "SAGA_STUCK_THRESHOLDS"


#: The error a branch of a parallel group ends with when one of its steps failed; its cause is
#: the failure record ``{"step", "error", "cause"}`` as JSON.
GROUP_STEP_FAILED_ERROR: Final = "SagaStepFailed"
#: The error a branch of a group's compensation ends with when a compensation gave up; its cause
#: is the compensation failure record as JSON.
GROUP_COMPENSATION_FAILED_ERROR: Final = "CompensationFailed"
#: The field of a callback command that carries Step Functions' task token.
TASK_TOKEN_FIELD: Final = "task_token"


# -- the saga store: statuses and the moves between them ---------------------------------------

RUNNING: Final = "running"
COMPENSATING: Final = "compensating"
COMPLETED: Final = "completed"
COMPENSATED: Final = "compensated"
PARKED: Final = "parked"
FAILED: Final = "failed"
STATUSES: Final = (RUNNING, COMPENSATING, COMPLETED, COMPENSATED, PARKED, FAILED)
TERMINAL_STATUSES: Final = frozenset({COMPLETED, COMPENSATED, FAILED})
#: From which statuses each status may be entered ("" means: the item has no status yet).
#: Staying in a status is a move too, so the common write (one more step of a running saga)
#: succeeds at the first request.
ALLOWED_FROM: Final[dict[str, tuple[str, ...]]] = {
    RUNNING: ("", RUNNING),
    # Not from PARKED: the redrive's attempts keep a parked saga parked until it is compensated.
    COMPENSATING: ("", RUNNING, COMPENSATING),
    COMPLETED: ("", RUNNING),
    COMPENSATED: ("", RUNNING, COMPENSATING, PARKED),
    PARKED: ("", RUNNING, COMPENSATING, PARKED),
    FAILED: ("", RUNNING, COMPENSATING, PARKED),
}
#: Where a redriven execution (Step Functions ``RedriveExecution``) takes a failed saga back to.
REOPENED_FROM: Final = FAILED

#: The saga store's index by status (partition ``status``), which ``saga stuck`` queries.
STATUS_INDEX: Final = "by_status"
#: EventBridge detail type of Step Functions' execution status events, which keep the store's
#: endings current.
STATUS_CHANGE_DETAIL_TYPE: Final = "Step Functions Execution Status Change"

# -- the state a saga execution carries ------------------------------------------------------

PHASES: Final = ("action", "compensation")
#: Keys of the execution state the state machine writes; a saga's input must not use them.
RESERVED_STATE_KEYS: Final = frozenset(
    {"results", "compensations", "failure", "compensation_error", "compensation_failure",
     "store_error"}
)

# -- size limits (bytes) --------------------------------------------------------------------

DEFAULT_MAX_INPUT_BYTES: Final = 32 * 1024
DEFAULT_MAX_RESULT_BYTES: Final = 16 * 1024
DEFAULT_MAX_COMPENSATION_RESULT_BYTES: Final = 4 * 1024
DEFAULT_MAX_BODY_BYTES: Final = 32 * 1024

# -- parked compensations -----------------------------------------------------------------------

#: Message kind and version, so a consumer can refuse what it does not understand. Version 2
#: carries the compensation failure inside ``state`` only (version 1 repeated it at the top).
MESSAGE_KIND: Final = "saga_kit.parked_compensation"
MESSAGE_VERSION: Final = 2
#: The versions the redrive Lambda and the CLI still read.
MESSAGE_VERSIONS: Final = (1, 2)
#: How long after parking the redrive Lambda still finishes a saga.
DEFAULT_PARKED_DEADLINE_SECONDS: Final = 90 * 24 * 3600

# -- metrics ----------------------------------------------------------------------------------

#: Default namespace of every metric the kit's functions emit (Powertools EMF); a saga may set
#: its own (``Saga(metrics_namespace=...)``).
METRICS_NAMESPACE: Final = "SagaKit"


class Metric:
    """The kit's CloudWatch metric names (EMF, unit in brackets).

    Saga outcomes are counted from the saga store's status changes (one stream record per
    change, so a retried handler or a duplicate event never counts twice); step metrics by the
    step runtime, once per invocation that ran (a duplicate answered from the idempotency
    record counts nothing); ``SagasStuck`` by the stuck detector at each run.
    """

    #: Dimension ``SagaType`` [Count]: the saga got its first status.
    SAGA_STARTED: Final = "SagaStarted"
    #: ``SagaType`` [Count]: terminal outcomes, from what Step Functions decided.
    SAGA_COMPLETED: Final = "SagaCompleted"
    SAGA_COMPENSATED: Final = "SagaCompensated"
    #: ``SagaType`` [Count]: a compensation gave up; the saga waits in the compensation queue.
    SAGA_PARKED: Final = "SagaParked"
    #: ``SagaType`` [Count]: an ending the saga does not expect (ForwardRecoveryFailed,
    #: States.Runtime, TIMED_OUT, ABORTED...); its participants may hold effects.
    SAGA_FAILED_UNEXPECTEDLY: Final = "SagaFailedUnexpectedly"
    #: ``SagaType`` [Milliseconds]: from the saga's first status to its terminal one.
    SAGA_DURATION: Final = "SagaDuration"
    #: ``SagaType``, ``Step`` [Count / Milliseconds]: one per action invocation that ran.
    STEP_SUCCEEDED: Final = "StepSucceeded"
    STEP_FAILED: Final = "StepFailed"
    STEP_DURATION: Final = "StepDuration"
    #: ``SagaType``, ``Step`` [Count / Milliseconds]: one per compensation invocation that ran.
    COMPENSATION_SUCCEEDED: Final = "CompensationSucceeded"
    COMPENSATION_FAILED: Final = "CompensationFailed"
    COMPENSATION_DURATION: Final = "CompensationDuration"
    #: ``SagaType`` [Count]: sagas past their stuck threshold at the detector's last run.
    SAGAS_STUCK: Final = "SagasStuck"
    #: ``SagaType`` [Count]: a parked saga's redrive refused, past its parked deadline.
    PARKED_PAST_DEADLINE: Final = "ParkedPastDeadline"

    #: The saga outcome counted for each status a saga enters (``running`` only the first time).
    BY_STATUS: Final[Mapping[str, str]] = {
        "running": SAGA_STARTED,
        "completed": SAGA_COMPLETED,
        "compensated": SAGA_COMPENSATED,
        "parked": SAGA_PARKED,
        "failed": SAGA_FAILED_UNEXPECTEDLY,
    }


class Dimension:
    """The dimensions of the kit's metrics: the saga type always, the step where it applies."""

    SAGA_TYPE: Final = "SagaType"
    STEP: Final = "Step"


PAST_DEADLINE_METRIC: Final = Metric.PARKED_PAST_DEADLINE
UNEXPECTED_ENDING_METRIC: Final = Metric.SAGA_FAILED_UNEXPECTEDLY

# -- stuck sagas ----------------------------------------------------------------------------------

#: Default of ``SagaDefinition.stuck_after_seconds``.
DEFAULT_STUCK_AFTER_SECONDS: Final = 15 * 60
#: The statuses in which a saga can be stuck. ``parked`` is not among them: a parked saga waits
#: for an operator on purpose, and the compensation queue's alarms already say so.
STUCK_STATUSES: Final = ("running", "compensating")


def execution_arn(state_machine_arn: str, name: str) -> str:
    """The ARN Step Functions gives the execution ``name`` of a Standard state machine (a
    saga's execution is named after its saga id)."""
    return f"{state_machine_arn.replace(':stateMachine:', ':execution:', 1)}:{name}"


def state_name(step: str, phase: str) -> str:
    """The state machine's state for one phase of a step: ``reserve`` and ``compensate_reserve``."""
    return step if phase == "action" else f"compensate_{step}"


@dataclass(frozen=True)
class StuckThresholds:
    """When a saga counts as stuck: no progress for ``saga_seconds``, or a callback task (by
    state name) waiting for its reply longer than its own threshold."""

    saga_seconds: int
    callback_seconds: Mapping[str, int] = field(default_factory=dict)

    def for_state(self, state: str | None) -> int:
        """The threshold of a saga whose execution is in ``state`` (a callback task's own, if
        it has one)."""
        return self.callback_seconds.get(state or "", self.saga_seconds)

    @property
    def smallest(self) -> int:
        """The smallest threshold: sagas idle for less than this are certainly not stuck."""
        return min([self.saga_seconds, *self.callback_seconds.values()])

    def to_json(self) -> str:
        return json.dumps({"saga_seconds": self.saga_seconds,
                           "callback_seconds": dict(self.callback_seconds)}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> StuckThresholds:
        data = json.loads(text)
        return cls(saga_seconds=int(data["saga_seconds"]),
                   callback_seconds={k: int(v) for k, v in data.get("callback_seconds", {}).items()})

# -- the front door ---------------------------------------------------------------------------

IDEMPOTENCY_HEADER: Final = "Idempotency-Key"

# -- what a deployed saga publishes for operators: its stack outputs ------------------------------

#: What the CLI needs of each saga, by name. Each is a stack output named
#: ``output_key(saga, name)``.
OUTPUT_KEYS: Final = (
    "StateMachineArn",
    "StoreTableName",
    "IdempotencyTableName",
    "BarrierTableName",
    "CompensationQueueUrl",
    "CompensationQueueArn",
    "CompensationDeadLetterQueueUrl",
    "CompensationDeadLetterQueueArn",
    "RedriveFunctionName",
    "ExecutionLogGroupName",
)

#: Tag the ``Saga`` construct puts on every resource of a saga, valued with the saga's name.
SAGA_TAG: Final = "saga-kit:saga"


def pascal_name(name: str) -> str:
    """A saga or step name as construct ids and output keys spell it:
    ``pascal_name("order_fulfillment")`` is ``OrderFulfillment``."""
    return "".join(part.capitalize() for part in name.split("_"))


def output_key(saga_name: str, name: str) -> str:
    """The stack output of one saga's ``name`` (one of :data:`OUTPUT_KEYS`):
    ``output_key("order_fulfillment", "StateMachineArn")`` is ``OrderFulfillmentStateMachineArn``.
    """
    if name not in OUTPUT_KEYS:
        raise ValueError(f"{name!r} is not one of {', '.join(OUTPUT_KEYS)}")
    return f"{pascal_name(saga_name)}{name}"


def saga_outputs(stack_outputs: Mapping[str, str], saga_name: str | None = None) -> dict[str, str]:
    """One saga's outputs, by :data:`OUTPUT_KEYS` name, out of its stack's outputs.

    Without ``saga_name`` the stack must hold exactly one saga. Raises ``LookupError`` naming
    the sagas the stack does hold otherwise.
    """
    marker = "StateMachineArn"
    prefixes = sorted(key[: -len(marker)] for key in stack_outputs
                      if key.endswith(marker) and key != marker)
    if saga_name is None:
        if len(prefixes) != 1:
            found = ", ".join(prefixes) or "none"
            raise LookupError(f"the stack holds {len(prefixes)} sagas ({found}); name one")
        prefix = prefixes[0]
    else:
        prefix = pascal_name(saga_name)
        if prefix not in prefixes:
            found = ", ".join(prefixes) or "none"
            raise LookupError(f"the stack has no saga '{saga_name}' (no output {prefix}{marker}); "
                              f"its sagas' outputs are: {found}")
    return {name: stack_outputs[f"{prefix}{name}"] for name in OUTPUT_KEYS
            if f"{prefix}{name}" in stack_outputs}
