"""The small, reversible changes to moto that LocalCloud needs (moto 5.2.5).

Each function is a context manager: the change holds inside the ``with`` block and the exact
previous attribute is put back on exit.
"""

from __future__ import annotations

import copy
import functools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

from saga_kit.local_cloud._patching import patched


@contextmanager
def state_machines_in_executing_backend() -> Iterator[None]:
    """Make CloudFormation create state machines where the executing Step Functions API looks.

    ``moto.stepfunctions.models.StateMachine``'s create/update/delete CloudFormation handlers
    look up the module global ``stepfunctions_backends`` at call time, and nothing else in that
    module reads it. With ``execute_state_machine`` on, the API serves
    ``stepfunctions_parser_backends`` instead, so without this the API answers
    ``StateMachineDoesNotExist`` for every machine the stack created. Rebinding that one global
    moves exactly the CloudFormation handlers; ``moto.stepfunctions.stepfunctions_backends`` and
    the responses module keep their own references.
    """
    from moto.stepfunctions import models as sfn_models
    from moto.stepfunctions.parser.models import stepfunctions_parser_backends

    with patched(sfn_models, "stepfunctions_backends", stepfunctions_parser_backends):
        yield


@contextmanager
def task_failure_causes() -> Iterator[None]:
    """Pass ``SendTaskFailure``'s ``cause`` on to the execution, as Step Functions does.

    moto's responses handler reads only ``error`` and drops ``cause``, so a callback worker's
    failure would reach the saga's Catch as ``{"Error": ..., "Cause": null}``: the business
    reason a participant gave would be lost from the saga's failure record.
    """
    from moto.core.responses import EmptyResult
    from moto.stepfunctions.responses import StepFunctionResponse

    def send_task_failure(self: Any) -> Any:
        self.stepfunction_backend.send_task_failure(
            self._get_param("taskToken"), error=self._get_param("error"),
            cause=self._get_param("cause"))
        return EmptyResult()

    with patched(StepFunctionResponse, "send_task_failure", send_task_failure):
        yield


@contextmanager
def callback_token_per_attempt() -> Iterator[None]:
    """Give each attempt of a retried callback task a task token of its own, as AWS does.

    moto creates the token (and the endpoint that collects the worker's reply) once per state,
    not per attempt: after a failure reply, every retry fails at once with that same stored
    reply, without waiting for the worker, and a reply to a retried command can land on the
    wrong attempt. A callback step's Retry (a worker's ``TransientStepError``) would then never
    get a second answer. A fresh token per retry makes each attempt wait for its own reply.
    """
    from moto.stepfunctions.parser.asl.component.state.exec.execute_state import ExecutionState
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
        state_task_service_callback as callback_module,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.resource import (
        ResourceCondition,
    )

    callback_state = callback_module.StateTaskServiceCallback
    original = ExecutionState._evaluate_with_timeout

    def evaluate_with_timeout(self: Any, env: Any) -> None:
        context = env.states.context_object.context_object_data
        if (context.get("State", {}).get("RetryCount") and self._is_integration_pattern()
                and self.resource.condition == ResourceCondition.WaitForTaskToken):
            env.callback_pool_manager.add(env.states.context_object.update_task_token())
        original(self, env)

    with patched(callback_state, "_evaluate_with_timeout", evaluate_with_timeout):
        yield


@contextmanager
def closed_callback_tasks() -> Iterator[None]:
    """Refuse a reply or heartbeat for a callback task that is closed, as Step Functions does.

    moto keeps a task's reply endpoint in the pool after the task has its answer, timed out or
    was stopped with its Parallel state, and takes whatever comes next: a duplicate
    ``SendTaskSuccess`` overwrote the first answer while the interpreter had not read it yet
    (a saga then kept the duplicate's output), and a late reply was accepted silently. Here the
    first answer wins, an endpoint whose wait has ended is closed, and a reply or heartbeat for
    either is refused (``InvalidToken``; AWS says ``TaskTimedOut`` or ``InvalidToken``). A
    heartbeat for an open task whose heartbeat timer moto has not set up yet is taken.
    """
    from moto.stepfunctions.parser.asl.eval.callback.callback import (
        CallbackEndpoint,
        CallbackPoolManager,
    )

    lock = threading.Lock()
    closed: set[str] = set()
    original_interrupt = CallbackEndpoint.interrupt_all
    original_notify = CallbackPoolManager.notify
    original_heartbeat = CallbackPoolManager.heartbeat

    def interrupt_all(self: Any) -> None:
        with lock:
            closed.add(self.callback_id)
        original_interrupt(self)

    def notify(self: Any, callback_id: str, outcome: Any) -> bool:
        with lock:
            endpoint = self._pool.get(callback_id)
            if callback_id in closed or (endpoint is not None
                                         and endpoint.get_outcome() is not None):
                return False
            return original_notify(self, callback_id, outcome)

    def heartbeat(self: Any, callback_id: str) -> bool:
        with lock:
            if callback_id in closed:
                return False
            endpoint = self._pool.get(callback_id)
        if endpoint is not None and endpoint._heartbeat_endpoint is None:
            # The task is open, but moto sets up its heartbeat timer only after the command is
            # sent: a worker that heartbeats at once would be told InvalidToken (as if the task
            # were closed) and drop the command. The timer starts fresh when it is set up.
            return True
        return original_heartbeat(self, callback_id)

    with ExitStack() as stack:
        stack.enter_context(patched(CallbackEndpoint, "interrupt_all", interrupt_all))
        stack.enter_context(patched(CallbackPoolManager, "notify", notify))
        stack.enter_context(patched(CallbackPoolManager, "heartbeat", heartbeat))
        yield


@contextmanager
def readable_stopped_branch_history() -> Iterator[None]:
    """Keep an execution's history readable when a Parallel branch is stopped mid-task.

    When a sibling branch fails, moto stops the others; a task of a stopped branch (Lambda or
    service integration) can then skip evaluating its ``TimeoutSeconds`` or ``HeartbeatSeconds``
    and pop the state input from the evaluation stack instead, recording it as the scheduled
    event's ``timeoutInSeconds`` / ``heartbeatInSeconds``. ``GetExecutionHistory`` of that
    execution then fails in moto's serializer (``int()`` of a dict). The bogus fields are
    dropped; the event and the rest of the history stay as they are.
    """
    from moto.stepfunctions.parser.asl.eval.event.event_manager import EventManager

    original = EventManager.add_event

    def add_event(self: Any, context: Any, event_type: Any, event_details: Any = None,
                  *args: Any, **kwargs: Any) -> int:
        for details in (event_details or {}).values():
            if not isinstance(details, dict):
                continue
            for name in ("timeoutInSeconds", "heartbeatInSeconds"):
                if name in details and not isinstance(details[name], int):
                    del details[name]
        return original(self, context, event_type, event_details, *args, **kwargs)

    with patched(EventManager, "add_event", add_event):
        yield


class _InstantSleepTime:
    """Stands in for the ``time`` module: ``sleep`` returns at once, everything else is real."""

    @staticmethod
    def sleep(_seconds: float) -> None:
        """Skip the wait."""

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


@contextmanager
def instant_retry_backoff() -> Iterator[None]:
    """Make Step Functions ``Retry`` intervals (IntervalSeconds x BackoffRate) take no time.

    Only the retrier's module sees the shim; Task ``TimeoutSeconds``, ``HeartbeatSeconds`` and
    ``Wait`` states keep real time.
    """
    from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl

    with patched(retrier_decl, "time", _InstantSleepTime()):
        yield


@dataclass(frozen=True)
class ResourceFailure:
    """A resource whose CloudFormation handler raised during create_stack."""

    logical_id: str
    resource_type: str
    error: BaseException


@contextmanager
def recording_resource_failures(failures: list[ResourceFailure]) -> Iterator[None]:
    """Note which resource's handler raised while moto creates a stack.

    moto creates resources synchronously inside ``create_stack`` and, when a handler raises, lets
    the exception out of the API call without a ``CREATE_FAILED`` event naming the resource.
    Wrapping ``parse_and_create_resource`` records it; the innermost failure comes first (a
    resource that fails while resolving a ``Ref`` to another fails after it).
    """
    from moto.cloudformation import parsing

    original: Callable[..., Any] = parsing.parse_and_create_resource

    def tracking(logical_id: str, resource_json: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return original(logical_id, resource_json, *args, **kwargs)
        except BaseException as exc:
            failures.append(ResourceFailure(logical_id, str(resource_json.get("Type")), exc))
            raise

    with patched(parsing, "parse_and_create_resource", tracking):
        yield


@contextmanager
def programs_parsed_once() -> Iterator[None]:
    """Parse each state machine definition once, not at every execution start.

    moto's ANTLR parser took a fifth of the CPU of a 500-saga run, parsing the same definition
    for every execution. The parsed program holds no state of an evaluation: each execution
    keeps its state in its own ``Environment``, under keys the components name (``heap_key``),
    as a Map state already relies on when its iterations run one program concurrently. That
    key is made lazily and unlocked, so two executions reading it first at once could each use
    a different one; here it is made under a lock.
    """
    from moto.stepfunctions.parser.asl.component.eval_component import EvalComponent
    from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker
    from moto.stepfunctions.parser.utils import long_uid

    lock = threading.Lock()

    def evaluation_entrypoint(worker: Any) -> Any:
        return parsed_program(worker._evaluation_details.state_machine_details.definition)

    def heap_key(component: Any) -> str:
        key = component._EvalComponent__heap_key
        if key is None:
            with lock:
                key = component._EvalComponent__heap_key
                if key is None:
                    key = component._EvalComponent__heap_key = long_uid()
        return key  # type: ignore[no-any-return]

    with patched(ExecutionWorker, "_get_evaluation_entrypoint", evaluation_entrypoint), \
            patched(EvalComponent, "heap_key", property(heap_key)):
        try:
            yield
        finally:
            parsed_program.cache_clear()


@contextmanager
def json_paths_parsed_once() -> Iterator[None]:
    """Compile each JSONPath of a state machine once, not at every evaluation.

    moto's interpreter calls ``jsonpath_ng``'s ``parse`` for every path it reads or writes,
    and each call builds a new PLY parser (its tables read again): a twentieth of a saga run's
    CPU. A compiled path is only read (``find``, ``update_or_create`` change the data, not the
    path), so one per path string serves every execution.
    """
    from moto.stepfunctions.parser.asl.component.common.path import result_path
    from moto.stepfunctions.parser.asl.utils import json_path

    with ExitStack() as stack:
        for module in (json_path, result_path):
            stack.enter_context(patched(module, "parse", functools.lru_cache(maxsize=1024)(
                vars(module)["parse"])))
        yield


@functools.lru_cache(maxsize=128)
def parsed_program(definition: str) -> Any:
    """moto's program for a state machine definition, parsed once (see
    :func:`programs_parsed_once`)."""
    from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser

    return AmazonStateLanguageParser.parse(definition)[0]


@contextmanager
def quiet_interpreter_logs() -> Iterator[None]:
    """Silences moto's ASL interpreter, which logs every failed state at ERROR level.

    A failed task is an expected saga outcome (the Catch compensates it), and the error and cause
    are in the execution history, where :mod:`saga_kit.cli.executions` reads them.
    """
    interpreter = logging.getLogger("moto.stepfunctions.parser")
    previous = interpreter.level
    interpreter.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        interpreter.setLevel(previous)


@contextmanager
def serialized_dynamodb() -> Iterator[None]:
    """Runs moto's DynamoDB requests one at a time.

    moto's DynamoDB is not thread-safe: ``TransactWriteItems`` deep-copies the tables to roll back,
    and fails with "dictionary changed size during iteration" when a concurrent saga writes
    meanwhile. Real DynamoDB serializes conflicting writes itself; here one lock around each
    request gives the same isolation (requests are in-process and take about a millisecond).
    """
    from moto.dynamodb.responses import DynamoHandler

    lock = threading.RLock()
    original = DynamoHandler.call_action

    def call_action(self: Any) -> Any:
        with lock:
            return original(self)

    with patched(DynamoHandler, "call_action", call_action):
        yield


@contextmanager
def serialized_execution_starts() -> Iterator[None]:
    """Makes ``StartExecution`` atomic, as Step Functions is: one execution per name.

    moto checks for an execution of the same name and then appends the new one without a lock,
    so two concurrent starts under one name (a client retrying an API call) could both run.
    """
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend

    lock = threading.Lock()
    original = StepFunctionsParserBackend.start_execution

    def start_execution(self: Any, *args: Any, **kwargs: Any) -> Any:
        with lock:
            return original(self, *args, **kwargs)

    with patched(StepFunctionsParserBackend, "start_execution", start_execution):
        yield


@contextmanager
def task_answers_skip_starting_executions() -> Iterator[None]:
    """Let a worker's heartbeat or reply pass over executions that are still starting.

    ``SendTaskHeartbeat``/``Success``/``Failure`` look for the token in every running execution
    through ``execution.exec_worker.env``, but ``StartExecution`` lists a new execution as
    running before its worker thread has made that environment. A callback worker answering
    while any other saga starts got an ``AttributeError`` instead of an answer; its command
    went back to the queue, and on a busy machine the callback task timed out and a healthy
    trip was compensated. An execution still starting has no task waiting for a token, so
    skipping it changes nothing else.
    """
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend

    original = StepFunctionsParserBackend._get_executions

    def started_executions(self: Any, execution_status: Any = None) -> list[Any]:
        return [execution for execution in original(self, execution_status)
                if getattr(execution.exec_worker, "env", None) is not None]

    with patched(StepFunctionsParserBackend, "_get_executions", started_executions):
        yield


class _TransactionSnapshots:
    """Stands in for the ``copy`` module inside moto's DynamoDB backend.

    moto backs up every table a ``TransactWriteItems`` touches with ``copy.deepcopy(table)``, so
    each transaction costs time in proportion to the table size and the local cloud slows down as
    sagas accumulate. During a transaction this shim answers that deepcopy with a snapshot that
    copies the table's item index (cheap) and deep-copies only the items the transaction names:
    the only ones it can change. A rollback then restores exactly what moto's full copy would.
    Every other use of ``copy`` in that module goes to the real module.
    """

    def __init__(self) -> None:
        self._touched = threading.local()

    def __getattr__(self, name: str) -> Any:
        return getattr(copy, name)

    def deepcopy(self, value: Any, memo: Any = None) -> Any:
        from moto.dynamodb.models.table import Table

        touched = getattr(self._touched, "keys", None)
        if touched is None or not isinstance(value, Table) or value.name not in touched:
            return copy.deepcopy(value, memo)
        snapshot = copy.copy(value)
        if value.has_range_key:
            snapshot.items = type(value.items)(dict)
            for hash_value, by_range in value.items.items():
                snapshot.items[hash_value] = dict(by_range)
        else:
            snapshot.items = type(value.items)(dict, value.items)
        for hash_value, range_value in touched[value.name]:
            if value.has_range_key:
                current = snapshot.items.get(hash_value, {}).get(range_value)
                if current is not None:
                    snapshot.items[hash_value][range_value] = copy.deepcopy(current)
            elif hash_value in snapshot.items:
                snapshot.items[hash_value] = copy.deepcopy(snapshot.items[hash_value])
        return snapshot

    def transaction(self, backend: Any, transact_items: list[dict[str, Any]]) -> dict[str, Any]:
        """The keys each table's items are touched under, or ``{}`` (full copies) if unsure."""
        from moto.dynamodb.models.dynamo_type import DynamoType

        touched: dict[str, list[tuple[Any, Any]]] = {}
        try:
            for entry in transact_items:
                _, op = next(iter(entry.items()))
                table = backend.tables[op["TableName"]]
                key = op["Item"] if "Item" in op else op["Key"]
                range_value = (
                    DynamoType(key[table.range_key_attr]) if table.has_range_key else None
                )
                touched.setdefault(table.name, []).append(
                    (DynamoType(key[table.hash_key_attr]), range_value)
                )
        except Exception:
            return {}  # malformed request: let moto copy whole tables and report the error
        return touched


@contextmanager
def item_level_transaction_backups() -> Iterator[None]:
    """Makes moto's ``TransactWriteItems`` back up only the items it touches (see above)."""
    import moto.dynamodb.models as dynamodb_models

    shim = _TransactionSnapshots()
    original = dynamodb_models.DynamoDBBackend.transact_write_items

    def transact_write_items(backend: Any, transact_items: list[dict[str, Any]]) -> Any:
        shim._touched.keys = shim.transaction(backend, transact_items)
        try:
            return original(backend, transact_items)
        finally:
            shim._touched.keys = None

    with patched(dynamodb_models, "copy", shim), patched(
        dynamodb_models.DynamoDBBackend, "transact_write_items", transact_write_items
    ):
        yield


@contextmanager
def reused_task_clients() -> Iterator[None]:
    """Lets Step Functions tasks share boto3 clients instead of building one per task.

    moto's interpreter creates a fresh boto3 client for every Lambda, SQS or DynamoDB task, which
    costs more than the task itself in-process. boto3 clients are thread-safe, and moto's are all
    alike (fixed fake credentials), so one per (region, service) serves every execution.
    """
    import sys

    from moto.stepfunctions.parser.asl.utils import boto_client as boto_client_module

    original = boto_client_module.boto_client_for
    cache: dict[tuple[str, str], Any] = {}
    lock = threading.Lock()

    def boto_client_for(region: str, service: str, state_credentials: Any = None) -> Any:
        key = (region, service)
        with lock:
            if key not in cache:
                cache[key] = original(region=region, service=service,
                                      state_credentials=state_credentials)
            return cache[key]

    with ExitStack() as stack:
        for name, module in list(sys.modules.items()):
            if name.startswith("moto.stepfunctions.parser") and getattr(
                module, "boto_client_for", None
            ) is original:
                stack.enter_context(patched(module, "boto_client_for", boto_client_for))
        yield


#: Attribute on moto's ``LambdaFunction`` holding the layer version ARNs the template declared.
DECLARED_LAYERS_ATTRIBUTE = "local_cloud_declared_layers"


@contextmanager
def recorded_function_layers() -> Iterator[None]:
    """Keeps a CloudFormation function's ``Layers`` on the moto function object.

    ``LambdaFunction.create_from_cloudformation_json`` copies only a few optional properties
    into the function spec and drops ``Layers`` (had it kept them, moto would reject the
    AWS-managed Powertools layer, which it does not know). This records the resolved ARNs under
    :data:`DECLARED_LAYERS_ATTRIBUTE` after moto created the function, for the in-process
    runner; moto's own ``layers`` (what ``GetFunction`` reports) stays empty.
    """
    from moto.awslambda.models import LambdaFunction

    from saga_kit.local_cloud.layers import layer_arn

    original = vars(LambdaFunction)["create_from_cloudformation_json"].__func__

    def create_from_cloudformation_json(cls: Any, resource_name: str, cloudformation_json: Any,
                                        account_id: str, region_name: str, **kwargs: Any) -> Any:
        fn = original(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs)
        declared = (cloudformation_json.get("Properties") or {}).get("Layers") or []
        setattr(fn, DECLARED_LAYERS_ATTRIBUTE, [layer_arn(value) for value in declared])
        return fn

    with patched(LambdaFunction, "create_from_cloudformation_json",
                 classmethod(create_from_cloudformation_json)):
        yield
