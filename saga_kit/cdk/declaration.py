"""The saga declaration: the one place a team describes its distributed transaction.

A saga is an ordered list of steps. Each step names the Lambda handler that performs its action,
the handler that undoes it (its compensation), how long a single attempt may take, and which
errors are worth retrying. From this declaration the :class:`~saga_kit.cdk.construct.Saga`
construct derives the Step Functions state machine, the Lambda functions and their wiring, so the
declaration is validated up front: a mistake fails ``cdk synth`` with a message that names the
saga, the step and the fix, instead of surfacing as a stuck saga in production.

Step kinds follow the classic saga model:

* ``COMPENSATABLE`` steps come first. If anything fails before the pivot succeeds, every
  compensatable step already attempted is undone in strict reverse order.
* The single optional ``PIVOT`` step is the point of no return. If it fails, the steps before it
  (and the pivot itself, when it declares a compensation) are compensated; once it succeeds the
  saga only moves forward.
* ``RETRIABLE`` steps come after the pivot. They are retried until they succeed and are never
  compensated.

Two shapes go beyond a chain of synchronous calls:

* A :class:`ParallelGroup` runs its branches (a step, or a short chain of steps) at the same
  time. If any branch fails, every step of the group is compensated (the barrier makes the
  compensation of a step whose action never took effect a no-op), the branches' compensations in
  parallel, and then the steps before the group in reverse order.
* A step with a :class:`Callback` is an asynchronous participant: the state machine sends the
  command with a task token to the step's SQS queue and waits for the worker's
  ``SendTaskSuccess`` / ``SendTaskFailure``, within ``timeout_seconds`` and, if declared, a
  heartbeat.

``workflow=WorkflowType.EXPRESS`` deploys the saga as an Express state machine, for short,
high-volume sagas; what Express cannot do is refused here (see ``docs/express.md``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from saga_kit.contract import (
    DEFAULT_MAX_COMPENSATION_RESULT_BYTES,
    DEFAULT_MAX_INPUT_BYTES,
    DEFAULT_MAX_RESULT_BYTES,
    DEFAULT_STUCK_AFTER_SECONDS,
    StuckThresholds,
    state_name,
)

#: The errors Lambda itself raises when the service, not the handler, failed or throttled.
#: They are always transient, whatever the step declares.
LAMBDA_SERVICE_ERRORS: tuple[str, ...] = (
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.ClientExecutionTimeoutException",
    "Lambda.TooManyRequestsException",
)

#: The handler runtime's own transient error class (``saga_kit.runtime.TransientStepError``).
DEFAULT_TRANSIENT_ERRORS: tuple[str, ...] = ("TransientStepError",)

#: Step Functions' limit on an execution's state (input, output, every state's data).
#: ``States.DataLimitExceeded`` is terminal: no Catch can compensate it.
STATE_LIMIT_BYTES = 256 * 1024
#: Room kept free under the limit for what the estimate does not count exactly (JSON quoting
#: and keys of the state, the execution's name and ARN in the parked message).
STATE_MARGIN_BYTES = 16 * 1024
#: Step Functions cuts an error's cause at 32,768 characters; a failed saga's state holds up to
#: three of them (the failed step's, the failed compensation's, a failed parking's).
MAX_CAUSE_BYTES = 32 * 1024
FAILURE_RECORDS_BYTES = 3 * MAX_CAUSE_BYTES + 2 * 1024

#: Default wall-clock budget of one step, all attempts and backoff included.
DEFAULT_STEP_BUDGET_SECONDS = 300
#: What a task's ``TimeoutSeconds`` must leave on top of the Lambda timeout. A cold start (the
#: function's init) counts against the task timeout but not against the Lambda timeout; without
#: room for it, a handler that succeeds within its own timeout can still time the task out, and
#: the saga compensates a step whose handler had reported success.
COLD_START_MARGIN_SECONDS = 2

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_HANDLER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")
_ERROR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")


class SagaDeclarationError(ValueError):
    """A saga declaration cannot be turned into a correct state machine.

    The message lists every problem found, each naming the saga, the step and how to fix it.
    """


class StepKind(StrEnum):
    """Where a step stands relative to the saga's point of no return."""

    COMPENSATABLE = "compensatable"
    PIVOT = "pivot"
    RETRIABLE = "retriable"


@dataclass(frozen=True)
class RetryPolicy:
    """How Step Functions retries a transient failure of one task.

    Delays grow exponentially (``interval_seconds * backoff_rate ** n``), are capped at
    ``max_delay_seconds`` and, with ``full_jitter``, are drawn uniformly from zero to that value so
    that many sagas failing together do not retry in lockstep.

    Attributes:
        transient_errors: Error names (the ``errorType`` a handler raises) worth retrying. Lambda
            service errors and throttling are always added. Anything else is not retried: it goes
            straight to compensation.
        max_attempts: Retries after the first attempt (Step Functions' ``MaxAttempts``).
        interval_seconds: Delay before the first retry.
        backoff_rate: Multiplier applied to the delay after each retry.
        max_delay_seconds: Upper bound of any single delay.
        full_jitter: Randomise each delay between zero and its computed value.
    """

    transient_errors: tuple[str, ...] = DEFAULT_TRANSIENT_ERRORS
    max_attempts: int = 3
    interval_seconds: int = 1
    backoff_rate: float = 2.0
    max_delay_seconds: int = 30
    full_jitter: bool = True

    def delays(self) -> list[float]:
        """The worst-case delay before each retry, in seconds (jitter only ever shortens them)."""
        return [
            min(self.interval_seconds * self.backoff_rate**n, float(self.max_delay_seconds))
            for n in range(self.max_attempts)
        ]

    def worst_case_seconds(self, attempt_timeout_seconds: int) -> float:
        """Longest time a task can take: every attempt times out and every delay is the maximum."""
        return (self.max_attempts + 1) * attempt_timeout_seconds + sum(self.delays())

    @property
    def retried_errors(self) -> list[str]:
        """Every error name Step Functions retries: the declared ones plus Lambda service errors."""
        if "States.ALL" in self.transient_errors:
            return ["States.ALL"]  # it already covers everything, and must stand alone
        # The runtime reports every transient failure as TransientStepError (subclasses and
        # throttled AWS calls included), so it is always retried.
        return list(dict.fromkeys([*self.transient_errors, *DEFAULT_TRANSIENT_ERRORS,
                                   *LAMBDA_SERVICE_ERRORS]))


#: Compensations must finish, so by default they retry every error, for longer.
DEFAULT_COMPENSATION_RETRY = RetryPolicy(
    transient_errors=("States.ALL",), max_attempts=5, interval_seconds=1, max_delay_seconds=20
)

#: Steps after the pivot are retried until they succeed, whatever the error.
DEFAULT_FORWARD_RETRY = RetryPolicy(
    transient_errors=("States.ALL",), max_attempts=100, interval_seconds=1, max_delay_seconds=60
)

#: Express workflows stop after five minutes, whatever the state machine says.
EXPRESS_MAX_SECONDS = 300
#: Error names Step Functions reports when sending a callback command to SQS failed for a
#: reason worth retrying.
SQS_SERVICE_ERRORS: tuple[str, ...] = ("SQS.SdkClientException", "SQS.AmazonSQSException")


class WorkflowType(StrEnum):
    """The kind of state machine a saga is deployed as.

    ``STANDARD`` (default): exactly-once, up to a year, full execution history, callback steps.
    ``EXPRESS``: up to five minutes, at-least-once when started asynchronously, no execution
    history (logs only), priced per request and duration instead of per state transition. See
    ``docs/express.md``.
    """

    STANDARD = "standard"
    EXPRESS = "express"


@dataclass(frozen=True)
class Callback:
    """Makes a step an asynchronous participant, answered through an SQS queue.

    The state machine sends the step's command, with a task token, to a queue the construct
    creates for the step (``sqs:sendMessage.waitForTaskToken``) and waits. The step's handler,
    the same ``@saga_step`` function as for a synchronous step, runs in a worker Lambda that
    consumes the queue and replies with ``SendTaskSuccess`` / ``SendTaskFailure``. The step's
    ``timeout_seconds`` is then the longest the saga waits for that reply.

    Attributes:
        heartbeat_seconds: Longest silence between the worker's heartbeats
            (``StepContext.heartbeat()``) before the saga stops waiting and compensates. ``None``
            waits for the reply only.
        compensation: Whether the compensation is answered through a queue too (its own).
        batch_size: Commands per worker invocation.
        max_receive_count: Deliveries of a command the worker could not answer before SQS moves
            it to the worker queue's dead-letter queue (which has an alarm).
        stuck_after_seconds: How long the saga may wait for this step's reply before the stuck
            detector reports it (and the step's command queue alarm fires when a command waits
            that long unread). ``None`` uses the saga's ``stuck_after_seconds``. Must be below
            the step's ``timeout_seconds``: past it the saga stops waiting and compensates.
    """

    heartbeat_seconds: int | None = None
    compensation: bool = False
    batch_size: int = 1
    max_receive_count: int = 3
    stuck_after_seconds: int | None = None


#: Default budget of a step after the pivot: it must eventually succeed, so it may take long.
DEFAULT_FORWARD_BUDGET_SECONDS = 6 * 3600
#: Lambda's own limits.
LAMBDA_MAX_TIMEOUT_SECONDS = 900
LAMBDA_MEMORY_RANGE = (128, 10240)


@dataclass(frozen=True)
class Step:
    """One step of a saga: an action and, unless it is past the pivot, its compensation.

    Handlers are Python dotted paths inside the Lambda code directory (``lambdas/``), in Lambda's
    ``module.function`` form, for example ``"order_fulfillment.payments.charge_payment"``.

    Attributes:
        name: Lower-case identifier, unique in the saga; used in state names and idempotency keys.
        action: Handler that performs the step.
        compensation: Handler that undoes the action. It must succeed when there is nothing to
            undo, because a timed-out or crashed action may or may not have taken effect.
        kind: ``COMPENSATABLE`` (default), ``PIVOT`` or ``RETRIABLE``.
        timeout_seconds: Step Functions ``TimeoutSeconds`` of one attempt of the action or of the
            compensation. Past it, the saga stops waiting and compensates.
        lambda_timeout_seconds: The Lambda function's own timeout. It must leave
            :data:`COLD_START_MARGIN_SECONDS` of ``timeout_seconds`` for a cold start, so that an
            attempt Step Functions gives up on has also been stopped by Lambda. Defaults to
            ``timeout_seconds - COLD_START_MARGIN_SECONDS``.
        retry: Retry policy of the action.
        compensation_retry: Retry policy of the compensation.
        budget_seconds: Longest time the step may take, all attempts and delays included; the
            retry policies' worst case must fit in it. Defaults to five minutes, six hours for
            retriable steps (they must eventually succeed).
        memory_size: Memory of the step's Lambda functions, in MiB.
        max_result_bytes: Largest action result kept in the execution state (it travels with
            every later step); a larger one fails the step, which then compensates.
        max_compensation_result_bytes: Largest compensation result kept; a larger one is
            replaced by its size (the undo already happened and must not run again).
    """

    name: str
    action: str
    compensation: str | None = None
    kind: StepKind = StepKind.COMPENSATABLE
    timeout_seconds: int = 10
    lambda_timeout_seconds: int | None = None
    retry: RetryPolicy | None = None
    compensation_retry: RetryPolicy = DEFAULT_COMPENSATION_RETRY
    budget_seconds: int | None = None
    memory_size: int = 256
    max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES
    max_compensation_result_bytes: int = DEFAULT_MAX_COMPENSATION_RESULT_BYTES
    #: Makes the step an asynchronous participant (see :class:`Callback`); ``None``: the
    #: state machine invokes the handler's Lambda and waits for its answer.
    callback: Callback | None = None

    def is_callback(self, phase: str) -> bool:
        """Whether ``phase`` (``"action"`` or ``"compensation"``) is answered through a queue."""
        if self.callback is None:
            return False
        return phase == "action" or self.callback.compensation

    def __post_init__(self) -> None:
        # Accept "pivot" as well as StepKind.PIVOT; anything else fails at synth, not silently.
        try:
            object.__setattr__(self, "kind", StepKind(self.kind))
        except ValueError:
            raise SagaDeclarationError(
                f"step '{self.name}': kind {self.kind!r} is not one of "
                f"{', '.join(k.value for k in StepKind)}"
            ) from None

    @property
    def effective_budget(self) -> int:
        """The step's budget in seconds: explicit, or the default for its kind."""
        if self.budget_seconds is not None:
            return self.budget_seconds
        if self.kind is StepKind.RETRIABLE:
            return DEFAULT_FORWARD_BUDGET_SECONDS
        return DEFAULT_STEP_BUDGET_SECONDS

    @property
    def effective_lambda_timeout(self) -> int:
        """The Lambda timeout in seconds, explicit or derived from the task timeout."""
        if self.lambda_timeout_seconds is not None:
            return self.lambda_timeout_seconds
        return self.timeout_seconds - COLD_START_MARGIN_SECONDS

    @property
    def effective_retry(self) -> RetryPolicy:
        """The action's retry policy; retriable steps default to retrying every error."""
        if self.retry is not None:
            return self.retry
        return DEFAULT_FORWARD_RETRY if self.kind is StepKind.RETRIABLE else RetryPolicy()

    def action_worst_case(self) -> float:
        """Longest the action can take, every attempt timing out and every delay at its max."""
        return self.effective_retry.worst_case_seconds(self.timeout_seconds)

    def compensation_worst_case(self) -> float:
        """Longest the compensation can take (zero without one)."""
        if not self.compensation:
            return 0.0
        return self.compensation_retry.worst_case_seconds(self.timeout_seconds)


@dataclass(frozen=True)
class ParallelGroup:
    """Steps that run at the same time, in one Step Functions ``Parallel`` state.

    Each branch is a :class:`Step` or a short chain of steps (a list). If any branch fails,
    Step Functions stops the others, and the saga compensates every step of the group (a step
    whose action never took effect is recorded as such and left alone), the branches'
    compensations in parallel, then the steps before the group in reverse order.

    Example::

        ParallelGroup("book_trip", branches=[
            Step("book_flight", action="trip.flights.book", compensation="trip.flights.cancel"),
            Step("book_hotel", action="trip.hotels.book", compensation="trip.hotels.cancel"),
        ])

    Attributes:
        name: Lower-case identifier, unique among the saga's steps and groups; names the
            ``Parallel`` state.
        branches: At least two branches, each a step or a list of steps.
        budget_seconds: Longest the group may take: the slowest branch's worst case (the sum
            of its steps' action worst cases) must fit in it. Default five minutes.
    """

    name: str
    branches: Sequence[Step | Sequence[Step]]
    budget_seconds: int = DEFAULT_STEP_BUDGET_SECONDS

    def __post_init__(self) -> None:
        chains = tuple(tuple(b) if isinstance(b, (list, tuple)) else (b,) for b in self.branches)
        object.__setattr__(self, "branches", chains)

    @property
    def chains(self) -> tuple[tuple[Step, ...], ...]:
        """The branches, each as a tuple of steps in order."""
        return self.branches  # type: ignore[return-value]

    @property
    def steps(self) -> tuple[Step, ...]:
        """Every step of the group, branch after branch, in declaration order."""
        return tuple(step for chain in self.chains for step in chain)

    def worst_case_seconds(self) -> float:
        """The slowest branch's action worst case."""
        return max((sum(s.action_worst_case() for s in chain) for chain in self.chains),
                   default=0.0)

    def compensation_worst_case_seconds(self) -> float:
        """The slowest branch's compensation worst case (branches compensate in parallel)."""
        return max((sum(s.compensation_worst_case() for s in chain) for chain in self.chains),
                   default=0.0)


Stage = Step | ParallelGroup


@dataclass(frozen=True)
class SagaDefinition:
    """A complete saga: its type name and its ordered steps.

    Constructing one validates it; an invalid declaration raises :class:`SagaDeclarationError`.

    Example::

        SagaDefinition(
            name="order_fulfillment",
            steps=[
                Step("reserve_inventory", action="order_fulfillment.inventory.reserve_inventory",
                     compensation="order_fulfillment.inventory.release_inventory"),
                Step("charge_payment", action="order_fulfillment.payments.charge_payment",
                     compensation="order_fulfillment.payments.refund_payment"),
            ],
        )
    """

    name: str
    #: The steps in order; a :class:`ParallelGroup` stands for its branches' steps. After
    #: construction ``steps`` lists every step flattened (a group's steps branch after branch)
    #: and ``stages`` keeps the declared shape.
    steps: Sequence[Step | ParallelGroup]
    description: str = ""
    #: Dotted path of the pydantic model of the saga's input, in the Lambda code
    #: (``"order_fulfillment.schema.OrderRequest"``). The API validates every start request
    #: against it: at the gateway (as a JSON Schema request model) and in the handler.
    #: ``None`` accepts any JSON object.
    input_model: str | None = None
    #: Largest saga input (as JSON) the first step accepts; a larger one is refused before any
    #: effect, whoever started the execution. Counts towards the worst-case state.
    max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES
    #: Standard (default) or Express state machine; see :class:`WorkflowType`.
    workflow: WorkflowType = WorkflowType.STANDARD
    #: How long a saga may stay running or compensating without progress (no step finishing)
    #: before the stuck detector reports it and ``SagasStuck`` counts it. Default 15 minutes.
    stuck_after_seconds: int = DEFAULT_STUCK_AFTER_SECONDS
    stages: tuple[Stage, ...] = field(init=False, default=())

    def __post_init__(self) -> None:
        stages = tuple(self.steps)
        object.__setattr__(self, "stages", stages)
        object.__setattr__(self, "steps", tuple(
            step for stage in stages
            for step in (stage.steps if isinstance(stage, ParallelGroup) else (stage,))))
        try:
            object.__setattr__(self, "workflow", WorkflowType(self.workflow))
        except ValueError:
            raise SagaDeclarationError(
                f"saga '{self.name}': workflow {self.workflow!r} is not one of "
                f"{', '.join(w.value for w in WorkflowType)}") from None
        problems = list(_problems(self))
        if problems:
            listing = "\n".join(f"  - {p}" for p in problems)
            raise SagaDeclarationError(f"saga '{self.name}' is not valid:\n{listing}")

    @property
    def groups(self) -> list[ParallelGroup]:
        """The saga's parallel groups, in order."""
        return [stage for stage in self.stages if isinstance(stage, ParallelGroup)]

    def group_of(self, step_name: str) -> ParallelGroup | None:
        """The group a step belongs to, or ``None`` for a step of the main chain."""
        return next((g for g in self.groups if step_name in {s.name for s in g.steps}), None)

    @property
    def pivot_index(self) -> int | None:
        """Index of the pivot step (in :attr:`steps`), or ``None`` if the saga has none."""
        for index, step in enumerate(self.steps):
            if step.kind is StepKind.PIVOT:
                return index
        return None

    def step(self, name: str) -> Step:
        """The step called ``name``."""
        for candidate in self.steps:
            if candidate.name == name:
                return candidate
        raise KeyError(f"saga '{self.name}' has no step '{name}'")

    @property
    def worst_case_state_bytes(self) -> int:
        """The largest execution state the declaration allows: the input, every action's and
        compensation's result at its cap, and the failure records with causes at their cap."""
        return (self.max_input_bytes
                + sum(s.max_result_bytes for s in self.steps)
                + sum(s.max_compensation_result_bytes for s in self.steps if s.compensation)
                + FAILURE_RECORDS_BYTES)

    def stuck_thresholds(self) -> StuckThresholds:
        """What the stuck detector compares against: the saga's threshold, and each callback
        task's own, by the task's state name."""
        callbacks: dict[str, int] = {}
        for step in self.steps:
            if step.callback is None or step.callback.stuck_after_seconds is None:
                continue
            for phase in ("action", "compensation"):
                if step.is_callback(phase):
                    callbacks[state_name(step.name, phase)] = step.callback.stuck_after_seconds
        return StuckThresholds(saga_seconds=self.stuck_after_seconds,
                               callback_seconds=callbacks)

    def worst_case_seconds(self) -> float:
        """Longest the saga can run: every action to the last, then every compensation, each
        at its retry worst case (a group counts its slowest branch)."""
        total = 0.0
        for stage in self.stages:
            if isinstance(stage, ParallelGroup):
                total += stage.worst_case_seconds() + stage.compensation_worst_case_seconds()
            else:
                total += stage.action_worst_case() + stage.compensation_worst_case()
        return total

    def undo_plan(self, step_name: str) -> list[str]:
        """The compensations still to run when ``step_name``'s compensation has failed, that
        one first: what a parked saga's message lists, in this one well-defined order.

        In the main chain: the steps before it, nearest first. In a group: the rest of its own
        branch (nearest first), then the group's other branches (each nearest first, last
        branch first), then the steps before the group, nearest first. The redrive accepts a
        message only in this order.
        """
        for index, stage in enumerate(self.stages):
            before = [s.name for s in _undo_order(self.stages[:index])]
            if isinstance(stage, Step):
                if stage.name == step_name:
                    return [step_name, *before]
                continue
            for chain in stage.chains:
                names = [s.name for s in chain]
                if step_name not in names:
                    continue
                own = [s.name for s in reversed(chain[:names.index(step_name)])
                       if s.compensation]
                others = [s.name for c in reversed(stage.chains) if c is not chain
                          for s in reversed(c) if s.compensation]
                return [step_name, *own, *others, *before]
        raise KeyError(f"saga '{self.name}' has no step '{step_name}'")

    def compensations_before(self, index: int) -> list[Step]:
        """Steps with a compensation at positions ``< index`` of :attr:`steps`, nearest first."""
        return [s for s in reversed(self.steps[:index]) if s.compensation]


def _undo_order(stages: Sequence[Stage]) -> list[Step]:
    """Steps with a compensation, last declared first (a group's last branch first)."""
    steps = [s for stage in stages
             for s in (stage.steps if isinstance(stage, ParallelGroup) else (stage,))]
    return [s for s in reversed(steps) if s.compensation]


def _problems(saga: SagaDefinition) -> list[str]:
    """Every reason the declaration is invalid, each with the step and the fix."""
    problems: list[str] = []
    if not _NAME.match(saga.name or ""):
        problems.append(
            f"saga name '{saga.name}': use 1-40 lower-case letters, digits or '_', starting with a "
            "letter (it becomes the saga type in the API, metrics and idempotency keys)"
        )
    if saga.input_model is not None and not _HANDLER.match(saga.input_model):
        problems.append(
            f"input_model '{saga.input_model}': give the dotted path of a pydantic model in the "
            "Lambda code, e.g. 'order_fulfillment.schema.OrderRequest'"
        )
    if not isinstance(saga.stuck_after_seconds, int) or saga.stuck_after_seconds < 1:
        problems.append(
            f"stuck_after_seconds={saga.stuck_after_seconds!r}: give the whole seconds a saga may "
            "go without progress before it is reported stuck (at least 1; default 900)")
    if not saga.steps:
        problems.append("no steps: declare at least one Step")
        return problems

    if not any(s.compensation for s in saga.steps):
        problems.append(
            "no step has a compensation: a saga of only retriable steps has nothing to undo and "
            "nothing to park; declare the steps before the point of no return COMPENSATABLE (or "
            "one PIVOT) with compensation='...', or run the steps as a plain Step Functions "
            "workflow"
        )

    seen: set[str] = set()
    pivots = [s.name for s in saga.steps if s.kind is StepKind.PIVOT]
    if len(pivots) > 1:
        problems.append(
            f"steps {', '.join(repr(p) for p in pivots)} are all pivots: a saga has at most one "
            "point of no return; make the earlier ones COMPENSATABLE or the later ones RETRIABLE"
        )
    first_pivot = saga.pivot_index
    first_retriable = next(
        (i for i, s in enumerate(saga.steps) if s.kind is StepKind.RETRIABLE), None
    )

    for index, step in enumerate(saga.steps):
        where = f"step '{step.name}'"
        if not _NAME.match(step.name or ""):
            problems.append(
                f"{where}: name must be 1-40 lower-case letters, digits or '_', starting with a letter"
            )
        if step.name in seen:
            problems.append(f"{where}: duplicate step name; give each step a unique name")
        seen.add(step.name)
        for role, handler in (("action", step.action), ("compensation", step.compensation)):
            if handler is not None and not _HANDLER.match(handler):
                problems.append(
                    f"{where}: {role} handler '{handler}' is not a 'module.function' path inside "
                    "lambdas/, e.g. 'order_fulfillment.payments.charge_payment'"
                )

        if step.kind is StepKind.COMPENSATABLE:
            if not step.compensation:
                problems.append(
                    f"{where}: compensatable step has no compensation; add compensation='...' or "
                    "declare it kind=StepKind.RETRIABLE after the pivot"
                )
            if first_pivot is not None and index > first_pivot:
                problems.append(
                    f"{where}: compensatable step after the pivot '{saga.steps[first_pivot].name}' "
                    "would never be compensated; move it before the pivot or make it RETRIABLE"
                )
            if first_retriable is not None and index > first_retriable:
                problems.append(
                    f"{where}: compensatable step after the retriable step "
                    f"'{saga.steps[first_retriable].name}'; retriable steps must come last"
                )
        elif step.kind is StepKind.PIVOT and not step.compensation:
            problems.append(
                f"{where}: the pivot has no compensation; add compensation='...' (it runs only "
                "if the pivot itself fails or times out, when its effect may already exist)"
            )
        elif step.kind is StepKind.RETRIABLE:
            if step.compensation:
                problems.append(
                    f"{where}: retriable steps are never compensated; remove compensation='...' "
                    "or make the step COMPENSATABLE and move it before the pivot"
                )
            if first_pivot is not None and index < first_pivot:
                problems.append(
                    f"{where}: retriable step before the pivot '{saga.steps[first_pivot].name}'; "
                    "move it after the pivot or make it COMPENSATABLE"
                )

        problems.extend(_timing_problems(where, step))
        problems.extend(_limit_problems(where, step))
        problems.extend(_callback_problems(where, step))
    problems.extend(_group_problems(saga))
    problems.extend(_name_collisions(saga))
    problems.extend(_state_size_problems(saga))
    problems.extend(_express_problems(saga))
    return problems


def _group_problems(saga: SagaDefinition) -> list[str]:
    problems: list[str] = []
    for group in saga.groups:
        where = f"group '{group.name}'"
        if not _NAME.match(group.name or ""):
            problems.append(f"{where}: name must be 1-40 lower-case letters, digits or '_', "
                            "starting with a letter")
        if len(group.chains) < 2:
            problems.append(f"{where}: a parallel group needs at least two branches; declare a "
                            "single branch as plain steps")
        for chain in group.chains:
            if not chain or not all(isinstance(s, Step) for s in chain):
                problems.append(f"{where}: each branch is a Step or a non-empty list of Steps")
        for step in group.steps:
            if isinstance(step, Step) and step.kind is not StepKind.COMPENSATABLE:
                problems.append(
                    f"{where}, step '{step.name}': a {step.kind.value} step cannot run in a "
                    "parallel group (a sibling may fail after it, and a pivot or retriable step "
                    "is never undone); move it after the group")
        worst = group.worst_case_seconds() if all(
            isinstance(s, Step) for s in group.steps) else 0.0
        if worst > group.budget_seconds:
            slowest = max(group.chains, key=lambda c: sum(s.action_worst_case() for s in c))
            problems.append(
                f"{where}: worst case is {worst:.0f}s (branch "
                f"{' -> '.join(s.name for s in slowest)}), over the group budget of "
                f"{group.budget_seconds}s; lower those steps' timeouts or retries, or raise "
                "budget_seconds")
    return problems


def _callback_problems(where: str, step: Step) -> list[str]:
    callback = step.callback
    if callback is None:
        return []
    problems: list[str] = []
    if step.kind is StepKind.RETRIABLE:
        problems.append(f"{where}: a retriable step cannot be a callback step in this version; "
                        "make it synchronous")
    if callback.compensation and not step.compensation:
        problems.append(f"{where}: Callback(compensation=True) but the step has no compensation")
    heartbeat = callback.heartbeat_seconds
    if heartbeat is not None and not 1 <= heartbeat < step.timeout_seconds:
        problems.append(
            f"{where}: heartbeat_seconds={heartbeat} must be at least 1 and below "
            f"timeout_seconds={step.timeout_seconds} (the longest the saga waits for the reply)")
    if not 1 <= callback.batch_size <= 10:
        problems.append(f"{where}: Callback batch_size={callback.batch_size}; use 1 to 10")
    if callback.max_receive_count < 1:
        problems.append(f"{where}: Callback max_receive_count must be at least 1")
    stuck = callback.stuck_after_seconds
    if stuck is not None and not 1 <= stuck < step.timeout_seconds:
        problems.append(
            f"{where}: Callback stuck_after_seconds={stuck} must be at least 1 and below "
            f"timeout_seconds={step.timeout_seconds} (past the timeout the saga no longer waits: "
            "it compensates); lower it, or leave it out to use the saga's stuck_after_seconds")
    return problems


def _express_problems(saga: SagaDefinition) -> list[str]:
    if saga.workflow is not WorkflowType.EXPRESS:
        return []
    problems = [
        f"step '{s.name}': Express workflows cannot wait for a callback (there is no "
        "'.waitForTaskToken' integration in Express); make the step synchronous or deploy the "
        "saga as workflow=WorkflowType.STANDARD"
        for s in saga.steps if s.callback is not None
    ]
    worst = saga.worst_case_seconds()
    if worst > EXPRESS_MAX_SECONDS:
        costs = []
        for stage in saga.stages:
            if isinstance(stage, ParallelGroup):
                costs.append((stage.worst_case_seconds() + stage.compensation_worst_case_seconds(),
                              f"group '{stage.name}'"))
            else:
                costs.append((stage.action_worst_case() + stage.compensation_worst_case(),
                              f"step '{stage.name}'"))
        largest = sorted(costs, reverse=True)[:3]
        problems.append(
            f"worst case is {worst:.0f}s (every action, then every compensation, at its retry "
            f"worst case), over Express's limit of {EXPRESS_MAX_SECONDS}s; the largest are "
            f"{', '.join(f'{name} ({cost:.0f}s)' for cost, name in largest)}: lower their "
            "timeout_seconds or retry max_attempts / max_delay_seconds, or deploy the saga as "
            "workflow=WorkflowType.STANDARD")
    return problems


def _state_size_problems(saga: SagaDefinition) -> list[str]:
    problems: list[str] = []
    caps = [("max_input_bytes", saga.max_input_bytes)]
    for step in saga.steps:
        caps.append((f"step '{step.name}' max_result_bytes", step.max_result_bytes))
        if step.compensation:
            caps.append((f"step '{step.name}' max_compensation_result_bytes",
                         step.max_compensation_result_bytes))
    for name, value in caps:
        if value < 256:
            problems.append(f"{name}={value}; use at least 256 bytes")
    worst = saga.worst_case_state_bytes
    allowed = STATE_LIMIT_BYTES - STATE_MARGIN_BYTES
    if worst > allowed:
        largest = sorted(saga.steps, key=lambda s: s.max_result_bytes, reverse=True)[:3]
        problems.append(
            f"worst-case execution state is {worst // 1024} KiB (input {saga.max_input_bytes // 1024} "
            f"KiB + action results {sum(s.max_result_bytes for s in saga.steps) // 1024} KiB + "
            "compensation results "
            f"{sum(s.max_compensation_result_bytes for s in saga.steps if s.compensation) // 1024} "
            f"KiB + {FAILURE_RECORDS_BYTES // 1024} KiB of failure records), over Step Functions' "
            f"{STATE_LIMIT_BYTES // 1024} KiB limit less a {STATE_MARGIN_BYTES // 1024} KiB margin; "
            "an overflow mid-saga (States.DataLimitExceeded) cannot be compensated. Lower "
            f"max_result_bytes of the largest steps ({', '.join(repr(s.name) for s in largest)}), "
            "max_compensation_result_bytes or max_input_bytes by "
            f"{(worst - allowed + 1023) // 1024} KiB in all (return ids, not documents)"
        )
    return problems


def _limit_problems(where: str, step: Step) -> list[str]:
    problems: list[str] = []
    if step.effective_lambda_timeout > LAMBDA_MAX_TIMEOUT_SECONDS:
        problems.append(
            f"{where}: Lambda timeout {step.effective_lambda_timeout}s is over Lambda's maximum of "
            f"{LAMBDA_MAX_TIMEOUT_SECONDS}s; split the step or lower timeout_seconds"
        )
    low, high = LAMBDA_MEMORY_RANGE
    if not low <= step.memory_size <= high:
        problems.append(f"{where}: memory_size={step.memory_size}; use {low} to {high} MiB")
    if step.kind is not StepKind.RETRIABLE:
        catch_all = {"States.ALL", "States.Timeout", "States.TaskFailed", "BusinessError"}
        listed = sorted(catch_all & set(step.effective_retry.transient_errors))
        if listed:
            problems.append(
                f"{where}: action retry lists {', '.join(listed)}, which are not transient; an "
                "action before the pivot must compensate on them, so list only transient errors"
            )
    if step.compensation and step.compensation_retry.max_attempts < 1:
        problems.append(
            f"{where}: compensation_retry.max_attempts must be at least 1: compensations are "
            "retried before they are parked"
        )
    return problems


def _name_collisions(saga: SagaDefinition) -> list[str]:
    """State names and construct ids derived from step names must not collide."""
    problems: list[str] = []
    owners: dict[str, str] = {}
    derived: list[tuple[str, list[str]]] = [
        (f"step '{step.name}'", [step.name, f"{step.name}_failed", f"compensate_{step.name}",
                                 f"compensate_{step.name}_failed", f"{step.name}_abandoned",
                                 f"compensate_{step.name}_abandoned",
                                 "pascal:" + "".join(p.capitalize() for p in step.name.split("_"))])
        for step in saga.steps
    ]
    derived += [(f"group '{group.name}'", [
        f"{prefix}{group.name}{suffix}" for prefix in ("", "compensate_")
        for suffix in ("", "_failed", "_failure", "_error")])
        for group in saga.groups]
    for owner, names in derived:
        for name in names:
            other = owners.setdefault(name, owner)
            if other != owner:
                problems.append(
                    f"{owner}: its name collides with {other} in the generated state names or "
                    f"construct ids ({name.removeprefix('pascal:')}); rename one"
                )
                break
    return problems


def _timing_problems(where: str, step: Step) -> list[str]:
    problems: list[str] = []
    shortest = COLD_START_MARGIN_SECONDS + 1
    if step.timeout_seconds < shortest:
        problems.append(
            f"{where}: timeout_seconds={step.timeout_seconds}; use at least {shortest}: the "
            f"Lambda timeout (at least 1s) plus {COLD_START_MARGIN_SECONDS}s for a cold start"
        )
        return problems
    lambda_timeout = step.effective_lambda_timeout
    longest = step.timeout_seconds - COLD_START_MARGIN_SECONDS
    if lambda_timeout < 1 or lambda_timeout > longest:
        problems.append(
            f"{where}: Lambda timeout {lambda_timeout}s leaves less than "
            f"{COLD_START_MARGIN_SECONDS}s of the task timeout {step.timeout_seconds}s for a cold "
            f"start; set lambda_timeout_seconds to at most {longest} "
            "(or raise timeout_seconds), so Lambda stops an attempt before Step Functions gives "
            "up on it"
        )
    policies = [("action", step.effective_retry)]
    if step.compensation:
        policies.append(("compensation", step.compensation_retry))
    for role, policy in policies:
        problems.extend(_retry_problems(where, role, policy))
        worst = policy.worst_case_seconds(step.timeout_seconds)
        if worst > step.effective_budget:
            problems.append(
                f"{where}: {role} retry worst case is {worst:.0f}s "
                f"({policy.max_attempts + 1} attempts x {step.timeout_seconds}s + "
                f"{sum(policy.delays()):.0f}s of backoff), over the step budget of "
                f"{step.effective_budget}s; lower max_attempts, max_delay_seconds or timeout_seconds, "
                "or raise budget_seconds"
            )
    return problems


def _retry_problems(where: str, role: str, policy: RetryPolicy) -> list[str]:
    problems: list[str] = []
    if policy.max_attempts < 0:
        problems.append(f"{where}: {role} retry max_attempts must be 0 or more")
    if policy.interval_seconds < 1:
        problems.append(f"{where}: {role} retry interval_seconds must be at least 1")
    if policy.backoff_rate < 1.0:
        problems.append(f"{where}: {role} retry backoff_rate must be at least 1.0")
    if policy.max_delay_seconds < policy.interval_seconds:
        problems.append(
            f"{where}: {role} retry max_delay_seconds is below interval_seconds; raise it"
        )
    for name in policy.transient_errors:
        if not _ERROR_NAME.match(name):
            problems.append(
                f"{where}: {role} transient error '{name}' is not an error name; use the class "
                "name your handler raises, e.g. 'TransientStepError'"
            )
    return problems


def missing_handlers(saga: SagaDefinition, code_dir: Path) -> list[str]:
    """Handlers the declaration names that ``code_dir`` does not define, each with the fix.

    A text check (the handler modules are not imported at synth: they need the Lambda
    environment), enough to catch a typo before it becomes a CompensationFailed in production.
    """
    problems: list[str] = []
    for step in saga.steps:
        for role, handler in (("action", step.action), ("compensation", step.compensation)):
            if not handler:
                continue
            module, _, function = handler.rpartition(".")
            path = code_dir.joinpath(*module.split(".")).with_suffix(".py")
            if not path.is_file():
                problems.append(
                    f"step '{step.name}': {role} handler '{handler}': no module {path}; fix the "
                    "path or add the module"
                )
                continue
            source = path.read_text(encoding="utf-8")
            if not re.search(rf"^(def {function}\(|{function}\s*=)", source, re.MULTILINE):
                problems.append(
                    f"step '{step.name}': {role} handler '{handler}': {path.name} defines no "
                    f"'{function}'"
                )
    return problems
