"""LocalCloud: deploy a synthesized CDK stack into moto in-process and run its Lambdas for real.

The template is deployed as it is, through moto's CloudFormation, after doing what
``cdk bootstrap`` and ``cdk deploy`` would do first (SSM bootstrap version, asset bucket, file
assets). Step Functions state machines execute in moto's ASL interpreter, and every Lambda
invocation runs the function's real handler from its deployed code zip (see
:mod:`saga_kit.local_cloud.lambda_runner`).
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar

import boto3
from moto.core.config import DefaultConfig

from saga_kit.contract import Env, saga_outputs
from saga_kit.local_cloud.assembly import StackArtifact, asset_bytes, file_assets, load_stack
from saga_kit.local_cloud.errors import DeployError, LocalCloudError, ResourceLookupError
from saga_kit.local_cloud.event_sources import (
    ContinuousDelivery,
    MotoStreams,
    StreamDelivery,
    no_inline_sqs_delivery,
    no_inline_stream_delivery,
    pump_sqs_event_sources,
)
from saga_kit.local_cloud.handler_time import HandlerTime
from saga_kit.local_cloud.iam import AccessDenial, IamEnforcer
from saga_kit.local_cloud.lambda_runner import InProcessLambdaRunner, InvocationRecord
from saga_kit.local_cloud.metrics import EmfSink, captured_emf
from saga_kit.local_cloud.moto_patches import (
    ResourceFailure,
    callback_token_per_attempt,
    closed_callback_tasks,
    instant_retry_backoff,
    item_level_transaction_backups,
    json_paths_parsed_once,
    parsed_program,
    programs_parsed_once,
    quiet_interpreter_logs,
    readable_stopped_branch_history,
    recording_resource_failures,
    reused_task_clients,
    serialized_dynamodb,
    serialized_execution_starts,
    state_machines_in_executing_backend,
    task_answers_skip_starting_executions,
    task_failure_causes,
)
from saga_kit.local_cloud.skipped_references import resolve_skipped_references
from saga_kit.local_cloud.sqs_move_tasks import message_move_tasks
from saga_kit.local_cloud.status_events import execution_status_events
from saga_kit.local_cloud.wall_clock import sweep_expired_items

logger = logging.getLogger(__name__)

MOTO_CONFIG: DefaultConfig = {
    "stepfunctions": {"execute_state_machine": True},
    "lambda": {"use_docker": False},
}
CAPABILITIES = ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"]
#: ``cdk bootstrap`` writes its stack version here; templates check it is at least 6.
MIN_BOOTSTRAP_VERSION = 21
#: A handler must be starved of the CPU for 20 times its timeout before it times out, while one
#: that sleeps (a scenario's slow handler) times out on time: see saga_kit/local_cloud/handler_time.py.
DEFAULT_TIME_DILATION = 20.0
_POLL_START = 0.01
_POLL_MAX = 0.1
_STOP_GRACE_SECONDS = 2.0
#: The hash CDK appends to a construct's path to make its logical id.
_CDK_HASH = re.compile(r"[0-9A-F]{8}")


@dataclass(frozen=True)
class StackResource:
    """One resource moto's CloudFormation created: its type and physical id."""

    logical_id: str
    resource_type: str
    physical_id: str


@contextmanager
def _fake_aws_environment(region: str) -> Iterator[None]:
    """Fake credentials and the region in the environment, the previous values restored after.

    ``AWS_PROFILE`` and ``AWS_ENDPOINT_URL`` are removed meanwhile: a profile that does not exist
    here, or an endpoint pointing elsewhere, would take boto3 calls away from moto.
    """
    values = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SECURITY_TOKEN": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": region,
        "AWS_REGION": region,
    }
    removed = ("AWS_PROFILE", "AWS_ENDPOINT_URL")
    saved = {key: os.environ.get(key) for key in (*values, *removed)}
    os.environ.update(values)
    for key in removed:
        os.environ.pop(key, None)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class _SharedMoto:
    """moto's mock, the moto patches and the Lambda runner: process-wide, shared by running clouds.

    moto's backends, ``sys.modules`` and ``os.environ`` exist once per process, so clouds that
    overlap (a session fixture plus a test's own cloud) share one mock and one runner, counted
    by users; the last :meth:`release` undoes everything.
    """

    _lock: ClassVar[threading.Lock] = threading.Lock()
    _current: ClassVar[_SharedMoto | None] = None

    def __init__(self, region: str, instant_retries: bool, time_dilation: float,
                 enforce_iam: bool) -> None:
        self.instant_retries = instant_retries
        self.handler_time = HandlerTime(time_dilation)
        self.iam = IamEnforcer() if enforce_iam else None
        self.runner = InProcessLambdaRunner(region, self.handler_time, self.iam)
        self.users = 0
        self._exit_stack = ExitStack()
        stack = self._exit_stack
        try:
            stack.enter_context(_fake_aws_environment(region))
            import moto

            mock = moto.mock_aws(config=MOTO_CONFIG)
            mock.start()
            stack.callback(mock.stop)
            stack.enter_context(state_machines_in_executing_backend())
            stack.enter_context(quiet_interpreter_logs())
            stack.enter_context(programs_parsed_once())
            stack.enter_context(json_paths_parsed_once())
            stack.enter_context(serialized_dynamodb())
            stack.enter_context(serialized_execution_starts())
            stack.enter_context(item_level_transaction_backups())
            stack.enter_context(no_inline_sqs_delivery())
            stack.enter_context(reused_task_clients())
            stack.enter_context(task_failure_causes())
            stack.enter_context(callback_token_per_attempt())
            stack.enter_context(closed_callback_tasks())
            stack.enter_context(task_answers_skip_starting_executions())
            stack.enter_context(readable_stopped_branch_history())
            stack.enter_context(message_move_tasks())
            stack.enter_context(execution_status_events())
            stack.enter_context(no_inline_stream_delivery())
            #: The EMF documents the handlers printed (the local CloudWatch for metrics).
            self.metrics = EmfSink()
            stack.enter_context(captured_emf(self.metrics))
            if instant_retries:
                stack.enter_context(instant_retry_backoff())
            stack.enter_context(self.handler_time.installed())
            if self.iam is not None:
                stack.enter_context(self.iam.installed())
            stack.enter_context(self.runner.installed())
        except BaseException:
            stack.close()
            raise

    @classmethod
    def acquire(cls, region: str, instant_retries: bool, time_dilation: float,
                enforce_iam: bool = True) -> _SharedMoto:
        """The running engine (started now if none), with one more user."""
        with cls._lock:
            engine = cls._current
            if engine is None:
                engine = cls(region, instant_retries, time_dilation, enforce_iam)
                cls._current = engine
            elif (engine.instant_retries, engine.handler_time.dilation, engine.iam is not None) != (
                    instant_retries, float(time_dilation), enforce_iam):
                raise LocalCloudError(
                    f"a LocalCloud with instant_retries={engine.instant_retries}, "
                    f"time_dilation={engine.handler_time.dilation:g} and "
                    f"enforce_iam={engine.iam is not None} is already running in this process; "
                    "overlapping clouds must agree on all three (one moto serves them all)"
                )
            engine.users += 1
            return engine

    def release(self) -> None:
        """Drop one user; the last one stops moto and undoes every patch.

        The whole teardown holds the lock, so a cloud starting meanwhile waits for it instead of
        patching on top of patches that are being undone.
        """
        with _SharedMoto._lock:
            self.users -= 1
            if self.users > 0:
                return
            try:
                self.runner.wait_idle(_STOP_GRACE_SECONDS)
            except TimeoutError:
                logger.warning(
                    "stopping LocalCloud with %d Lambda invocation(s) still running", self.runner.running
                )
            try:
                self._exit_stack.close()
            finally:
                _SharedMoto._current = None


class LocalCloud:
    """One CDK stack deployed into moto, in this process, with Lambdas running in-process.

    Use as a context manager (or call :meth:`start` / :meth:`stop`). Clouds that overlap in one
    process share moto's mock and the in-process Lambda runner (both are process-wide), so their
    stacks must have different names; moto's state is reset when the last one stops.

    Args:
        assembly_dir: a synthesized cloud assembly (what ``app.synth()`` wrote, ``cdk.out``).
        stack_name: the stack's artifact id or deployed name in that assembly.
        instant_retries: make Step Functions ``Retry`` backoff sleeps instant, so retry paths
            run in milliseconds. Task ``TimeoutSeconds`` and ``Wait`` states keep real time.
        region: the region everything is deployed to.
        time_dilation: how much less than a second a second of wall time a Lambda handler spends
            awake counts towards its task's ``TimeoutSeconds`` and its own ``Timeout``; time it
            spends in ``time.sleep`` counts in full (see :mod:`saga_kit.local_cloud.handler_time`). The
            default, :data:`DEFAULT_TIME_DILATION`, means a busy machine never times out a
            handler that a scenario did not make slow on purpose; 1 is plain wall time.
        enforce_iam: run each Lambda invocation with its execution role's credentials and
            refuse its requests that the role's policies do not allow, with ``AccessDenied``
            as on AWS (see :mod:`saga_kit.local_cloud.iam`). Requests of the harness itself,
            and Step Functions' service integrations, are never checked.
    """

    def __init__(
        self,
        assembly_dir: Path | str,
        stack_name: str,
        *,
        instant_retries: bool = True,
        region: str = "us-east-1",
        time_dilation: float = DEFAULT_TIME_DILATION,
        enforce_iam: bool = True,
    ) -> None:
        self.assembly_dir = Path(assembly_dir)
        self.stack_name = stack_name
        self.instant_retries = instant_retries
        self.region = region
        self.time_dilation = time_dilation
        self.enforce_iam = enforce_iam
        #: CloudFormation stack outputs, OutputKey -> OutputValue (filled by :meth:`start`).
        self.outputs: dict[str, str] = {}
        #: Every resource moto created, by logical id.
        self.resources: dict[str, StackResource] = {}
        #: Template resources moto did not create (unsupported type, or a false Condition).
        self.skipped_resources: dict[str, str] = {}
        self.account_id = ""
        self.stack_id = ""
        #: The deployed template (filled by :meth:`start`).
        self.template: dict[str, Any] = {}
        self._engine: _SharedMoto | None = None
        self._clients: dict[str, Any] = {}
        self._session: boto3.session.Session | None = None
        #: Names of the stack's callback workers, served by :attr:`_callback_delivery`.
        self.callback_workers: set[str] = set()
        self._callback_delivery: ContinuousDelivery | None = None
        self._stream_delivery: StreamDelivery | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> LocalCloud:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> LocalCloud:
        """Start moto, bootstrap, publish assets, create the stack and wait for CREATE_COMPLETE.

        Raises :class:`DeployError` naming the failing resource when the stack cannot be created,
        and leaves nothing patched behind when anything fails.
        """
        if self._engine is not None:
            raise LocalCloudError("this LocalCloud is already running")
        artifact = load_stack(self.assembly_dir, self.stack_name)  # fail before touching moto
        engine = _SharedMoto.acquire(self.region, self.instant_retries, self.time_dilation,
                                     self.enforce_iam)
        self._engine = engine
        try:
            self._session = boto3.session.Session(region_name=self.region)
            self.account_id = self.client("sts").get_caller_identity()["Account"]
            self.template = artifact.template
            self._bootstrap(artifact)
            self._publish_assets(artifact)
            self._deploy(artifact)
            self._prepare_functions()
            self._warm_state_machines()
            self._start_callback_delivery()
            self._start_stream_delivery()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Undo everything :meth:`start` did: moto's mock, the patches, env vars, extracted code.

        When other clouds still run in this process, only this cloud's handle is dropped (its
        resources stay in the shared moto until the last one stops). In-flight Lambda
        invocations get a short grace period; call :meth:`wait_lambdas_idle` first when a test
        left a slow one running on purpose.
        """
        engine = self._engine
        if engine is None:
            return
        if self._callback_delivery is not None:
            self._callback_delivery.stop()
            self._callback_delivery = None
        if self._stream_delivery is not None:
            self._stream_delivery.stop()
            self._stream_delivery = None
        if self.stack_id and engine.users > 1:
            # moto's state outlives this cloud; free the stack name for a later cloud.
            try:
                self.client("cloudformation").delete_stack(StackName=self.stack_id)
            except Exception:
                logger.warning(
                    "could not delete stack %s from the shared moto", self.stack_name, exc_info=True
                )
        self._engine = None
        self.stack_id = ""
        self._clients.clear()
        self._session = None
        engine.release()

    @property
    def _runner(self) -> InProcessLambdaRunner:
        if self._engine is None:
            raise LocalCloudError("this LocalCloud is not running; call start() or use it in a with block")
        return self._engine.runner

    # -- deployment ------------------------------------------------------------------------

    def _bootstrap(self, artifact: StackArtifact) -> None:
        """What ``cdk bootstrap`` leaves that the template and assets need: version and bucket(s)."""
        version = max(MIN_BOOTSTRAP_VERSION, artifact.required_bootstrap_version)
        self.client("ssm").put_parameter(
            Name=artifact.bootstrap_parameter, Value=str(version), Type="String", Overwrite=True
        )
        s3 = self.client("s3")
        existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
        for bucket in sorted({asset.bucket_name for asset in self._assets(artifact)} - existing):
            if self.region == "us-east-1":
                s3.create_bucket(Bucket=bucket)
            else:
                s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": self.region})

    def _assets(self, artifact: StackArtifact) -> list[Any]:
        return file_assets(artifact, self.account_id, self.region)

    def _publish_assets(self, artifact: StackArtifact) -> None:
        """Upload every file asset to its destination, zipping directory assets."""
        s3 = self.client("s3")
        for asset in self._assets(artifact):
            s3.put_object(Bucket=asset.bucket_name, Key=asset.object_key, Body=asset_bytes(asset))

    def _deploy(self, artifact: StackArtifact) -> None:
        cfn = self.client("cloudformation")
        failures: list[ResourceFailure] = []
        with recording_resource_failures(failures):
            try:
                created = cfn.create_stack(
                    StackName=artifact.stack_name,
                    TemplateBody=json.dumps(resolve_skipped_references(
                        artifact.template, self.account_id, self.region)),
                    Capabilities=CAPABILITIES,
                )
            except Exception as exc:
                raise DeployError(self._failure_message(artifact.stack_name, failures, exc)) from exc
        self.stack_id = created["StackId"]
        description = self._wait_for_stack(artifact.stack_name)
        self.outputs = {o["OutputKey"]: o["OutputValue"] for o in description.get("Outputs", [])}
        for page in cfn.get_paginator("list_stack_resources").paginate(StackName=self.stack_id):
            for summary in page["StackResourceSummaries"]:
                resource = StackResource(
                    logical_id=summary["LogicalResourceId"],
                    resource_type=summary["ResourceType"],
                    physical_id=summary.get("PhysicalResourceId", ""),
                )
                self.resources[resource.logical_id] = resource
        self.skipped_resources = {
            logical_id: spec.get("Type", "")
            for logical_id, spec in artifact.template.get("Resources", {}).items()
            if logical_id not in self.resources
        }
        if self.skipped_resources:
            logger.warning(
                "moto did not create %d resource(s) of %s: %s",
                len(self.skipped_resources),
                artifact.stack_name,
                ", ".join(f"{k} ({v})" for k, v in sorted(self.skipped_resources.items())),
            )

    def _failure_message(self, stack_name: str, failures: list[ResourceFailure], exc: BaseException) -> str:
        if failures:
            first = failures[0]
            return (
                f"creating stack {stack_name} failed at resource {first.logical_id} "
                f"({first.resource_type}): {type(first.error).__name__}: {first.error}"
            )
        return f"creating stack {stack_name} failed: {type(exc).__name__}: {exc}"

    def _wait_for_stack(self, stack_name: str, timeout: float = 60.0) -> dict[str, Any]:
        """Poll until the stack leaves *_IN_PROGRESS; anything but CREATE_COMPLETE raises."""
        cfn = self.client("cloudformation")
        deadline = time.monotonic() + timeout
        delay = _POLL_START
        while True:
            description: dict[str, Any] = cfn.describe_stacks(StackName=self.stack_id)["Stacks"][0]
            status = description["StackStatus"]
            if status == "CREATE_COMPLETE":
                return description
            if not status.endswith("_IN_PROGRESS"):
                events = cfn.describe_stack_events(StackName=self.stack_id)["StackEvents"]
                failed = [e for e in events if str(e.get("ResourceStatus", "")).endswith("FAILED")]
                detail = "; ".join(
                    f"{e['LogicalResourceId']} ({e.get('ResourceType')}): "
                    f"{e.get('ResourceStatusReason', 'no reason given')}"
                    for e in failed
                )
                raise DeployError(f"stack {stack_name} ended in {status}: {detail or 'no failed events'}")
            if time.monotonic() > deadline:
                raise DeployError(f"stack {stack_name} still {status} after {timeout} s")
            time.sleep(delay)
            delay = min(delay * 2, _POLL_MAX)

    def _prepare_functions(self) -> None:
        """Extract every Python function's code and layers now, and assume its role when IAM is
        enforced, so code conflicts, unknown layers and missing roles fail start(), not a test."""
        from moto.awslambda.utils import get_backend

        backend = get_backend(self.account_id, self.region)
        iam = self._engine.iam if self._engine is not None else None
        for resource in self.resources.values():
            if resource.resource_type != "AWS::Lambda::Function":
                continue
            fn = backend.get_function(resource.physical_id)
            if str(fn.run_time or "").startswith("python"):
                try:
                    self._runner.prepare(fn)
                    if iam is not None:
                        iam.credentials_for(fn)
                except LocalCloudError as exc:
                    raise DeployError(
                        f"stack {self.stack_name}: resource {resource.logical_id} "
                        f"(AWS::Lambda::Function): {exc}"
                    ) from exc

    def _start_callback_delivery(self) -> None:
        """Callback steps' workers get their commands as they arrive, in the background, as
        Lambda's poller would deliver them: the state machine waits for their replies, not for
        a test to pump. Other queues (parked compensations) wait for :meth:`pump_event_sources`."""
        lambda_client = self.client("lambda")
        own = {r.physical_id for r in self.resources.values()
               if r.resource_type == "AWS::Lambda::Function"}
        for name in own:
            variables = (lambda_client.get_function_configuration(FunctionName=name)
                         .get("Environment", {}).get("Variables", {}))
            if Env.TASK_TIMEOUT_SECONDS in variables:
                self.callback_workers.add(name)
        mappings = [m for page in lambda_client.get_paginator("list_event_source_mappings")
                    .paginate() for m in page["EventSourceMappings"]
                    if m["FunctionArn"].split(":")[-1] in self.callback_workers
                    and m.get("EventSourceArn", "").startswith("arn:aws:sqs:")]
        self._callback_delivery = ContinuousDelivery(
            lambda_client, self.client("sqs"), self.region, mappings).start()

    def _start_stream_delivery(self) -> None:
        """DynamoDB stream mappings (the saga store's outcome metrics) get their records in the
        background, in order, as Lambda's stream poller would deliver them."""
        own = {r.physical_id for r in self.resources.values()
               if r.resource_type == "AWS::Lambda::Function"}
        lambda_client = self.client("lambda")
        mappings = [m for page in lambda_client.get_paginator("list_event_source_mappings")
                    .paginate() for m in page["EventSourceMappings"]
                    if m["FunctionArn"].split(":")[-1] in own
                    and ":dynamodb:" in m.get("EventSourceArn", "")]
        self._stream_delivery = StreamDelivery(
            lambda_client, MotoStreams(self.account_id, self.region), self.client("sqs"),
            mappings).start()

    @property
    def metrics(self) -> EmfSink:
        """The EMF documents every handler of this process printed so far (clouds sharing one
        moto share it): what CloudWatch would have made metrics of."""
        if self._engine is None:
            raise LocalCloudError("this LocalCloud is not running; call start() or use it in a with block")
        return self._engine.metrics

    def wait_for_stream_delivery(self, timeout: float = 10.0) -> None:
        """Waits until every DynamoDB stream record written so far was delivered to its mapped
        function (the saga outcome metrics count from the store's stream)."""
        if self._stream_delivery is not None:
            self._stream_delivery.wait_drained(timeout)
        self._raise_harness_errors()

    def _warm_state_machines(self) -> None:
        """Parse each state machine's definition now, once for all its executions.

        The parser's first run builds caches for over a second; executions started together
        before that would each build them at once (50 concurrent first starts took over 15 s
        on two cores). See :func:`~saga_kit.local_cloud.moto_patches.programs_parsed_once`.
        """
        sfn = self.client("stepfunctions")
        for resource in self.resources.values():
            if resource.resource_type == "AWS::StepFunctions::StateMachine":
                parsed_program(sfn.describe_state_machine(
                    stateMachineArn=resource.physical_id)["definition"])

    # -- use -------------------------------------------------------------------------------

    def saga_outputs(self, saga_name: str | None = None) -> dict[str, str]:
        """One saga's stack outputs by :data:`saga_kit.contract.OUTPUT_KEYS` name
        (``StateMachineArn``, ``StoreTableName``...); without a name the stack must hold one saga."""
        self._require_running()
        return saga_outputs(self.outputs, saga_name)

    def _require_running(self) -> None:
        if self._engine is None or self._session is None:
            raise LocalCloudError("this LocalCloud is not running; call start() or use it in a with block")

    def client(self, service: str) -> Any:
        """A boto3 client for ``service`` in the mocked account and region (cached per service)."""
        self._require_running()
        client = self._clients.get(service)
        if client is None:
            assert self._session is not None
            client = self._session.client(service, region_name=self.region)
            self._clients[service] = client
        return client

    def physical_id(self, logical_id_prefix: str) -> str:
        """The physical id of the one resource whose logical id starts with the prefix.

        CDK appends an 8-character hash to logical ids (``Worker11F36D0F``), so tests name
        resources by the construct id they wrote. When several resources match, one whose logical
        id is exactly the prefix plus such a hash wins: ``"Worker"`` is the function
        ``Worker11F36D0F``, not its ``WorkerServiceRole8543584E``. Otherwise, no match or more
        than one raises :class:`ResourceLookupError` listing the candidates.
        """
        matches = [r for r in self.resources.values() if r.logical_id.startswith(logical_id_prefix)]
        if len(matches) > 1:
            exact = [r for r in matches if _CDK_HASH.fullmatch(r.logical_id[len(logical_id_prefix) :])]
            if len(exact) == 1:
                matches = exact
        if len(matches) == 1:
            return matches[0].physical_id
        if not matches:
            hint = ""
            skipped = [k for k in self.skipped_resources if k.startswith(logical_id_prefix)]
            if skipped:
                hint = f" ({', '.join(skipped)} exist in the template but moto did not create them)"
            raise ResourceLookupError(
                f"no resource of {self.stack_name} has a logical id starting with {logical_id_prefix!r}{hint}"
            )
        names = ", ".join(sorted(f"{r.logical_id} ({r.resource_type})" for r in matches))
        raise ResourceLookupError(
            f"{len(matches)} resources of {self.stack_name} start with {logical_id_prefix!r}: {names}; "
            "use a longer prefix"
        )

    def _raise_harness_errors(self) -> None:
        if self._runner.harness_errors:
            raise self._runner.harness_errors[0]
        for delivery in (self._callback_delivery, self._stream_delivery):
            if delivery is not None:
                delivery.raise_if_failed()

    def wait_for_execution(self, execution_arn: str, timeout: float = 30.0) -> dict[str, Any]:
        """Poll ``describe_execution`` until the execution is no longer RUNNING; return it.

        Raises ``TimeoutError`` after ``timeout`` seconds, and re-raises a LocalCloud error (for
        example a code conflict) that happened inside an invocation during the execution, since
        such an error would otherwise only show up as an opaque task failure.
        """
        sfn = self.client("stepfunctions")
        deadline = time.monotonic() + timeout
        delay = _POLL_START
        while True:
            execution: dict[str, Any] = sfn.describe_execution(executionArn=execution_arn)
            if execution["status"] != "RUNNING":
                self._raise_harness_errors()
                return execution
            if time.monotonic() > deadline:
                self._raise_harness_errors()
                raise TimeoutError(f"execution {execution_arn} still RUNNING after {timeout} s")
            time.sleep(delay)
            delay = min(delay * 2, _POLL_MAX)

    @property
    def invocations(self) -> list[InvocationRecord]:
        """Every Lambda invocation finished so far in this process, oldest first: which function
        and how it ended (``error_type`` is ``None`` on success). Lets a test see that a late
        action really ran and was refused, not just that its effect is missing."""
        return self._runner.journal_snapshot()

    @property
    def access_denials(self) -> list[AccessDenial]:
        """Every request of a Lambda invocation refused so far in this process, oldest first:
        the role session (``assumed-role/<role>/<function>``), the IAM action and the resource.
        A handler may catch the ``AccessDenied`` error; this shows that it happened. Empty when
        IAM is not enforced."""
        engine = self._engine
        if engine is None:
            raise LocalCloudError("this LocalCloud is not running; call start() or use it in a with block")
        if engine.iam is None:
            return []
        return list(engine.iam.denials)

    def pump_event_sources(self, max_batches: int = 10_000) -> int:
        """Deliver queued SQS messages to this stack's Lambda event source mappings until the
        queues are empty, as Lambda's poller would; returns the number of batches delivered.

        A message whose processing fails is released at once (no visibility-timeout wait) and,
        after the queue's ``maxReceiveCount`` deliveries, moved to its dead-letter queue by SQS.
        See :mod:`saga_kit.local_cloud.event_sources`.
        """
        own = {r.physical_id for r in self.resources.values()
               if r.resource_type == "AWS::Lambda::Function"}
        delivered = pump_sqs_event_sources(self.client("lambda"), self.client("sqs"), self.region,
                                           max_batches, functions=own,
                                           skip=self.callback_workers)
        self._raise_harness_errors()
        return delivered

    def sweep_expired_items(self, now: float | None = None) -> dict[str, int]:
        """Deletes the items of this stack's tables whose TTL has passed at ``now`` (default:
        ``time.time()``, which :class:`~saga_kit.local_cloud.wall_clock.ShiftedWallClock` can move), as
        DynamoDB's TTL process would; moto never expires anything. Returns deletions per table.
        """
        tables = {}
        for logical_id, spec in self.template.get("Resources", {}).items():
            ttl = spec.get("Properties", {}).get("TimeToLiveSpecification") or {}
            if spec.get("Type") == "AWS::DynamoDB::Table" and ttl.get("Enabled"):
                tables[self.resources[logical_id].physical_id] = ttl["AttributeName"]
        return sweep_expired_items(self.client("dynamodb"), tables,
                                   time.time() if now is None else now)

    def wait_lambdas_idle(self, timeout: float = 30.0) -> None:
        """Wait until no in-process Lambda invocation is running.

        A Task that Step Functions timed out keeps its handler running in a worker thread, as the
        real function would keep running; wait for it before asserting on its side effects or
        stopping the cloud. Raises ``TimeoutError`` after ``timeout`` seconds.
        """
        self._runner.wait_idle(timeout)
        self._raise_harness_errors()
