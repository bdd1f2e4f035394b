"""``saga_step``: the decorator every action and compensation handler is wrapped in.

It turns a plain function of a :class:`StepContext` into a Lambda handler that

* is idempotent on (saga type, saga id, step, phase) with Powertools idempotency on DynamoDB,
  so a Step Functions retry or a duplicate delivery returns the stored result instead of
  repeating the side effect;
* goes through the late-action barrier (see :mod:`saga_kit.runtime.barrier`);
* logs with Powertools Logger using the saga id as correlation id, and emits ``StepSucceeded`` or
  ``StepFailed`` (``Compensation...`` for a compensation) with the duration, the saga type and
  step as dimensions.
"""

from __future__ import annotations

import functools
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import boto3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyPersistenceLayerError,
)
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from saga_kit.contract import (
    DEFAULT_MAX_INPUT_BYTES,
    DEFAULT_MAX_RESULT_BYTES,
    PHASES,
    RESERVED_STATE_KEYS,
    Env,
    Metric,
)
from saga_kit.runtime import store
from saga_kit.runtime.barrier import StepBarrier
from saga_kit.runtime.callback import CallbackTask, is_command_batch, serve_commands
from saga_kit.runtime.errors import (
    BusinessError,
    LateActionRefused,
    MalformedStepEvent,
    StepError,
    TransientStepError,
)
from saga_kit.runtime.metrics import MetricUnit, saga_metrics
from saga_kit.runtime.version import check_kit_version

#: How long a completed step's stored result answers duplicates.
IDEMPOTENCY_TTL_SECONDS = 15 * 24 * 3600  # longer than a parked message can live (14 days)

logger = Logger()
_clients_lock = threading.Lock()
_clients: dict[str, Any] = {}


def aws_client(service: str) -> Any:
    """One boto3 client per service and process: creating clients is slow, and they are
    thread-safe."""
    with _clients_lock:
        if service not in _clients:
            _clients[service] = boto3.client(service)
        return _clients[service]


def dynamodb_client() -> Any:
    """The process's DynamoDB client."""
    return aws_client("dynamodb")


class TransactionConditionFailed(BusinessError):
    """A condition on one of the handler's own transaction items failed.

    Attributes:
        failed_items: Indexes (in the list the handler passed) whose condition failed.
    """

    def __init__(self, failed_items: list[int]):
        super().__init__(f"transaction condition failed on item(s) {failed_items}")
        self.failed_items = failed_items


@dataclass
class StepContext:
    """What a step handler knows about the saga it is working for.

    Attributes:
        saga_type: The saga's declared name, e.g. ``order_fulfillment``.
        saga_id: The saga's id: the input's ``saga_id`` or else the execution name.
        step: This step's name.
        phase: ``"action"`` or ``"compensation"``.
        execution_arn: The Step Functions execution running the saga.
        input: The saga's input, without the keys the state machine adds.
        results: The results of the actions that already succeeded, by step name.
        barrier: This step's late-action barrier.
        lambda_context: The Lambda context object.
    """

    saga_type: str
    saga_id: str
    step: str
    phase: str
    execution_arn: str
    input: dict[str, Any]
    results: dict[str, Any]
    barrier: StepBarrier
    lambda_context: Any = None
    #: How the action's barrier is written: ``False`` by a request before the handler runs,
    #: ``True`` inside :meth:`transact_write`, ``None`` not at all (no compensation exists).
    barrier_in_transaction: bool | None = False
    #: Whether this invocation ran the step (``False``: Powertools answered a duplicate from
    #: the stored result).
    executed: bool = False
    #: For a callback step, the Step Functions task the command belongs to.
    callback: CallbackTask | None = None

    @property
    def task_token(self) -> str | None:
        """The task token of a callback step's command (``None`` for a synchronous step)."""
        return self.callback.token if self.callback is not None else None

    def heartbeat(self) -> None:
        """Tells Step Functions that a callback step's long work goes on; call it more often
        than the step's ``heartbeat_seconds``. A no-op for a synchronous step.

        Raises:
            CallbackTaskClosed: the saga no longer waits for this step (timed out, stopped with
                its group): stop working. Effects made anyway are refused by the barrier or
                undone by the step's compensation.
        """
        if self.callback is not None:
            self.callback.heartbeat()

    @property
    def idempotency_key(self) -> str:
        """A key that is the same for every attempt and duplicate of this step of this saga:
        pass it to an outside service that deduplicates by key (a card processor's
        ``Idempotency-Key``), because Powertools' record alone cannot stop a repeat there.

        When a handler raises after its outside call took effect (a crash, a timeout), Powertools
        deletes the in-progress record so the retry runs again; only the outside service,
        seeing the same key, can answer the retry without charging twice. At most 182
        characters: ``<saga type>:<saga id>:<step>:<phase>``.
        """
        return f"{self.saga_type}:{self.saga_id}:{self.step}:{self.phase}"

    def result_of(self, step: str) -> dict[str, Any]:
        """The result an earlier step's action returned (empty if it has none yet)."""
        return self.results.get(step) or {}

    def transact_write(self, items: list[dict[str, Any]]) -> None:
        """Runs DynamoDB ``TransactWriteItems`` for the side effect of this step.

        For an action, the barrier's condition check joins the transaction, so the effect
        happens only if the step has not been compensated meanwhile.

        Raises:
            LateActionRefused: the step was compensated before the transaction committed.
            TransactionConditionFailed: a condition on one of ``items`` failed.
        """
        guarded = list(items)
        if self.phase == "action" and self.barrier_in_transaction is True:
            guarded.append(self.barrier.transactional_entry())
        elif self.phase == "action" and self.barrier_in_transaction is False:
            guarded.append(self.barrier.condition_check())
        try:
            dynamodb_client().transact_write_items(TransactItems=guarded)
        except ClientError as error:
            if error.response["Error"]["Code"] != "TransactionCanceledException":
                raise
            reasons = error.response.get("CancellationReasons") or []
            codes = [r.get("Code") for r in reasons]
            if len(guarded) > len(items) and len(codes) == len(guarded) and (
                codes[-1] == "ConditionalCheckFailed"
            ):
                raise LateActionRefused(
                    f"step {self.step} of saga {self.saga_id} was compensated while this action "
                    "ran; its effect was not applied"
                ) from None
            failed = [i for i, code in enumerate(codes[: len(items)]) if code == "ConditionalCheckFailed"]
            if failed:
                raise TransactionConditionFailed(failed) from None
            raise TransientStepError(f"transaction cancelled: {codes}") from None


StepHandler = Callable[[StepContext], "dict[str, Any] | None"]


class ResultTooLarge(StepError):
    """The action's result is too large to keep in the execution state (compensated)."""


class InputTooLarge(StepError):
    """The saga input is over the declared ``max_input_bytes``: refused before any effect.

    Raised by every action (the first one in practice), so an execution started directly with
    an oversized input compensates at once, having done nothing, instead of overflowing Step
    Functions' state limit halfway, where no compensation could run.
    """


def _json_size(value: Any) -> int:
    return len(json.dumps(value, default=str, separators=(",", ":")).encode())


def saga_step(
    handler: StepHandler | None = None, *, transactional: bool = False
) -> Any:
    """Wraps a step function into an idempotent, barrier-guarded, observable Lambda handler.

    The wrapped function receives a :class:`StepContext` and returns a JSON-serialisable dict
    (or ``None``), which Step Functions stores under ``$.results.<step>`` (actions) or
    ``$.compensations.<step>`` (compensations). For a compensation whose action never took
    effect, the function is not called at all: the runtime records that nothing was undone.

    Raise :class:`BusinessError` for a definitive failure (compensate now) and
    :class:`TransientStepError` for one worth retrying.

    Args:
        transactional: The handler promises that every side effect of its action goes through
            :meth:`StepContext.transact_write`. The barrier is then written inside that very
            transaction instead of by a separate request before it: one DynamoDB round trip
            less, and "the action took effect" becomes exact. Leave it off for participants
            that are not DynamoDB.

    Example::

        @saga_step(transactional=True)
        def charge_payment(ctx: StepContext) -> dict:
            ctx.transact_write([...])
            return {"charge_id": ctx.saga_id}
    """
    if handler is None:
        return functools.partial(saga_step, transactional=transactional)
    return _wrap(handler, transactional)


def _wrap(handler: StepHandler, transactional: bool) -> Callable[[dict[str, Any], Any], Any]:
    lock = threading.Lock()
    persistence: dict[tuple[str, str], DynamoDBPersistenceLayer] = {}

    def persistence_layer(key_prefix: str) -> DynamoDBPersistenceLayer:
        # Built on first use, not at import: the table name comes from the function's
        # environment. Kept per table and key prefix: Powertools' configure() writes the key
        # prefix into the layer, so two sagas, or two steps, sharing handler code (one process in
        # the local cloud) must not share a layer, or they would write each other's records.
        slot = (os.environ[Env.IDEMPOTENCY_TABLE], key_prefix)
        with lock:
            if slot not in persistence:
                persistence[slot] = DynamoDBPersistenceLayer(
                    table_name=slot[0], boto3_client=dynamodb_client())
            return persistence[slot]

    def run_once(key: dict[str, str], *, ctx: StepContext) -> dict[str, Any]:
        ctx.executed = True
        limit = int(os.environ.get(Env.MAX_RESULT_BYTES, DEFAULT_MAX_RESULT_BYTES))
        if ctx.phase == "action":
            if ctx.barrier_in_transaction is False:
                ctx.barrier.enter_action()
            result = handler(ctx) or {}
            size = _json_size(result)
            if size > limit:
                raise ResultTooLarge(
                    f"{ctx.step} returned {size} bytes; keep results under {limit} "
                    "(max_result_bytes: ids and amounts, not documents)"
                )
            return result
        if not ctx.barrier.enter_compensation():
            # The result is the record: Powertools stores it with the idempotency key, and Step
            # Functions under $.compensations.<step>.
            logger.info("action never took effect; nothing to undo")
            return {"undone": False, "reason": "action never took effect"}
        result = {"undone": True, **(handler(ctx) or {})}
        size = _json_size(result)
        if size > limit:
            # The undo happened: failing now would only make a retry undo it again. Keep the
            # state bounded instead, and say what was dropped.
            logger.warning(f"compensation result of {size} bytes replaced by its size "
                           f"(max_compensation_result_bytes is {limit})")
            return {"undone": True, "result_dropped_bytes": size}
        return result

    @functools.wraps(handler)
    def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        check_kit_version()
        if is_command_batch(event):  # a callback step's worker, fed by the step's queue
            return serve_commands(event, context, run_step, aws_client("stepfunctions"))
        return run_step(event, context, None)

    def run_step(event: dict[str, Any], context: Any, callback: CallbackTask | None
                 ) -> dict[str, Any]:
        try:
            ctx = _context_from_event(event, context)
        except SagaIdMismatch as error:
            if isinstance(event, dict) and event.get("phase") == "compensation":
                # The action was refused for the same reason before doing anything.
                return {"undone": False, "reason": str(error)}
            raise
        ctx.callback = callback
        if ctx.phase == "action" and os.environ.get(Env.HAS_COMPENSATION) == "false":
            ctx.barrier_in_transaction = None  # nothing will ever compensate this step
        elif ctx.phase == "action" and transactional:
            ctx.barrier_in_transaction = True
        logger.thread_safe_append_keys(
            correlation_id=ctx.saga_id,
            saga_type=ctx.saga_type,
            saga_id=ctx.saga_id,
            step=ctx.step,
            phase=ctx.phase,
        )
        started = time.perf_counter()
        started_at = datetime.now(UTC)
        outcome = "Crashed"
        error_text: str | None = None
        try:
            if ctx.phase == "action":
                _refuse_oversized_input(ctx)
            # A config per invocation: it carries this invocation's Lambda context, which sets
            # when an in-progress record expires.
            config = IdempotencyConfig(expires_after_seconds=IDEMPOTENCY_TTL_SECONDS)
            config.register_lambda_context(context)
            # Not the function name: keys must survive a deploy that replaces the function.
            key_prefix = idempotency_key_prefix(ctx.saga_type, ctx.step, ctx.phase)
            guarded = idempotent_function(
                data_keyword_argument="key",
                config=config,
                persistence_store=persistence_layer(key_prefix),
                key_prefix=key_prefix,
            )(run_once)
            result = guarded(key=idempotency_data(ctx.saga_type, ctx.saga_id, ctx.step, ctx.phase),
                             ctx=ctx)
            outcome = "Succeeded"
            logger.info(f"{ctx.phase} succeeded")
            return result
        except BusinessError as error:
            outcome = "BusinessError"
            error_text = f"{type(error).__name__}: {error}"
            logger.warning(f"{ctx.phase} failed: {error}", extra={"error": type(error).__name__})
            raise
        except IdempotencyAlreadyInProgressError:
            # The same step of the same saga is running right now (a retry that overtook a slow
            # attempt): wait and retry, never compensate for it.
            outcome = "InProgress"
            logger.warning(f"{ctx.phase} already in progress; will be retried")
            raise TransientStepError(f"{ctx.step} {ctx.phase} already in progress") from None
        except IdempotencyPersistenceLayerError as error:
            outcome = "TransientError"
            logger.warning(f"idempotency store unavailable; will be retried: {error}")
            raise TransientStepError(f"idempotency store unavailable: {error}") from None
        except TransientStepError as error:
            outcome = "TransientError"
            error_text = f"{type(error).__name__}: {error}"
            logger.warning(f"{ctx.phase} will be retried: {error}")
            if type(error) is TransientStepError:
                raise
            raise _as_retryable(error) from error
        except (ClientError, BotoCoreError) as error:
            error_text = f"{type(error).__name__}: {error}"
            if not _is_transient_aws_error(error):
                logger.exception(f"{ctx.phase} crashed")
                raise
            outcome = "TransientError"
            logger.warning(f"{ctx.phase} will be retried: {error}")
            raise _as_retryable(error) from error
        except LateActionRefused as error:
            outcome = "LateActionRefused"
            error_text = f"{type(error).__name__}: {error}"
            logger.warning(str(error))
            raise
        except StepError as error:
            outcome = "Rejected"
            error_text = f"{type(error).__name__}: {error}"
            raise
        except Exception as error:
            error_text = f"{type(error).__name__}: {error}"
            logger.exception(f"{ctx.phase} crashed")
            raise
        finally:
            _record_in_store(ctx, event, outcome, started_at, error_text)
            _count_invocation(ctx, outcome, time.perf_counter() - started)
            logger.thread_safe_clear_keys()

    return lambda_handler


def _refuse_oversized_input(ctx: StepContext) -> None:
    limit = int(os.environ.get(Env.MAX_INPUT_BYTES, DEFAULT_MAX_INPUT_BYTES))
    size = _json_size(ctx.input)
    if size > limit:
        raise InputTooLarge(
            f"the saga input is {size} bytes, over the saga's max_input_bytes of {limit}; nothing "
            "was done. Send ids and amounts, not documents (or raise max_input_bytes)"
        )


#: The metrics of one invocation, by phase: (succeeded, failed, duration).
INVOCATION_METRICS = {
    "action": (Metric.STEP_SUCCEEDED, Metric.STEP_FAILED, Metric.STEP_DURATION),
    "compensation": (Metric.COMPENSATION_SUCCEEDED, Metric.COMPENSATION_FAILED,
                     Metric.COMPENSATION_DURATION),
}


def _count_invocation(ctx: StepContext, outcome: str, seconds: float) -> None:
    """One EMF document per invocation that ran: succeeded or failed, and how long it took.

    A duplicate answered from its idempotency record ran nothing and counts nothing, so a
    message delivered twice is counted once. Every failed attempt counts (a transient error
    Step Functions retries is a failure the participant's owner wants to see); how the saga
    ended is counted once, from the saga store (``saga_kit.runtime.outcomes``).
    """
    if outcome == "Succeeded" and not ctx.executed:
        return
    succeeded, failed, duration = INVOCATION_METRICS[ctx.phase]
    metrics = saga_metrics(ctx.saga_type, ctx.step)
    metrics.add_metric(name=succeeded if outcome == "Succeeded" else failed,
                       unit=MetricUnit.Count, value=1)
    metrics.add_metric(name=duration, unit=MetricUnit.Milliseconds, value=round(seconds * 1000, 3))
    metrics.flush_metrics()


#: How each metric outcome reads in the saga store's log.
STORE_OUTCOMES = {
    "Succeeded": "succeeded",
    "BusinessError": "business_error",
    "TransientError": "transient_error",
    "InProgress": "transient_error",
    "LateActionRefused": "refused",
    "Rejected": "rejected",
    "Crashed": "crashed",
}


def _record_in_store(ctx: StepContext, event: dict[str, Any], outcome: str,
                     started_at: datetime, error_text: str | None) -> None:
    failure = event["state"].get("failure") if ctx.phase == "compensation" else None
    store.record_invocation(
        dynamodb_client(),
        saga_type=ctx.saga_type,
        saga_id=ctx.saga_id,
        execution_arn=ctx.execution_arn,
        step=ctx.step,
        phase=ctx.phase,
        outcome=STORE_OUTCOMES[outcome],
        started=started_at,
        ended=datetime.now(UTC),
        error=error_text,
        duplicate=outcome == "Succeeded" and not ctx.executed,
        failure=failure if isinstance(failure, dict) else None,
    )


#: AWS error codes that mean "try again later", whatever the service.
TRANSIENT_AWS_ERROR_CODES = frozenset({
    "ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded",
    "ProvisionedThroughputExceededException", "TransactionConflictException",
    "InternalServerError", "InternalFailure", "ServiceUnavailable", "ServiceUnavailableException",
    "RequestTimeout", "RequestTimeoutException",
})


def _is_transient_aws_error(error: Exception) -> bool:
    if isinstance(error, ClientError):
        return error.response.get("Error", {}).get("Code") in TRANSIENT_AWS_ERROR_CODES
    return isinstance(error, (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError))


def _as_retryable(error: Exception) -> Exception:
    """Step Functions matches the exact error name, so every transient failure surfaces as
    ``TransientStepError`` (the name in every step's default retry list); the original class
    stays in the message."""
    return TransientStepError(f"{type(error).__name__}: {error}")


def idempotency_key_prefix(saga_type: str, step: str, phase: str) -> str:
    """The Powertools key prefix of one step's handler (the hash of :func:`idempotency_data`
    follows it)."""
    return f"{saga_type}.{step}.{phase}"


def idempotency_data(saga_type: str, saga_id: str, step: str, phase: str) -> dict[str, str]:
    """What a handler's idempotency key is the hash of: one step, one phase, one saga."""
    return {"saga_type": saga_type, "saga_id": saga_id, "step": step, "phase": phase}


class SagaIdMismatch(MalformedStepEvent):
    """The input's saga_id is not the execution's name."""


def _context_from_event(event: Any, lambda_context: Any) -> StepContext:
    """Reads the event the state machine sends (see ``saga_kit/cdk/construct.py``)."""
    if not isinstance(event, dict):
        raise MalformedStepEvent(f"expected a JSON object, got {type(event).__name__}")
    missing = [k for k in ("saga_type", "step", "phase", "execution_name", "state") if k not in event]
    if missing:
        raise MalformedStepEvent(f"step event lacks {', '.join(missing)}")
    if event["phase"] not in PHASES:
        raise MalformedStepEvent(f"phase must be one of {PHASES}, got {event['phase']!r}")
    expected_step = os.environ.get(Env.STEP)
    if expected_step and expected_step != event["step"]:
        raise MalformedStepEvent(
            f"this function handles step {expected_step!r}, not {event['step']!r}"
        )
    state = event["state"]
    if not isinstance(state, dict):
        raise MalformedStepEvent("the saga state must be a JSON object")
    execution_name = event["execution_name"]
    saga_id = state.get("saga_id") or execution_name
    if saga_id != execution_name:
        # Execution names are unique per state machine, so binding the saga id to the name
        # means two executions can never act (or compensate) for the same saga.
        raise SagaIdMismatch(
            f"saga_id {saga_id!r} differs from the execution name {execution_name!r}; start the "
            "execution with name=<saga id> (or leave saga_id out of the input)"
        )
    if not isinstance(saga_id, str) or not 0 < len(saga_id) <= 80:
        raise MalformedStepEvent("saga_id must be a string of 1 to 80 characters")
    for key in ("results", "compensations"):
        if key in state and not isinstance(state[key], dict):
            raise MalformedStepEvent(f"the saga input must not set {key!r}: the saga owns that key")
    saga_type = event["saga_type"]
    return StepContext(
        saga_type=saga_type,
        saga_id=saga_id,
        step=event["step"],
        phase=event["phase"],
        execution_arn=event.get("execution_arn", ""),
        input={k: v for k, v in state.items() if k not in RESERVED_STATE_KEYS},
        results=state.get("results") or {},
        barrier=StepBarrier(
            dynamodb_client(), os.environ[Env.BARRIER_TABLE], saga_type, saga_id, event["step"]
        ),
        lambda_context=lambda_context,
    )
