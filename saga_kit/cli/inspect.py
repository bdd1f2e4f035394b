"""``saga inspect``: one screen that answers "what happened to this saga, and what do I do now?".

Everything an operator would otherwise collect from five consoles, for one saga id:

* the **timeline**: one row per step and phase, and per attempt where Step Functions retried,
  with start, end, duration, outcome, error and cause. It is read from the execution history
  (each event is tied to its task state by ``previousEventId``, so the branches of a parallel
  group stay apart) and joined with the saga store's log, which adds what the handler itself
  recorded (a business error, a late action refused, a duplicate answered from its record) and
  what ran outside the execution (the redrive Lambda finishing a parked saga). An Express
  execution has no history: its timeline comes from the execution's CloudWatch Logs (level ALL)
  when they can be read, and from the store alone otherwise;
* the saga's **idempotency records** (Powertools), one per step and phase that ran, with their
  status; an ``INPROGRESS`` record older than its function's timeout is flagged, because the
  invocation that wrote it is gone;
* its **parked message**, if any, in the compensation DLQ (peeked without consuming, as ``saga
  dlq list`` does) or, on request, in the compensation queue;
* any **callback** waiting for its reply: since when, and where the command is;
* the **next action**: wait, fix the participant and redrive the DLQ, redrive the execution on
  AWS, investigate a stuck saga, or nothing to do.

Gathering (:func:`inspect_saga`) is separate from rendering (:func:`render`), so tests and
scripts read the same :class:`Inspection` the command prints, or its :meth:`Inspection.to_json`.

Nothing here changes a saga. The one place that could is peeking a *live* queue (the
compensation queue, a callback's command queue): every receive counts towards the queue's
``maxReceiveCount``, so a peek could send a message to its DLQ one failure early. Those queues
are therefore only counted by default and peeked only with ``peek_live_queues``
(``--peek-queues``); dead-letter queues, which have no redrive policy, are always peeked.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import typer
from botocore.exceptions import ClientError

from saga_kit.cli.dlq import ParkedView, list_parked, peek
from saga_kit.cli.executions import history
from saga_kit.contract import (
    COMPENSATED,
    COMPENSATING,
    COMPLETED,
    DEFAULT_STUCK_AFTER_SECONDS,
    FAILED,
    PARKED,
    PHASES,
    RUNNING,
    Env,
    StuckThresholds,
    execution_arn,
)

__all__ = [
    "CallbackWait",
    "ExecutionView",
    "IdempotencyRecordView",
    "Inspection",
    "NextAction",
    "OpenTask",
    "ParkedMessage",
    "TimelineRow",
    "inspect_saga",
    "register",
    "render",
]

#: The phase of a timeline row for a state of the saga's own (parking, a store write).
SAGA_PHASE = "saga"
#: How far apart (seconds) a handler's own clock and Step Functions' may be when a store log
#: entry is matched to the attempt that ran it.
_CLOCK_SLACK_SECONDS = 1.0
#: At most this many CloudWatch Logs pages are read for an Express execution.
_MAX_LOG_PAGES = 50

_ATTEMPT_STARTS = frozenset({"LambdaFunctionScheduled", "TaskScheduled"})
_ATTEMPT_SUCCEEDED = frozenset({"LambdaFunctionSucceeded", "TaskSucceeded"})
_ATTEMPT_FAILED = frozenset({
    "LambdaFunctionFailed", "LambdaFunctionStartFailed", "LambdaFunctionScheduleFailed",
    "TaskFailed", "TaskStartFailed", "TaskSubmitFailed"})
_ATTEMPT_TIMED_OUT = frozenset({"LambdaFunctionTimedOut", "TaskTimedOut"})
_ATTEMPT_ENDS = _ATTEMPT_SUCCEEDED | _ATTEMPT_FAILED | _ATTEMPT_TIMED_OUT
_EXECUTION_ENDS = {"ExecutionSucceeded": "SUCCEEDED", "ExecutionFailed": "FAILED",
                   "ExecutionTimedOut": "TIMED_OUT", "ExecutionAborted": "ABORTED"}


# -- what an inspection holds ---------------------------------------------------------------------


@dataclass
class TimelineRow:
    """One attempt of one state: a step's action or compensation, or a state of the saga's own.

    Attributes:
        step: The step (for a state of the saga's own, the state's name).
        phase: ``action``, ``compensation``, or ``saga`` (parking, a store write).
        state: The state machine's state.
        attempt: 1 for the first attempt; Step Functions' retries count up from there.
        attempts: How many attempts that visit of the state made in all.
        outcome: ``succeeded``, ``failed``, ``timed_out``, ``running``, ``stopped`` (its branch
            or execution ended first) or, for a store-only row, ``duplicate``.
        handler_outcome: What the step runtime recorded for the invocation in the saga store
            (``business_error``, ``transient_error``, ``refused``, ``crashed``...), if it ran.
        source: ``history``, ``logs`` (Express) or ``store`` (only the saga store knows it).
        group: The parallel state the row ran in, if any.
        callback: Whether the state waits for a callback reply.
        note: What the row needs said besides (ran by the redrive Lambda, a duplicate...).
    """

    step: str
    phase: str
    state: str
    attempt: int
    attempts: int
    outcome: str
    started_at: str | None
    ended_at: str | None
    duration_ms: float | None
    error: str | None = None
    cause: str | None = None
    handler_outcome: str | None = None
    source: str = "history"
    group: str | None = None
    callback: bool = False
    note: str | None = None


@dataclass
class ExecutionView:
    """The execution behind the saga, as far as it can be read."""

    arn: str | None
    workflow: str
    status: str | None = None
    started_at: str | None = None
    stopped_at: str | None = None
    error: str | None = None
    cause: str | None = None
    redrive_status: str | None = None
    redrive_status_reason: str | None = None
    redrive_count: int | None = None


@dataclass
class IdempotencyRecordView:
    """The Powertools idempotency record of one step and phase of the saga."""

    step: str
    phase: str
    key: str
    #: ``COMPLETED``, ``INPROGRESS``, ``EXPIRED`` or ``absent``.
    status: str
    expires_at: str | None = None
    in_progress_expires_at: str | None = None
    #: When an ``INPROGRESS`` record was taken (its expiry less the runtime's record lifetime).
    taken_at: str | None = None
    function: str | None = None
    function_timeout_seconds: int | None = None
    #: An ``INPROGRESS`` record older than its function's timeout: no invocation holds it.
    stale: bool = False
    note: str | None = None


@dataclass
class ParkedMessage:
    """A parked compensation of this saga, and the queue it is in."""

    #: ``dead_letter_queue`` or ``compensation_queue``.
    queue: str
    queue_url: str
    message: ParkedView

    def to_json(self) -> dict[str, Any]:
        """Plain JSON form: the queue, then the message's fields."""
        return {"queue": self.queue, "queue_url": self.queue_url, **self.message.to_dict()}


@dataclass
class OpenTask:
    """A task state the execution is in, and whether it has been there too long."""

    state: str
    step: str | None
    phase: str | None
    since: str
    idle_seconds: float
    threshold_seconds: int
    stuck: bool
    callback: bool
    function: str | None = None


@dataclass
class CallbackWait:
    """A callback task waiting for its worker's reply."""

    state: str
    step: str | None
    phase: str | None
    waiting_since: str
    waiting_seconds: float
    timeout_seconds: int | None
    heartbeat_seconds: int | None
    queue_url: str | None
    worker: str | None
    queue_visible: int | None = None
    queue_in_flight: int | None = None
    #: ``in_queue`` (no worker took it), ``in_worker_dlq`` (the worker gave up on it),
    #: ``taken`` (a worker holds it, or consumed it without replying) or ``unknown``.
    command: str = "unknown"
    command_note: str | None = None


@dataclass
class NextAction:
    """What the operator should do now.

    Attributes:
        kind: ``wait``, ``redrive_dlq``, ``redrive_execution``, ``investigate`` or ``nothing``.
        summary: The action in a few words, as the screen shows it.
        reason: Why, from what was found.
        commands: Command lines to run, in order.
        checks: What to look at before (or instead of) running them.
    """

    kind: str
    summary: str
    reason: str
    commands: list[str] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)


@dataclass
class Inspection:
    """Everything known about one saga, and the next action. Rendered by :func:`render`."""

    saga_type: str
    saga_id: str
    #: The saga's status: the store's, or the execution's ending when the store lags behind.
    status: str
    store_status: str | None
    execution: ExecutionView
    timeline: list[TimelineRow]
    idempotency: list[IdempotencyRecordView]
    parked: list[ParkedMessage]
    #: Messages in the compensation queue and its DLQ: ``{"visible": n, "in_flight": m}``.
    queues: dict[str, dict[str, int]]
    open_tasks: list[OpenTask]
    callbacks: list[CallbackWait]
    #: The stuck thresholds used, and where they come from.
    thresholds: dict[str, Any]
    next_action: NextAction
    #: The store item as the saga API shows it (``saga_kit.runtime.store.describe``).
    store: dict[str, Any] | None
    inspected_at: str
    #: What could not be read, and other remarks.
    notes: list[str] = field(default_factory=list)

    @property
    def stuck(self) -> bool:
        """Whether a task the saga is in has waited past its threshold."""
        return any(task.stuck for task in self.open_tasks)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON-serialisable form (what ``saga inspect --json`` prints)."""
        data = asdict(self)
        data["parked"] = [p.to_json() for p in self.parked]
        data["stuck"] = self.stuck
        return data


# -- gathering --------------------------------------------------------------------------------


class _Clients:
    """boto3 clients from a session (or anything with ``client(service)``), made once each."""

    def __init__(self, aws: Any, endpoint_url: str | None) -> None:
        self._aws = aws
        self._endpoint_url = endpoint_url
        self._made: dict[str, Any] = {}

    def __call__(self, service: str) -> Any:
        if service not in self._made:
            if self._endpoint_url:
                self._made[service] = self._aws.client(service, endpoint_url=self._endpoint_url)
            else:
                self._made[service] = self._aws.client(service)
        return self._made[service]


@dataclass(frozen=True)
class _TaskState:
    """A task state of the definition: which step and phase it runs, and how."""

    name: str
    step: str | None
    phase: str | None
    group: str | None
    function: str | None
    queue_url: str | None
    callback: bool
    timeout_seconds: int | None
    heartbeat_seconds: int | None


@dataclass
class _Event:
    """A history event, or an Express log event read as one."""

    id: int
    previous: int | None
    type: str
    at: datetime
    details: dict[str, Any]


@dataclass
class _Attempt:
    """One try of a task: a Lambda invocation, or a command sent and its reply."""

    started: datetime
    ended: datetime | None = None
    outcome: str = "running"
    error: str | None = None
    cause: str | None = None
    #: It ended after its parallel branch had been stopped.
    after_stop: bool = False


@dataclass
class _Visit:
    """One stay in a task state, from entering it to leaving it, with its attempts."""

    state: str
    entered: datetime
    attempts: list[_Attempt] = field(default_factory=list)
    exited: datetime | None = None


def inspect_saga(aws: Any, outputs: dict[str, str], saga_name: str, saga_id: str,
                 now: datetime | None = None, *, endpoint_url: str | None = None,
                 stack: str | None = None, thresholds: StuckThresholds | None = None,
                 peek_live_queues: bool = False) -> Inspection:
    """Gathers everything about one saga and decides the next action.

    Args:
        aws: A boto3 session, or anything with ``client(service)`` (a ``LocalCloud``).
        outputs: The saga's stack outputs by :data:`~saga_kit.contract.OUTPUT_KEYS` name.
        saga_name: The saga's declared name (its store's ``saga_type``).
        saga_id: The saga id (its execution's name).
        now: The moment to judge against (default: now); a later one shows what the saga
            would look like if nothing moved until then.
        endpoint_url: Passed to every client of a boto3 session (``--endpoint-url``).
        stack: The stack's name: the stuck detector's thresholds are read from its resources,
            and the command lines shown name it.
        thresholds: The stuck thresholds to judge by; by default the saga's stuck detector's,
            else :data:`~saga_kit.contract.DEFAULT_STUCK_AFTER_SECONDS`.
        peek_live_queues: Also look for this saga's messages in the compensation queue and in
            callback command queues (each look counts as a receive there; see the module).

    Read errors (a permission missing, a log group gone) do not end the inspection: each one
    becomes a note and its section stays empty.
    """
    # time.time(), not datetime.now(): the local cloud's shifted wall clock moves it.
    gather = _Gatherer(_Clients(aws, endpoint_url), outputs, saga_name, saga_id,
                       now or datetime.fromtimestamp(time.time(), UTC), stack, peek_live_queues)
    return gather.run(thresholds)


class _Gatherer:
    """One inspection's reads, in the order :meth:`run` needs them."""

    def __init__(self, clients: _Clients, outputs: dict[str, str], saga_name: str, saga_id: str,
                 now: datetime, stack: str | None, peek_live_queues: bool) -> None:
        self.clients = clients
        self.outputs = outputs
        self.saga_name = saga_name
        self.saga_id = saga_id
        self.now = now.astimezone(UTC)
        self.stack = stack
        self.peek_live_queues = peek_live_queues
        self.notes: list[str] = []
        self.states: dict[str, _TaskState] = {}
        self._function_timeouts: dict[str, int | None] = {}
        self._queues: dict[str, dict[str, Any]] = {}
        #: The execution's history as read (Standard only), for where the saga waits.
        self._history_events: list[dict[str, Any]] = []

    def note(self, text: str) -> None:
        self.notes.append(text)

    def read(self, what: str, call: Callable[[], Any], default: Any = None) -> Any:
        """``call()``, or ``default`` with a note when AWS refuses it. Configuration errors (no
        credentials, no endpoint) are not caught: the command reports them once."""
        try:
            return call()
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            self.note(f"{what}: not read ({code or error})")
            return default

    # -- the whole inspection ------------------------------------------------------------

    def run(self, thresholds: StuckThresholds | None) -> Inspection:
        from saga_kit.runtime.store import describe, item_to_json

        item = self._store_item()
        plain = item_to_json(item) if item else None
        store_view = describe(plain) if plain else None
        machine = self.read("state machine", lambda: self.clients("stepfunctions").describe_state_machine(
            stateMachineArn=self.outputs["StateMachineArn"]), {})
        self.states = _task_states(json.loads(machine.get("definition") or "{}"))
        workflow = machine.get("type") or "STANDARD"
        arn = (plain or {}).get("execution_arn") or None
        express = workflow == "EXPRESS" or (arn is not None and ":express:" in arn)
        if arn is None and not express:
            arn = execution_arn(self.outputs["StateMachineArn"], self.saga_id)
        execution = ExecutionView(arn=arn, workflow="EXPRESS" if express else "STANDARD")
        if express:
            events = self._express_events(execution)
            _execution_from_events(execution, events)
        else:
            events = self._history(execution)
        timeline, in_states = _timeline(events, self.states,
                                        running=execution.status in (None, "RUNNING"),
                                        source="logs" if express else "history")
        timeline = _join_store(timeline, plain or {}, store_view or {}, execution)
        store_status = (plain or {}).get("status")
        status = self._status(store_status, execution)
        found = thresholds
        source = "given"
        if found is None:
            found, source = self._thresholds()
        threshold_view = {"saga_seconds": found.saga_seconds,
                          "callback_seconds": dict(found.callback_seconds), "source": source}
        open_tasks = (self._open_tasks(execution, plain or {}, found, express,
                                       in_states if events else None)
                      if status in (RUNNING, COMPENSATING) else [])
        callbacks = [self._callback(task) for task in open_tasks if task.callback]
        idempotency = self._idempotency(timeline)
        parked, queues = self._parked(status)
        inspection = Inspection(
            saga_type=self.saga_name, saga_id=self.saga_id, status=status,
            store_status=store_status, execution=execution, timeline=timeline,
            idempotency=idempotency, parked=parked, queues=queues, open_tasks=open_tasks,
            callbacks=callbacks, thresholds=threshold_view,
            next_action=NextAction("nothing", "", ""), store=store_view,
            inspected_at=_iso(self.now), notes=self.notes)
        inspection.next_action = _next_action(inspection, self.stack, self.outputs,
                                              self.states, self.function_of)
        return inspection

    # -- the store and the execution ----------------------------------------------------

    def _store_item(self) -> dict[str, Any] | None:
        answer = self.read("saga store", lambda: self.clients("dynamodb").get_item(
            TableName=self.outputs["StoreTableName"], ConsistentRead=True,
            Key={"saga_type": {"S": self.saga_name}, "saga_id": {"S": self.saga_id}}), {})
        item = answer.get("Item")
        if not item and answer:
            self.note("the saga store has no item for this saga (never started, or dropped by "
                      "its TTL 90 days after it finished)")
        return item or None

    def _history(self, execution: ExecutionView) -> list[_Event]:
        sfn = self.clients("stepfunctions")
        assert execution.arn is not None
        try:
            described = sfn.describe_execution(executionArn=execution.arn)
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            why = ("Step Functions keeps an execution 90 days after it ended"
                   if code == "ExecutionDoesNotExist" else str(error))
            self.note(f"execution {execution.arn}: not read ({code}): {why}; the timeline is "
                      "the store's")
            return []
        execution.status = described.get("status")
        execution.started_at = _iso(described.get("startDate"))
        execution.stopped_at = _iso(described.get("stopDate"))
        execution.error = described.get("error")
        execution.cause = described.get("cause")
        execution.redrive_status = described.get("redriveStatus")
        execution.redrive_status_reason = described.get("redriveStatusReason")
        execution.redrive_count = described.get("redriveCount")
        raw = self.read("execution history", lambda: history(sfn, execution.arn), [])
        self._history_events = raw
        return [_Event(int(e["id"]), _int(e.get("previousEventId")), e["type"],
                       _utc(e["timestamp"]), _event_details(e)) for e in raw]

    def _express_events(self, execution: ExecutionView) -> list[_Event]:
        """An Express execution's events, from its CloudWatch Logs (the state machine logs at
        level ALL): Step Functions keeps no history for Express."""
        group = self.outputs.get("ExecutionLogGroupName")
        if not execution.arn:
            self.note("Express execution: the store names no execution ARN, so its logs cannot "
                      "be searched; the timeline is the store's")
            return []
        if not group:
            self.note("Express execution: the stack has no ExecutionLogGroupName output; the "
                      "timeline is the store's")
            return []
        logs = self.clients("logs")
        found: list[_Event] = []
        kwargs: dict[str, Any] = {"logGroupName": group, "filterPattern": f'"{execution.arn}"'}
        for _ in range(_MAX_LOG_PAGES):
            page = self.read(f"execution logs ({group})",
                             lambda kwargs=kwargs: logs.filter_log_events(**kwargs), None)
            if page is None:
                return found
            for record in page.get("events", []):
                event = _log_event(record.get("message", ""), execution.arn)
                if event is not None:
                    found.append(event)
            if not page.get("nextToken"):
                break
            kwargs["nextToken"] = page["nextToken"]
        else:
            self.note(f"execution logs: more than {_MAX_LOG_PAGES} pages; the rest is not shown")
        if not found:
            self.note("Express execution: no log events found for it (the logs may not be "
                      "delivered yet, or are gone); the timeline is the store's")
        found.sort(key=lambda e: (e.at, e.id))
        return found

    def _status(self, store_status: str | None, execution: ExecutionView) -> str:
        from saga_kit.runtime.store import status_of_execution

        if execution.status in (None, "RUNNING"):
            if store_status in (RUNNING, COMPENSATING) or execution.status is None:
                return store_status or ("unknown" if execution.status is None else RUNNING)
            # A redriven execution runs again before its status event reopens the store.
            return RUNNING
        ended = status_of_execution(execution.status, execution.error)
        if store_status in (COMPLETED, COMPENSATED, PARKED, FAILED):
            return store_status  # the store also knows what the redrive Lambda finished
        self.note(f"the execution ended {execution.status} but the store still says "
                  f"{store_status or 'nothing'}: its status event has not been recorded yet")
        return ended or "unknown"

    # -- stuck thresholds and functions --------------------------------------------------

    def _thresholds(self) -> tuple[StuckThresholds, str]:
        """The saga's stuck detector's thresholds (its function's environment), found among the
        stack's functions; the kit's default when it cannot be found."""
        for function in self._detector_candidates():
            config = self.read(f"function {function}", lambda function=function: self.clients(
                "lambda").get_function_configuration(FunctionName=function), {})
            variables = config.get("Environment", {}).get("Variables", {})
            if (Env.STUCK_THRESHOLDS in variables
                    and variables.get(Env.SAGA_TYPE) == self.saga_name
                    and variables.get(Env.STORE_TABLE) == self.outputs.get("StoreTableName")):
                return (StuckThresholds.from_json(variables[Env.STUCK_THRESHOLDS]),
                        f"stuck detector {config.get('FunctionName', function)}")
        return (StuckThresholds(saga_seconds=DEFAULT_STUCK_AFTER_SECONDS),
                "default (the saga's stuck detector was not found)")

    def _detector_candidates(self) -> list[str]:
        if self.stack:
            resources = self.read(f"stack {self.stack} resources", lambda: [
                summary for page in self.clients("cloudformation").get_paginator(
                    "list_stack_resources").paginate(StackName=self.stack)
                for summary in page["StackResourceSummaries"]], [])
            return [r["PhysicalResourceId"] for r in resources
                    if r.get("ResourceType") == "AWS::Lambda::Function"
                    and "StuckDetector" in r.get("LogicalResourceId", "")
                    and r.get("PhysicalResourceId")]
        # Without the stack: the functions tagged with the saga's name (the construct tags them).
        from saga_kit.contract import SAGA_TAG

        tagged = self.read("resource tags", lambda: self.clients(
            "resourcegroupstaggingapi").get_resources(
                TagFilters=[{"Key": SAGA_TAG, "Values": [self.saga_name]}],
                ResourceTypeFilters=["lambda:function"]), {})
        arns = [r["ResourceARN"] for r in tagged.get("ResourceTagMappingList", [])]
        return sorted(arns, key=lambda arn: "Stuck" not in arn)

    def function_timeout(self, function: str | None) -> int | None:
        """A Lambda function's timeout in seconds (``None`` when it cannot be read)."""
        if not function:
            return None
        if function not in self._function_timeouts:
            config = self.read(f"function {_function_name(function)}", lambda: self.clients(
                "lambda").get_function_configuration(FunctionName=function), {})
            self._function_timeouts[function] = config.get("Timeout")
        return self._function_timeouts[function]

    def function_of(self, step: str, phase: str) -> str | None:
        """The function that runs one phase of a step: the task's Lambda, or the worker
        that consumes a callback task's command queue."""
        for state in self.states.values():
            if (state.step, state.phase) != (step, phase):
                continue
            if state.function:
                return state.function
            if state.queue_url:
                return self._queue(state.queue_url).get("worker")
        return None

    def _queue(self, url: str) -> dict[str, Any]:
        """A queue's counts, ARN, dead-letter queue and (for a command queue) its worker."""
        if url in self._queues:
            return self._queues[url]
        sqs = self.clients("sqs")
        attributes = self.read(f"queue {url}", lambda: sqs.get_queue_attributes(
            QueueUrl=url, AttributeNames=["All"])["Attributes"], {})
        found: dict[str, Any] = {
            "visible": _int(attributes.get("ApproximateNumberOfMessages")),
            "in_flight": _int(attributes.get("ApproximateNumberOfMessagesNotVisible")),
            "arn": attributes.get("QueueArn"),
        }
        try:
            redrive = json.loads(attributes.get("RedrivePolicy") or "{}")
        except ValueError:
            redrive = {}
        if redrive.get("deadLetterTargetArn"):
            found["dlq_arn"] = redrive["deadLetterTargetArn"]
            found["max_receive_count"] = _int(redrive.get("maxReceiveCount"))
        if found["arn"]:
            mappings = self.read("event source mappings", lambda: self.clients(
                "lambda").list_event_source_mappings(EventSourceArn=found["arn"]), {})
            workers = [m["FunctionArn"] for m in mappings.get("EventSourceMappings", [])]
            found["worker"] = workers[0] if workers else None
        self._queues[url] = found
        return found

    # -- where the execution is ----------------------------------------------------------

    def _open_tasks(self, execution: ExecutionView, item: dict[str, Any],
                    thresholds: StuckThresholds, express: bool,
                    in_states: set[str] | None) -> list[OpenTask]:
        """The tasks the saga waits in, each judged against its threshold as the stuck detector
        judges it: from the later of entering it and the saga's last store write."""
        from saga_kit.runtime.stuck import open_states

        updated = _utc(item["updated_at"]) if item.get("updated_at") else None
        # Where the stuck detector would place the saga, from the history read for the timeline.
        states = None if express else open_states(self._history_events)
        if states and in_states is not None:
            # Only tasks the timeline also shows open: the two readings of one history agree.
            states = [state for state in states if state.name in in_states]
        found: list[OpenTask] = []
        if not states:
            if updated is None:
                return []
            # Express, or no history: the store's last write is all there is to judge by.
            step, phase = item.get("current_step"), item.get("current_phase")
            idle = (self.now - updated).total_seconds()
            threshold = thresholds.saga_seconds
            return [OpenTask(state=f"{step} ({phase})" if step else "-", step=step, phase=phase,
                             since=_iso(updated) or "", idle_seconds=round(idle, 3),
                             threshold_seconds=threshold, stuck=idle > threshold,
                             callback=False, function=self.function_of(step, phase)
                             if step and phase else None)]
        for state in states:
            info = self.states.get(state.name)
            since = max(state.entered_at, updated) if updated else state.entered_at
            idle = (self.now - since).total_seconds()
            threshold = thresholds.for_state(state.name)
            step, phase = (info.step, info.phase) if info else (None, None)
            found.append(OpenTask(
                state=state.name, step=step, phase=phase, since=_iso(since) or "",
                idle_seconds=round(idle, 3), threshold_seconds=threshold,
                stuck=idle > threshold, callback=state.callback,
                function=self.function_of(step, phase) if step and phase else None))
        return found

    def _callback(self, task: OpenTask) -> CallbackWait:
        info = self.states.get(task.state)
        url = info.queue_url if info else None
        wait = CallbackWait(
            state=task.state, step=task.step, phase=task.phase,
            waiting_since=task.since, waiting_seconds=task.idle_seconds,
            timeout_seconds=info.timeout_seconds if info else None,
            heartbeat_seconds=info.heartbeat_seconds if info else None,
            queue_url=url, worker=None)
        if not url:
            return wait
        queue = self._queue(url)
        wait.worker = queue.get("worker")
        wait.queue_visible, wait.queue_in_flight = queue.get("visible"), queue.get("in_flight")
        if queue.get("dlq_arn") and self._in_worker_dlq(queue["dlq_arn"], task):
            wait.command = "in_worker_dlq"
            wait.command_note = ("the worker failed to answer it "
                                 f"{queue.get('max_receive_count') or 'several'} times; the saga "
                                 "compensates when the task times out")
            return wait
        if self.peek_live_queues:
            if self._commands_in(url, task):
                wait.command = "in_queue"
                wait.command_note = "no worker has taken it yet"
            else:
                wait.command = "taken"
                wait.command_note = ("not in the queue: a worker holds it "
                                     f"({wait.queue_in_flight or 0} in flight) or consumed it "
                                     "without replying")
            return wait
        if wait.queue_visible == 0:
            # Nothing waits in the queue, so neither does this command: a worker has it.
            wait.command = "taken"
            wait.command_note = ("nothing waits in the queue: a worker holds it "
                                 f"({wait.queue_in_flight or 0} in flight) or consumed it "
                                 "without replying")
        else:
            wait.command_note = (f"{wait.queue_visible or 0} command(s) waiting and "
                                 f"{wait.queue_in_flight or 0} in flight in the queue "
                                 "(--peek-queues looks for this one)")
        return wait

    def _belongs(self, body: dict[str, Any], task: OpenTask) -> bool:
        state = body.get("state") if isinstance(body.get("state"), dict) else {}
        saga_id = state.get("saga_id") or body.get("execution_name")
        return (saga_id == self.saga_id and body.get("step") == task.step
                and body.get("phase") == task.phase)

    def _commands_in(self, url: str, task: OpenTask) -> list[dict[str, Any]]:
        messages = self.read(f"queue {url}", lambda: peek(self.clients("sqs"), url), [])
        return [m for m in messages if self._belongs(_json_object(m.get("Body")), task)]

    def _in_worker_dlq(self, dlq_arn: str, task: OpenTask) -> bool:
        url = self._queue_url(dlq_arn)
        return bool(url and self._commands_in(url, task))

    def _queue_url(self, arn: str) -> str | None:
        parts = arn.split(":")
        if len(parts) < 6:
            return None
        answer = self.read(f"queue {parts[5]}", lambda: self.clients("sqs").get_queue_url(
            QueueName=parts[5], QueueOwnerAWSAccountId=parts[4]), {})
        return answer.get("QueueUrl")

    # -- idempotency records -------------------------------------------------------------

    def _idempotency(self, timeline: list[TimelineRow]) -> list[IdempotencyRecordView]:
        from aws_lambda_powertools.utilities.idempotency import (
            DynamoDBPersistenceLayer,
            IdempotencyConfig,
        )

        from saga_kit.runtime.step import (
            IDEMPOTENCY_TTL_SECONDS,
            idempotency_data,
            idempotency_key_prefix,
        )

        table = self.outputs.get("IdempotencyTableName")
        if not table:
            self.note("no IdempotencyTableName output: idempotency records not read")
            return []
        ran = list(dict.fromkeys((row.step, row.phase) for row in timeline if row.phase in PHASES))
        dynamodb = self.clients("dynamodb")
        # Powertools' own key derivation (the prefix, then the hash of the data), so each key is
        # the one the handler wrote, whatever Powertools' hashing does. configure() sets the
        # prefix again at every call, so one layer serves every step and phase.
        layer = DynamoDBPersistenceLayer(table_name=table, boto3_client=dynamodb)
        found: list[IdempotencyRecordView] = []
        for step, phase in ran:
            layer.configure(IdempotencyConfig(),
                            key_prefix=idempotency_key_prefix(self.saga_name, step, phase))
            key = layer._get_hashed_idempotency_key(
                idempotency_data(self.saga_name, self.saga_id, step, phase)) or ""
            answer = self.read(f"idempotency record of {step} {phase}", lambda key=key:
                               dynamodb.get_item(TableName=table, ConsistentRead=True,
                                                 Key={layer.key_attr: {"S": key}}), None)
            if answer is None:
                continue
            record = answer.get("Item")
            view = IdempotencyRecordView(step=step, phase=phase, key=key, status="absent")
            found.append(view)
            if not record:
                continue
            status = record.get(layer.status_attr, {}).get("S", "")
            expires = _int(record.get(layer.expiry_attr, {}).get("N"))
            in_progress = _int(record.get(layer.in_progress_expiry_attr, {}).get("N"))
            view.expires_at = _iso(datetime.fromtimestamp(expires, UTC)) if expires else None
            view.in_progress_expires_at = (_iso(datetime.fromtimestamp(in_progress / 1000, UTC))
                                           if in_progress else None)
            view.status = "EXPIRED" if expires and expires < self.now.timestamp() else status
            if status != "INPROGRESS":
                continue
            view.function = _function_name(self.function_of(step, phase))
            view.function_timeout_seconds = self.function_timeout(self.function_of(step, phase))
            # The runtime takes every record with one lifetime, so its expiry tells when.
            taken = datetime.fromtimestamp(expires - IDEMPOTENCY_TTL_SECONDS, UTC) if expires else None
            view.taken_at = _iso(taken)
            if view.function_timeout_seconds is not None and taken is not None:
                age = (self.now - taken).total_seconds()
                view.stale = age > view.function_timeout_seconds
                if view.stale:
                    view.note = (f"taken {age:.0f}s ago, past the function's "
                                 f"{view.function_timeout_seconds}s timeout: the invocation "
                                 "that took it is gone (Powertools lets the next attempt take "
                                 "it over once in_progress_expiration has passed)")
            elif in_progress and in_progress / 1000 < self.now.timestamp():
                view.stale = True
                view.note = ("its invocation's deadline (in_progress_expiration) has passed: "
                             "no invocation holds it")
        return found

    # -- parked messages -----------------------------------------------------------------

    def _parked(self, status: str) -> tuple[list[ParkedMessage], dict[str, dict[str, int]]]:
        sqs = self.clients("sqs")
        found: list[ParkedMessage] = []
        queues: dict[str, dict[str, int]] = {}
        for name, output, safe in (("dead_letter_queue", "CompensationDeadLetterQueueUrl", True),
                                   ("compensation_queue", "CompensationQueueUrl", False)):
            url = self.outputs.get(output)
            if not url:
                self.note(f"no {output} output: the {name.replace('_', ' ')} was not read")
                continue
            queue = self._queue(url)
            queues[name] = {"visible": queue.get("visible") or 0,
                            "in_flight": queue.get("in_flight") or 0}
            if not safe and not self.peek_live_queues:
                continue
            if not queues[name]["visible"] and status not in (PARKED, FAILED):
                continue  # nothing to see, and nothing of this saga is expected there
            for view in self.read(f"{name.replace('_', ' ')} messages",
                                  lambda url=url: list_parked(sqs, url), []):
                if view.saga_id == self.saga_id and (view.saga_type in (None, self.saga_name)):
                    found.append(ParkedMessage(queue=name, queue_url=url, message=view))
        return found, queues


# -- the definition and the history ----------------------------------------------------------


def _task_states(definition: dict[str, Any]) -> dict[str, _TaskState]:
    """Every task state of the definition (parallel branches included): the step and phase it
    runs (from the event it sends), its Lambda function or command queue, and its timeouts."""
    found: dict[str, _TaskState] = {}

    def walk(states: dict[str, Any], group: str | None) -> None:
        for name, spec in states.items():
            kind = spec.get("Type")
            if kind == "Parallel":
                for branch in spec.get("Branches", []):
                    walk(branch.get("States", {}), name)
            elif kind == "Map":
                walk((spec.get("ItemProcessor") or spec.get("Iterator") or {}).get("States", {}),
                     name)
            elif kind == "Task":
                resource = str(spec.get("Resource", ""))
                parameters = spec.get("Parameters") or {}
                function = queue = None
                payload: Any = parameters
                if ":states:::lambda:invoke" in resource:
                    function = parameters.get("FunctionName")
                    payload = parameters.get("Payload") or {}
                elif resource.startswith("arn:") and ":lambda:" in resource:
                    function = resource
                elif ":states:::sqs:sendMessage" in resource:
                    queue = parameters.get("QueueUrl")
                    payload = parameters.get("MessageBody") or {}
                payload = payload if isinstance(payload, dict) else {}
                step, phase = payload.get("step"), payload.get("phase")
                found[name] = _TaskState(
                    name=name, step=step if isinstance(step, str) else None,
                    phase=phase if phase in PHASES else None, group=group,
                    function=function if isinstance(function, str) else None,
                    queue_url=queue if isinstance(queue, str) else None,
                    callback="waitForTaskToken" in resource,
                    timeout_seconds=_int(spec.get("TimeoutSeconds")),
                    heartbeat_seconds=_int(spec.get("HeartbeatSeconds")))

    walk(definition.get("States", {}), None)
    return found


def _timeline(events: list[_Event], states: dict[str, _TaskState], *,
              running: bool, source: str) -> tuple[list[TimelineRow], set[str]]:
    """One row per attempt of every task state visited, from the history's events, and the
    task states the execution is still in (entered, neither exited nor aborted).

    Each event belongs to the state its ``previousEventId`` chain leads back to, which keeps
    the branches of a parallel state apart. A task is left when it is exited or aborted, or when
    its parallel state ends (a stopped branch's task may get no event of its own); an answer
    that comes after that is still shown on its attempt. Events after the execution's end
    (until a redrive) are left out: a stopped branch may still log some.
    """
    owner: dict[int, str] = {}
    open_visits: dict[str, _Visit] = {}
    stopped_visits: dict[str, _Visit] = {}
    visits: list[_Visit] = []
    last_entered: str | None = None
    ended = False
    for event in events:
        kind = event.type
        if kind == "ExecutionRedriven":
            ended = False
            continue
        if kind in _EXECUTION_ENDS:
            ended = True
            continue
        if ended:
            continue
        name = event.details.get("name")
        if kind.endswith("StateEntered") and isinstance(name, str):
            owner[event.id] = name
            if kind == "TaskStateEntered":
                visit = _Visit(name, event.at)
                open_visits[name] = visit
                visits.append(visit)
                last_entered = name
            continue
        state = owner.get(event.previous) if event.previous is not None else None
        state = state or last_entered
        if state is not None:
            owner[event.id] = state
        if kind.endswith("StateExited") or kind.endswith("StateAborted"):
            # Without a name (an aborted task may carry none) it is the task its chain leads to.
            closed = name if isinstance(name, str) else (state if kind.startswith("Task") else None)
            visit = open_visits.pop(closed, None) if closed else None
            if visit is not None:
                _leave(visit, event.at)
            if isinstance(name, str):
                # A parallel state that ends stops whatever its branches still run.
                for other in [v for s, v in open_visits.items()
                              if s in states and states[s].group == name]:
                    _leave(open_visits.pop(other.state), event.at)
                    stopped_visits[other.state] = other
            continue
        visit = open_visits.get(state) if state else None
        late = visit is None and state in stopped_visits
        if late:
            visit = stopped_visits[state]
        if visit is None:
            continue
        if kind in _ATTEMPT_STARTS:
            if not late:
                visit.attempts.append(_Attempt(started=event.at))
            continue
        if not visit.attempts:
            continue
        attempt = visit.attempts[-1]
        if late:
            if attempt.outcome != "stopped" or kind not in _ATTEMPT_ENDS:
                continue
            attempt.after_stop = True
        if kind in _ATTEMPT_SUCCEEDED:
            attempt.outcome, attempt.ended = "succeeded", event.at
        elif kind in _ATTEMPT_FAILED or kind in _ATTEMPT_TIMED_OUT:
            attempt.outcome = "timed_out" if kind in _ATTEMPT_TIMED_OUT else "failed"
            attempt.ended = event.at
            attempt.error = event.details.get("error") or (
                "States.Timeout" if kind in _ATTEMPT_TIMED_OUT else None)
            attempt.cause = _readable_cause(event.details.get("cause"))
    rows: list[TimelineRow] = []
    for visit in visits:
        info = states.get(visit.state)
        attempts = visit.attempts or [_Attempt(started=visit.entered, ended=visit.exited)]
        for number, attempt in enumerate(attempts, start=1):
            outcome = attempt.outcome
            if outcome == "running" and not running:
                outcome = "stopped"  # the execution ended with the attempt still open
            rows.append(TimelineRow(
                step=(info.step if info and info.step else visit.state),
                phase=(info.phase if info and info.phase else SAGA_PHASE),
                state=visit.state, attempt=number, attempts=len(attempts), outcome=outcome,
                started_at=_iso(attempt.started), ended_at=_iso(attempt.ended),
                duration_ms=_ms(attempt.started, attempt.ended), error=attempt.error,
                cause=attempt.cause, source=source, group=info.group if info else None,
                callback=bool(info and info.callback),
                note="answered after its branch was stopped" if attempt.after_stop else None))
    return rows, set(open_visits) if running else set()


def _leave(visit: _Visit, at: datetime) -> None:
    """Closes a stay in a task state; an attempt still open then was stopped."""
    visit.exited = at
    for attempt in visit.attempts:
        if attempt.outcome == "running":
            attempt.outcome, attempt.ended = "stopped", at


def _execution_from_events(execution: ExecutionView, events: list[_Event]) -> None:
    """Fills what ``DescribeExecution`` did not say (an Express execution) from the events."""
    for event in events:
        if event.type == "ExecutionStarted" and execution.started_at is None:
            execution.started_at = _iso(event.at)
        elif event.type in _EXECUTION_ENDS:
            execution.status = _EXECUTION_ENDS[event.type]
            execution.stopped_at = _iso(event.at)
            execution.error = event.details.get("error")
            execution.cause = event.details.get("cause")
        elif event.type == "ExecutionRedriven":
            execution.status, execution.stopped_at = "RUNNING", None
    if execution.status is None and execution.started_at is not None:
        execution.status = "RUNNING"


def _join_store(rows: list[TimelineRow], item: dict[str, Any], view: dict[str, Any],
                execution: ExecutionView) -> list[TimelineRow]:
    """Adds what the saga store's log knows to the history's rows.

    Each log entry (one handler invocation) goes to the attempt of the same step and phase
    whose time window holds its start: the row then carries what the handler recorded. An
    entry no attempt holds ran outside the execution (the redrive Lambda, after parking) or
    there is no history (Express without logs): it becomes a row of its own.
    """
    stopped = _utc(execution.stopped_at) if execution.stopped_at else None
    extra: list[TimelineRow] = []
    counts: dict[tuple[str, str], int] = {}
    for row in rows:
        counts[(row.step, row.phase)] = counts.get((row.step, row.phase), 0) + 1
    for entry in item.get("log") or []:
        step, phase = entry.get("step"), entry.get("phase")
        started = _utc(entry["started_at"]) if entry.get("started_at") else None
        ended = _utc(entry["ended_at"]) if entry.get("ended_at") else None
        if started is None or step is None or phase is None:
            continue
        # A handler that started after the execution stopped ran for someone else: the
        # redrive Lambda, finishing a parked saga.
        late = stopped is not None and started > stopped
        match = None if late else _attempt_of(rows, step, phase, started)
        duplicate = bool(entry.get("duplicate"))
        if match is not None:
            if duplicate:
                match.note = _join_notes(match.note, "a duplicate was answered from the "
                                                     "idempotency record")
                continue
            match.handler_outcome = entry.get("outcome")
            match.error = match.error or _error_name(entry.get("error"))
            if match.cause is None and entry.get("error"):
                match.cause = entry["error"]
            continue
        counts[(step, phase)] = counts.get((step, phase), 0) + (0 if duplicate else 1)
        outcome = entry.get("outcome")
        number = max(1, counts[(step, phase)])
        extra.append(TimelineRow(
            step=step, phase=phase, state=_state_name(step, phase),
            attempt=number, attempts=number,
            outcome="duplicate" if duplicate else
            ("succeeded" if outcome == "succeeded" else "failed"),
            started_at=entry.get("started_at"), ended_at=entry.get("ended_at"),
            duration_ms=_ms(started, ended), error=_error_name(entry.get("error")),
            cause=entry.get("error"), handler_outcome=outcome, source="store",
            note=("after the execution ended: the redrive Lambda" if late and
                  phase == "compensation" else None)))
    untimed: list[TimelineRow] = []
    if not rows:
        # No history: a step that failed without its handler saying so (a timeout, a crash
        # before the runtime) is known from the failure Step Functions recorded in the store.
        seen = {(row.step, row.phase) for row in extra}
        for step_view in view.get("steps", []):
            key = (step_view.get("step"), step_view.get("phase"))
            if key not in seen and step_view.get("status") == "failed":
                untimed.append(TimelineRow(
                    step=key[0], phase=key[1], state=_state_name(*key), attempt=1, attempts=1,
                    outcome="failed", started_at=step_view.get("started_at"),
                    ended_at=step_view.get("ended_at"), duration_ms=None,
                    error=step_view.get("error"), cause=None, source="store",
                    note="recorded by Step Functions in the saga's failure"))
    # Attempt counts of the store's own rows: how many the store shows for that step and phase.
    for row in extra:
        row.attempts = max(row.attempt, counts.get((row.step, row.phase), row.attempts))
    merged = sorted([*rows, *extra], key=lambda row: row.started_at or "~")
    # A failure known without its time is where the saga turned back: before the first
    # compensation, as the store's own view places it.
    cut = next((i for i, row in enumerate(merged) if row.phase == "compensation"), len(merged))
    return [*merged[:cut], *untimed, *merged[cut:]]


def _attempt_of(rows: list[TimelineRow], step: str, phase: str,
                started: datetime) -> TimelineRow | None:
    """The attempt of ``step``/``phase`` that ran a handler invocation started at ``started``:
    one whose window holds it, else the nearest within the clocks' slack."""
    best: tuple[float, int] | None = None
    chosen: TimelineRow | None = None
    for index, row in enumerate(rows):
        if (row.step, row.phase) != (step, phase) or row.started_at is None:
            continue
        begin = _utc(row.started_at)
        end = _utc(row.ended_at) if row.ended_at else None
        if begin <= started and (end is None or started <= end):
            distance = 0.0
        else:
            distance = min(abs((started - begin).total_seconds()),
                           abs((started - end).total_seconds()) if end else float("inf"))
            if distance > _CLOCK_SLACK_SECONDS:
                continue
        score = (distance, -index)  # the later attempt wins a tie
        if best is None or score < best:
            best, chosen = score, row
    return chosen


def _log_event(message: str, execution_arn: str) -> _Event | None:
    """A Step Functions log record (``{"id", "type", "details", "previous_event_id",
    "event_timestamp", "execution_arn"}``) as a history event; ``None`` for another's."""
    record = _json_object(message)
    if not record or record.get("execution_arn") not in (None, execution_arn):
        return None
    try:
        return _Event(int(record["id"]), _int(record.get("previous_event_id")),
                      str(record["type"]), _utc(record["event_timestamp"]),
                      record.get("details") if isinstance(record.get("details"), dict) else {})
    except (KeyError, TypeError, ValueError):
        return None


def _event_details(event: dict[str, Any]) -> dict[str, Any]:
    for key, value in event.items():
        if key.endswith("EventDetails") and isinstance(value, dict):
            return value
    return {}


# -- deciding the next action -------------------------------------------------------------------


def _next_action(found: Inspection, stack: str | None, outputs: dict[str, str],
                 states: dict[str, _TaskState],
                 function_of: Callable[[str, str], str | None]) -> NextAction:
    """The one thing to do now, from the saga's status and what was found around it."""
    status = found.status
    target = (f"--stack {stack} --saga {found.saga_type}" if stack
              else f"--saga {found.saga_type}")
    if status == "unknown":
        return NextAction("investigate", "investigate: unknown saga",
                          "neither the saga store nor Step Functions knows this saga id",
                          checks=["the saga id, --saga and --stack (and the region)"])
    if status in (RUNNING, COMPENSATING):
        return _running_action(found, target)
    if status == PARKED:
        return _parked_action(found, target, outputs, function_of)
    if status == FAILED:
        return _failed_action(found, states)
    action = NextAction("nothing", "nothing to do",
                        f"the saga is {status}: it ended as a saga is designed to end")
    leftovers = [p for p in found.parked if p.queue == "dead_letter_queue"]
    if leftovers:
        action.checks.append(
            f"a parked message of this saga is still in the DLQ although the saga is {status}: "
            f"redriving it is harmless (each compensation answers from its record), or delete "
            f"it (message {leftovers[0].message.message_id})")
    return action


def _running_action(found: Inspection, target: str) -> NextAction:
    late = [task for task in found.open_tasks if task.stuck]
    stale = [r for r in found.idempotency if r.stale]
    if not late:
        if found.open_tasks:
            first = min(found.open_tasks, key=lambda t: t.threshold_seconds - t.idle_seconds)
            left = first.threshold_seconds - first.idle_seconds
            reason = (f"the saga is {found.status} in {', '.join(t.state for t in found.open_tasks)}"
                      f"; {first.state} counts as stuck in {left:.0f}s (threshold "
                      f"{first.threshold_seconds}s)")
        else:
            reason = f"the saga is {found.status}"
        return NextAction("wait", "wait", reason,
                          commands=[f"saga inspect {target} {found.saga_id}"])
    checks: list[str] = []
    commands: list[str] = []
    names = []
    for task in late:
        where = task.step or task.state
        names.append(f"{where} ({task.phase})" if task.phase else where)
        if task.function:
            function = _function_name(task.function)
            checks.append(f"the logs of {function} for saga {found.saga_id} (log group "
                          f"/aws/lambda/{function})")
            commands.append(f"aws logs tail /aws/lambda/{function} --since 1h "
                            f"--filter-pattern '\"{found.saga_id}\"'")
    for wait in found.callbacks:
        if not any(t.state == wait.state for t in late):
            continue
        where = {"in_queue": "is still in the queue: no worker takes commands (is the worker's "
                             "event source mapping enabled? is the worker failing?)",
                 "in_worker_dlq": "is in the worker's dead-letter queue: the worker could not "
                                  "answer it",
                 "taken": "was taken by the worker, which has not replied: it hangs, or lost "
                          "the task token",
                 }.get(wait.command, "may be in the queue or with the worker")
        checks.insert(0, f"callback {wait.state} has waited {wait.waiting_seconds:.0f}s for "
                         f"its reply; its command {where}")
    for record in stale:
        checks.append(f"the idempotency record of {record.step} {record.phase} is INPROGRESS "
                      f"past its function's timeout (taken {record.taken_at or '?'}): no "
                      "invocation holds it any more")
    if found.execution.arn and found.execution.workflow == "STANDARD":
        checks.append("if the participant cannot recover, stop the execution (aws stepfunctions "
                      f"stop-execution --execution-arn {found.execution.arn}); it ends failed "
                      "and can be redriven once the cause is fixed")
    since = min(late, key=lambda t: t.since)
    return NextAction(
        "investigate", f"investigate: stuck at {', '.join(names)}",
        f"nothing has moved the saga since {since.since} ({since.idle_seconds:.0f}s, over the "
        f"{since.threshold_seconds}s threshold)", commands=commands, checks=checks)


def _parked_action(found: Inspection, target: str, outputs: dict[str, str],
                   function_of: Callable[[str, str], str | None]) -> NextAction:
    in_dlq = [p for p in found.parked if p.queue == "dead_letter_queue"]
    in_queue = [p for p in found.parked if p.queue == "compensation_queue"]
    store = found.store or {}
    if store.get("parked_past_deadline_at"):
        return NextAction(
            "investigate", "investigate: parked past its deadline",
            f"the redrive refused the saga at {store['parked_past_deadline_at']}: it was parked "
            "longer ago than the parked deadline, so the kit will not finish it",
            checks=["finish the compensations by hand from the DLQ message (its state names "
                    "what is still to undo, in order), then delete the message"])
    if in_dlq:
        message = in_dlq[0].message
        pending = " → ".join([message.failed_compensation or "?", *message.pending_compensations])
        dlq_arn = outputs.get("CompensationDeadLetterQueueArn")
        redrive = (f"saga dlq redrive {target}" if "--stack" in target or not dlq_arn
                   else f"saga dlq redrive --dlq-arn {dlq_arn}")
        checks = [f"compensation {message.failed_compensation} failed with {message.error}: "
                  f"{_short(_readable_cause(message.cause), 200)}"]
        function = _function_name(function_of(message.failed_compensation, "compensation")
                                  if message.failed_compensation else None)
        if function:
            checks.append(f"fix the participant first: the logs of {function} for saga "
                          f"{found.saga_id} (log group /aws/lambda/{function})")
        checks.append("a DLQ redrive moves every message of this saga type's DLQ, not only this "
                      "one (saga dlq list shows them)")
        return NextAction(
            "redrive_dlq", "fix the participant, then redrive the DLQ",
            f"the saga is parked in the DLQ: {pending} still to undo (parked "
            f"{_days(message.parked_age_seconds)} ago, SQS drops it in "
            f"{_days(message.dropped_in_seconds)})",
            commands=[redrive, f"saga inspect {target} {found.saga_id}"], checks=checks)
    queue = found.queues.get("compensation_queue", {})
    if in_queue or queue.get("visible") or queue.get("in_flight"):
        where = (f"its message is in the compensation queue (received "
                 f"{in_queue[0].message.receive_count} times)" if in_queue else
                 "its message is not in the DLQ, and the compensation queue holds "
                 f"{queue.get('visible', 0)} waiting and {queue.get('in_flight', 0)} in flight")
        return NextAction(
            "wait", "wait", f"the saga is parked and {where}: the redrive Lambda retries it, "
            "and SQS moves it to the DLQ if it keeps failing",
            commands=[f"saga inspect {target} {found.saga_id}"])
    return NextAction(
        "investigate", "investigate: parked, message not found",
        "the saga is parked but its message is in neither the compensation queue nor the DLQ",
        checks=["a DLQ redrive in progress (saga dlq list, in a minute)",
                "SQS drops a message 14 days after it was enqueued or last redriven; the "
                "compensations still to undo are in the execution's cause"])


def _failed_action(found: Inspection, states: dict[str, _TaskState]) -> NextAction:
    execution = found.execution
    error = execution.error or (found.store or {}).get("execution_error") or ""
    cause = _json_object(execution.cause) if execution.cause else {}
    checks = _failure_checks(error, execution.status, cause, states)
    checks.append("what a redrive repeats: it starts at the failed state; steps that completed "
                  "answer from their idempotency records")
    if execution.workflow == "EXPRESS" or not execution.arn:
        return NextAction(
            "investigate", "investigate: failed (Express)",
            f"the execution ended unexpectedly ({error or execution.status}); an Express "
            "execution cannot be redriven", checks=checks)
    if execution.redrive_status == "NOT_REDRIVABLE":
        return NextAction(
            "investigate", "investigate: failed, not redrivable",
            f"the execution ended unexpectedly ({error or execution.status}) and Step Functions "
            f"will not redrive it: {execution.redrive_status_reason or 'no reason given'}",
            checks=checks)
    return NextAction(
        "redrive_execution", "redrive the execution on AWS",
        f"the execution ended unexpectedly ({error or execution.status}); its participants may "
        "hold effects until it is redriven",
        commands=[f"aws stepfunctions redrive-execution --execution-arn {execution.arn}"],
        checks=checks)


def _failure_checks(error: str, status: str | None, cause: dict[str, Any],
                    states: dict[str, _TaskState]) -> list[str]:
    name, _, step = error.partition(".")
    if name == "ForwardRecoveryFailed":
        function = next((s.function for s in states.values()
                         if s.step == step and s.phase == "action"), None)
        where = f" (/aws/lambda/{_function_name(function)})" if function else ""
        return [f"step {step} is past the pivot and failed every retry with "
                f"{cause.get('error') or 'an error'}: fix its participant{where} first, or the "
                "redrive fails the same way"]
    if name == "ParkingFailed":
        return ["the compensation queue refused the parked message: check the queue exists and "
                "the state machine's role may send to it; the execution's cause lists what is "
                "still to undo"]
    if status == "TIMED_OUT":
        return ["the execution ran past its own timeout"]
    if status == "ABORTED":
        return ["someone stopped the execution (CloudTrail: StopExecution): find out why before "
                "redriving it"]
    return [f"the execution's error {error or '(none)'} and cause: a runtime error (such as "
            "States.Runtime or States.DataLimitExceeded) repeats on a redrive unless its cause "
            "is fixed"]


# -- the command --------------------------------------------------------------------------------


def register(app: typer.Typer) -> None:
    """Adds ``saga inspect`` to the ``saga`` command."""
    from saga_kit.cli.main import (
        ENDPOINT_OPTION,
        REGION_OPTION,
        SAGA_OPTION,
        STACK_OPTION,
    )

    ids_argument = typer.Argument(
        ..., metavar="[SAGA] SAGA_ID",
        help="The saga id (its execution name), after the saga when --saga is not used.")

    @app.command("inspect")
    def inspect_command(
        ids: list[str] = ids_argument,
        stack: str | None = STACK_OPTION,
        saga: str | None = SAGA_OPTION,
        region: str | None = REGION_OPTION,
        endpoint_url: str | None = ENDPOINT_OPTION,
        peek_queues: bool = typer.Option(
            False, "--peek-queues",
            help="Also look for the saga's messages in the compensation queue and callback "
                 "command queues; each look counts as a receive towards their maxReceiveCount."),
        json_output: bool = typer.Option(False, "--json", help="Print JSON."),
    ) -> None:
        """Show what happened to one saga and what to do next.

        The timeline of steps and compensations (execution history joined with the saga
        store; an Express saga's logs), its idempotency records, any parked message, any
        callback waiting for its reply, and the next action.
        """
        from rich.console import Console

        from saga_kit.cli.main import _aws_errors, _fail, _one_saga, resolve_target

        if len(ids) > 2:
            _fail(f"expected the saga id (optionally after the saga), got {len(ids)} arguments")
        name = _one_saga(ids[0] if len(ids) == 2 else None, saga)
        target = resolve_target(stack, name, region, endpoint_url, {
            "StateMachineArn": None, "StoreTableName": None, "IdempotencyTableName": None,
            "CompensationQueueUrl": None, "CompensationDeadLetterQueueUrl": None})
        with _aws_errors():
            found = inspect_saga(target.session, target.outputs, target.saga or "", ids[-1],
                                 endpoint_url=endpoint_url,
                                 stack=target.stack.stack if target.stack else None,
                                 peek_live_queues=peek_queues)
        if found.status == "unknown" and found.store is None and found.execution.status is None:
            _fail(f"{target.label()} has no saga {ids[-1]}: no store item and no execution")
        if json_output:
            print(json.dumps(found.to_json(), indent=2, default=str))
            return
        render(found, Console())


# -- rendering ----------------------------------------------------------------------------------

#: Consecutive failed attempts of one state shown before the rest are folded into one line.
_SHOWN_FAILURES = 3
_OUTCOME_STYLES = {"succeeded": "green", "failed": "red", "timed_out": "red", "running": "yellow",
                   "stopped": "dim", "duplicate": "dim"}
_ACTION_STYLES = {"nothing": "green", "wait": "yellow", "redrive_dlq": "red",
                  "redrive_execution": "red", "investigate": "red"}


def render(found: Inspection, console: Any) -> None:
    """Prints an inspection on a rich console: header, timeline, records, queues, next action."""
    from rich.panel import Panel
    from rich.table import Table

    execution = found.execution
    console.print(f"[bold]saga {found.saga_type} {found.saga_id}[/bold]: {found.status}"
                  + (f" (store: {found.store_status})" if found.store_status not in
                     (None, found.status) else ""))
    console.print(f"execution {execution.arn or '-'} ({execution.workflow}): "
                  f"{execution.status or 'unknown'}, started {execution.started_at or '-'}"
                  + (f", stopped {execution.stopped_at}" if execution.stopped_at else ""))
    if execution.error:
        console.print(f"  error {execution.error}: {_short(_failure_text(execution.cause), 300)}")

    table = Table(title=f"Timeline ({len(found.timeline)} attempts)")
    for column in ("step", "phase", "attempt", "started", "ms", "outcome", "error / cause",
                   "source"):
        table.add_column(column, overflow="fold")
    for row, folded in _folded(found.timeline):
        if folded:
            table.add_row(row.step, row.phase, "…", "", "", f"[red]{folded} more failed[/red]",
                          "", "")
            continue
        style = _OUTCOME_STYLES.get(row.outcome, "")
        where = f"{row.step} [dim]({row.group})[/dim]" if row.group else row.step
        outcome = f"[{style}]{row.outcome}[/{style}]" if style else row.outcome
        if row.handler_outcome and row.handler_outcome not in ("succeeded", row.outcome):
            outcome += f" [dim]({row.handler_outcome})[/dim]"
        detail = " — ".join(x for x in (row.error, _short(row.cause, 160), row.note) if x)
        table.add_row(where + (" [dim]↻[/dim]" if row.callback else ""), row.phase,
                      f"{row.attempt}/{row.attempts}", (row.started_at or "-")[11:23],
                      "" if row.duration_ms is None else f"{row.duration_ms:.0f}", outcome,
                      detail, row.source)
    console.print(table)

    if found.idempotency:
        records = Table(title="Idempotency records")
        for column in ("step", "phase", "status", "expires", "note"):
            records.add_column(column, overflow="fold")
        for record in found.idempotency:
            status = f"[red]{record.status} (stale)[/red]" if record.stale else record.status
            records.add_row(record.step, record.phase, status, record.expires_at or "-",
                            record.note or "")
        console.print(records)
    for parked in found.parked:
        message = parked.message
        console.print(f"[bold]parked[/bold] in the {parked.queue.replace('_', ' ')}: "
                      f"{message.failed_compensation} failed ({message.error}), still pending "
                      f"{' → '.join(message.pending_compensations) or 'nothing'}, "
                      f"{message.receive_count} receive(s)")
    queues = ", ".join(f"{name.replace('_', ' ')} {q['visible']} waiting / {q['in_flight']} in "
                       "flight" for name, q in found.queues.items())
    if queues:
        console.print(f"[dim]queues: {queues}[/dim]")
    for task in found.open_tasks:
        mark = "[red]stuck[/red]" if task.stuck else "waiting"
        console.print(f"{mark} in {task.state} since {task.since} ({task.idle_seconds:.0f}s of "
                      f"{task.threshold_seconds}s)")
    for wait in found.callbacks:
        console.print(f"callback {wait.state}: waiting {wait.waiting_seconds:.0f}s (timeout "
                      f"{wait.timeout_seconds}s, heartbeat {wait.heartbeat_seconds or '-'}s); "
                      f"command {wait.command}" + (f": {wait.command_note}"
                                                   if wait.command_note else ""))

    action = found.next_action
    style = _ACTION_STYLES.get(action.kind, "")
    lines = [f"[bold {style}]{action.summary}[/bold {style}]", action.reason]
    lines += [f"  $ {command}" for command in action.commands]
    lines += [f"  • {check}" for check in action.checks]
    console.print(Panel("\n".join(lines), title="Next action", expand=False))
    for note in found.notes:
        console.print(f"[dim]note: {note}[/dim]")
    console.print(f"[dim]thresholds: {found.thresholds['saga_seconds']}s "
                  f"({found.thresholds['source']})[/dim]")


def _folded(rows: list[TimelineRow]) -> Iterable[tuple[TimelineRow, int]]:
    """The rows to show: a long run of failed attempts of one state keeps its first few and
    its last, the ones between folded into one count."""
    index = 0
    while index < len(rows):
        row = rows[index]
        run = index
        while (run + 1 < len(rows) and rows[run + 1].state == row.state
               and rows[run + 1].outcome == row.outcome == "failed"
               and rows[run + 1].attempt == rows[run].attempt + 1):
            run += 1
        length = run - index + 1
        if length > _SHOWN_FAILURES + 1:
            for shown in rows[index:index + _SHOWN_FAILURES]:
                yield shown, 0
            yield row, length - _SHOWN_FAILURES - 1
            yield rows[run], 0
        else:
            for shown in rows[index:run + 1]:
                yield shown, 0
        index = run + 1


# -- small helpers ------------------------------------------------------------------------------


def _utc(value: Any) -> datetime:
    """A history timestamp (datetime), a store one (ISO text) or a log one (epoch millis)."""
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
    text = str(value)
    if text.isdigit():
        return datetime.fromtimestamp(int(text) / 1000, UTC)
    parsed = datetime.fromisoformat(text)
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)


def _iso(value: Any) -> str | None:
    """UTC, millisecond ISO 8601 with ``Z``, as the saga store writes its times."""
    if value is None:
        return None
    from saga_kit.runtime.store import timestamp

    return timestamp(_utc(value))


def _ms(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return round((end - start).total_seconds() * 1000, 1)


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None and value != "" else None
    except (TypeError, ValueError):
        return None


def _json_object(text: Any) -> dict[str, Any]:
    try:
        value = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _readable_cause(cause: Any) -> str | None:
    """A task failure's cause: a Lambda's ``errorMessage`` rather than its whole JSON
    (stack trace included); anything else as it is."""
    if cause is None:
        return None
    parsed = _json_object(cause)
    if "errorMessage" in parsed:
        return str(parsed["errorMessage"])
    return str(cause)


def _failure_text(cause: Any) -> str | None:
    """An execution's cause as a person reads it: the saga's failure record (``{"step" or
    "failed_compensation", "error", "cause"}``) as one line, the Lambda's message unwrapped."""
    record = _json_object(cause)
    if not record.get("error"):
        return _readable_cause(cause)
    where = record.get("failed_compensation") or record.get("step")
    text = f"{record['error']}: {_readable_cause(record.get('cause')) or ''}"
    return f"{where}: {text}" if where else text


def _error_name(text: Any) -> str | None:
    """The error class of a store log error (``"BusinessError: out of stock"``)."""
    if not isinstance(text, str) or not text:
        return None
    name = text.split(":", 1)[0]
    return name if name.isidentifier() else None


def _join_notes(first: str | None, second: str) -> str:
    return f"{first}; {second}" if first else second


def _state_name(step: str, phase: str) -> str:
    from saga_kit.contract import state_name

    return state_name(step, phase)


def _function_name(function: str | None) -> str | None:
    """A function's name from its ARN (``arn:aws:lambda:r:a:function:NAME[:qualifier]``)."""
    if not function:
        return None
    parts = function.split(":")
    return parts[6] if len(parts) >= 7 and parts[5] == "function" else function


def _short(text: Any, limit: int) -> str:
    if text is None:
        return ""
    value = str(text)
    return value if len(value) <= limit else value[: limit - 1] + "…"


def _days(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    return f"{seconds / 86400:.1f} days" if seconds >= 86400 else f"{seconds / 3600:.1f} h"
