"""The names and limits the CDK side, the Lambda runtime and the CLI agree on, written once.

The constructs write these into environment variables, state machine definitions, queue messages
and stack outputs; the runtime and the CLI read them back. This module imports nothing outside the
standard library, so the Lambda runtime, the CDK side and the CLI can all depend on it.
"""

from __future__ import annotations

from collections.abc import Mapping
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
    "STATUSES",
    "STATUS_CHANGE_DETAIL_TYPE",
    "STATUS_INDEX",
    "TERMINAL_STATUSES",
    "UNEXPECTED_ENDING_METRIC",
    "Env",
    "output_key",
    "pascal_name",
    "saga_outputs",
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

#: Namespace of every metric the kit's functions emit (Powertools EMF).
METRICS_NAMESPACE: Final = "SagaKit"
PAST_DEADLINE_METRIC: Final = "ParkedPastDeadline"
UNEXPECTED_ENDING_METRIC: Final = "SagaFailedUnexpectedly"

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
)


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
