"""Run deployed Lambda functions' real Python handlers in-process, under moto.

moto without Docker never runs function code. While a :class:`InProcessLambdaRunner` is
installed, every invocation that reaches moto's ``LambdaFunction._invoke_lambda`` (the API's
``Invoke``, Step Functions ``lambda:invoke`` tasks, SQS event source mappings) instead:

1. takes the function's code zip from the moto function object (``code_bytes``: moto read it from
   S3 when CloudFormation created the function) and extracts it once per code sha256; likewise
   each layer it declares (moto's ``LayerVersion.code_bytes``), whose ``python/`` directory goes
   on ``sys.path`` as ``/opt/python`` does on AWS; the AWS-managed Powertools layer, which moto
   does not have, counts as providing the Powertools packages installed here;
2. checks that every top-level name the handler's package imports at module level is provided
   by the code zip, a layer, the Lambda runtime or the standard library, and otherwise answers
   ``Runtime.ImportModuleError`` as Lambda would (in-process everything installed here would
   import; see :mod:`saga_kit.local_cloud.layers`);
3. puts the extracted directory on ``sys.path`` and imports the handler module, as the Lambda
   Python runtime does with ``/var/task``;
4. calls the handler with the event and a Lambda-like context, in the calling thread, with the
   function's environment variables visible through a thread-local overlay on ``os.environ``
   and, when IAM is enforced, with its role's credentials (see :mod:`saga_kit.local_cloud.iam`);
5. returns the JSON-encoded result, or a Lambda-style error payload (``errorType`` is the
   exception's class name, which Step Functions uses as the error name).
"""

from __future__ import annotations

import decimal
import hashlib
import importlib
import io
import json
import shutil
import sys
import sysconfig
import tempfile
import threading
import time
import traceback
import uuid
import zipfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from saga_kit.contract import TASK_TOKEN_FIELD
from saga_kit.local_cloud._patching import patched
from saga_kit.local_cloud.env_overlay import ThreadLocalEnviron, installed_thread_local_environ
from saga_kit.local_cloud.errors import CodeConflictError, LocalCloudError
from saga_kit.local_cloud.handler_time import HandlerTime, Stopwatch
from saga_kit.local_cloud.iam import IamEnforcer, RoleCredentials
from saga_kit.local_cloud.layers import (
    POWERTOOLS_LAYER_PROVIDES,
    ImportCheck,
    Provider,
    belongs_to,
    is_powertools_layer,
    layer_roots,
    top_level_names,
)
from saga_kit.local_cloud.moto_patches import DECLARED_LAYERS_ATTRIBUTE, recorded_function_layers


class LambdaContext:
    """The context object a Python handler receives, with the attributes real Lambda provides."""

    def __init__(
        self,
        *,
        function_name: str,
        function_version: str,
        invoked_function_arn: str,
        memory_limit_in_mb: int,
        timeout_seconds: float,
        log_group_name: str,
        log_stream_name: str,
        stopwatch: Stopwatch | None = None,
    ) -> None:
        self.function_name = function_name
        self.function_version = function_version
        self.invoked_function_arn = invoked_function_arn
        self.memory_limit_in_mb = memory_limit_in_mb
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = log_group_name
        self.log_stream_name = log_stream_name
        self.identity: Any = None
        self.client_context: Any = None
        self._timeout = timeout_seconds
        self._stopwatch = stopwatch or HandlerTime().stopwatch()

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before the function's configured Timeout, in handler time (see
        :mod:`saga_kit.local_cloud.handler_time`)."""
        return max(0, int((self._timeout - self._stopwatch.elapsed()) * 1000))


@dataclass
class _CodePackage:
    """One extracted zip (a function's code or a layer): where it lives and what it provides.

    ``roots`` maps each directory of the zip that goes on ``sys.path`` (``""`` for a code zip;
    ``python/`` and any ``python/lib/python3.X/site-packages/`` for a layer) to the importable
    top-level names under it, each with a hash of its files.
    """

    digest: str
    directory: Path
    top_level: dict[str, str]  # importable name -> hash of its files, over all roots
    first_function: str
    label: str = ""
    roots: dict[str, dict[str, str]] = field(default_factory=dict)

    def providers(self) -> list[Provider]:
        """One import source per root, for :class:`~saga_kit.local_cloud.layers.ImportCheck`."""
        return [Provider(self.label, frozenset(names), self.directory / root)
                for root, names in self.roots.items()]


@dataclass(frozen=True)
class _FunctionCode:
    """Everything one function imports from: its code zip, then its layers in declared order."""

    code: _CodePackage
    layers: tuple[_CodePackage, ...]
    powertools: bool

    def key(self) -> tuple[str, ...]:
        return (self.code.digest, *(layer.digest for layer in self.layers), str(self.powertools))

    def import_check(self) -> ImportCheck:
        providers = self.code.providers()
        for layer in self.layers:
            providers += layer.providers()
        if self.powertools:
            providers.append(Provider("the AWS-managed Powertools layer", POWERTOOLS_LAYER_PROVIDES))
        return ImportCheck(providers)


@dataclass
class _Invocation:
    """Counters for in-flight invocations, shared with ``wait_idle``."""

    running: int = 0
    condition: threading.Condition = field(default_factory=threading.Condition)


@dataclass(frozen=True)
class InvocationRecord:
    """One finished in-process invocation: which function, and how it ended."""

    function_name: str
    error_type: str | None
    error_message: str | None
    started_at: float
    finished_at: float


def _task_tokens(event: Any) -> list[str]:
    """The callback task tokens in an SQS event's commands (none for any other event)."""
    if isinstance(event, (str, bytes)):
        try:
            event = json.loads(event)
        except ValueError:
            return []
    if not isinstance(event, dict) or not isinstance(event.get("Records"), list):
        return []
    tokens = []
    for record in event["Records"]:
        try:
            body = json.loads(record.get("body") or "")
        except (TypeError, ValueError, AttributeError):
            continue
        if isinstance(body, dict) and isinstance(body.get(TASK_TOKEN_FIELD), str):
            tokens.append(body[TASK_TOKEN_FIELD])
    return tokens


def parse_handler(handler: str) -> tuple[str, str]:
    """Split a Lambda Python handler string into (module, attribute).

    ``"pkg.module.function"`` -> ``("pkg.module", "function")``; the runtime also accepts slashes
    (``"pkg/module.function"``).
    """
    module, _, attribute = handler.replace("/", ".").rpartition(".")
    if not module or not attribute:
        raise LocalCloudError(f"handler {handler!r} is not of the form 'module.function'")
    return module, attribute


def declared_layers(fn: Any) -> list[str]:
    """The layer version ARNs a function declares, in order.

    CloudFormation-created functions carry what the template declared (recorded by
    :func:`~saga_kit.local_cloud.moto_patches.recorded_function_layers`, since moto drops it);
    functions created through the API carry moto's own ``layers`` list.
    """
    recorded = getattr(fn, DECLARED_LAYERS_ATTRIBUTE, None)
    if recorded is not None:
        return list(recorded)
    return [str(layer["Arn"]) for layer in getattr(fn, "layers", None) or []]


def _is_under(location: str, root: Path) -> bool:
    """Whether a path string lies inside ``root``."""
    return Path(location).is_relative_to(root)


def _is_installed_location(location: str) -> bool:
    """Whether a module file lives in an installed environment rather than in project source."""
    parts = Path(location).parts
    if "site-packages" in parts or "dist-packages" in parts:
        return True
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    return Path(location).is_relative_to(stdlib)


def _json_default(value: Any) -> Any:
    """Encode what the Lambda Python runtime encodes beyond plain JSON (DynamoDB's Decimals)."""
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _error_payload(error_type: str, message: str, request_id: str, stack: list[str]) -> str:
    return json.dumps(
        {
            "errorMessage": message,
            "errorType": error_type,
            "requestId": request_id,
            "stackTrace": stack,
        }
    )


class InProcessLambdaRunner:
    """Replaces moto's Lambda invocation with in-process calls of the real handlers.

    There is one runner per running moto (clouds that overlap share it, as they share
    ``sys.modules``); :meth:`installed` patches moto and ``os.environ`` while it runs and undoes
    everything (patches, ``sys.path`` entries, imported handler modules, extracted code) on exit.
    """

    def __init__(self, region: str, handler_time: HandlerTime | None = None,
                 iam: IamEnforcer | None = None) -> None:
        self.region = region
        #: How handler time is counted for Lambda timeouts (wall time unless dilated).
        self.handler_time = handler_time or HandlerTime()
        #: When set, each invocation runs with its role's credentials and moto checks its
        #: requests (see :mod:`saga_kit.local_cloud.iam`); installed by the caller.
        self.iam = iam
        self._work_dir: Path | None = None
        self._packages: dict[tuple[str, str], _CodePackage] = {}
        self._providers: dict[str, tuple[str, _CodePackage]] = {}
        self._missing_imports: dict[tuple[str, ...], str | None] = {}
        self._lock = threading.RLock()
        self._inflight = _Invocation()
        self._environ: ThreadLocalEnviron | None = None
        self.harness_errors: list[LocalCloudError] = []
        #: Every finished invocation, oldest first (see :attr:`LocalCloud.invocations`).
        self.journal: list[InvocationRecord] = []

    # -- lifecycle -------------------------------------------------------------------------

    @contextmanager
    def installed(self) -> Iterator[InProcessLambdaRunner]:
        """Patch moto so invocations run here, for the duration of the ``with`` block."""
        from moto.awslambda.models import LambdaBackend, LambdaFunction
        from moto.awslambda_simple.models import LambdaSimpleBackend

        runner = self

        def _invoke_lambda(fn: LambdaFunction, event: Any = None) -> tuple[str, bool, str]:
            return runner.invoke(fn, event)

        with ExitStack() as stack:
            self._work_dir = Path(tempfile.mkdtemp(prefix="local_cloud_code_"))
            stack.callback(self._cleanup)
            self._environ = stack.enter_context(installed_thread_local_environ())
            stack.enter_context(patched(LambdaFunction, "_invoke_lambda", _invoke_lambda))
            # With use_docker=False moto answers Invoke from LambdaSimpleBackend, which returns
            # canned text and never reaches _invoke_lambda; route it to the full backend's invoke.
            stack.enter_context(patched(LambdaSimpleBackend, "invoke", LambdaBackend.invoke))
            stack.enter_context(recorded_function_layers())
            yield self

    def _cleanup(self) -> None:
        """Forget imported handler code and delete the extracted zips."""
        work_dir = self._work_dir
        if work_dir is None:
            return
        sys.path[:] = [entry for entry in sys.path if not _is_under(entry, work_dir)]
        for name, module in list(sys.modules.items()):
            origin = getattr(module, "__file__", None) or ""
            paths = [str(p) for p in (getattr(module, "__path__", None) or [])]
            if any(_is_under(location, work_dir) for location in [origin, *paths] if location):
                del sys.modules[name]
        importlib.invalidate_caches()
        shutil.rmtree(work_dir, ignore_errors=True)
        self._packages.clear()
        self._providers.clear()
        self._missing_imports.clear()
        self._work_dir = None

    # -- code ------------------------------------------------------------------------------

    def prepare(self, fn: Any) -> _CodePackage:
        """Extract ``fn``'s code zip and its layers (once per sha256) and check them.

        Raises :class:`CodeConflictError` when a zip provides a top-level Python name that
        another zip (code or layer) also provides with different contents, or that this process
        already imported from project source whose files differ from the zip's; and
        :class:`LocalCloudError` when the function declares a layer moto does not know that is
        not the AWS-managed Powertools layer.
        """
        return self._function_code(fn).code

    def _function_code(self, fn: Any) -> _FunctionCode:
        with self._lock:
            if self._work_dir is None:
                raise LocalCloudError("the Lambda runner is not installed")
            code: bytes = getattr(fn, "code_bytes", b"") or b""
            if not code:
                location = ""
                if isinstance(fn.code, dict) and "S3Key" in fn.code:
                    location = f" s3://{fn.code.get('S3Bucket')}/{fn.code['S3Key']}"
                raise LocalCloudError(
                    f"function {fn.function_name} has no code in moto: its code object{location} "
                    "was not found when the function was created (moto creates it anyway)"
                )
            digest = getattr(fn, "code_digest", "") or hashlib.sha256(code).hexdigest()
            package = self._packages.get(("code", digest))
            if package is None:
                package = self._extract(
                    f"the code zip of Lambda function {fn.function_name}", fn.function_name,
                    ("code", digest), code, layer=False,
                )
            layers: list[_CodePackage] = []
            powertools = False
            for arn in declared_layers(fn):
                if is_powertools_layer(arn):
                    powertools = True
                    continue
                layers.append(self._layer_package(fn, arn))
            return _FunctionCode(package, tuple(layers), powertools)

    def _layer_package(self, fn: Any, arn: str) -> _CodePackage:
        """The extracted layer version ``arn`` (from moto's Lambda backend), once per sha256."""
        from moto.awslambda.utils import get_backend

        version = get_backend(str(fn.account_id), str(fn.region)).layers_versions_by_arn(arn)
        if version is None:
            raise LocalCloudError(
                f"function {fn.function_name} declares layer {arn}, which moto does not know: it "
                "is neither a layer version of a deployed template nor the AWS-managed Powertools "
                "layer (AWSLambdaPowertoolsPythonV3, account 017000801446), so LocalCloud cannot "
                "give the function its code"
            )
        code: bytes = getattr(version, "code_bytes", b"") or b""
        if not code:
            raise LocalCloudError(
                f"layer {arn} of function {fn.function_name} has no content in moto: its S3 "
                "object was not found when the layer version was created"
            )
        digest = getattr(version, "code_digest", "") or hashlib.sha256(code).hexdigest()
        package = self._packages.get(("layer", digest))
        if package is None:
            package = self._extract(f"layer {arn}", fn.function_name, ("layer", digest), code,
                                    layer=True)
        return package

    def _extract(self, label: str, function_name: str, key: tuple[str, str], code: bytes, *,
                 layer: bool) -> _CodePackage:
        assert self._work_dir is not None
        kind, digest = key
        with zipfile.ZipFile(io.BytesIO(code)) as archive:
            roots = {root: top_level_names(archive, root)
                     for root in (layer_roots(archive) if layer else [""])}
            for names in roots.values():
                for name, content_hash in names.items():
                    known = self._providers.get(name)
                    if known is not None and known[0] != content_hash:
                        raise CodeConflictError(
                            f"{known[1].label} (first used by Lambda function "
                            f"{known[1].first_function}) and {label} (used by {function_name}) "
                            f"both provide the top-level Python name {name!r} with different "
                            "contents; in one process only one of them can be imported. Ship "
                            "identical copies, or give the packages distinct names."
                        )
            for root, names in roots.items():
                self._check_shadowing(label, archive, root, sorted(names))
            directory = self._work_dir / f"{kind}-{digest[:16]}"
            archive.extractall(directory)
        top_level = {name: h for names in roots.values() for name, h in names.items()}
        package = _CodePackage(digest, directory, top_level, function_name, label, roots)
        for name, content_hash in top_level.items():
            self._providers.setdefault(name, (content_hash, package))
        self._packages[key] = package
        for root in roots:
            sys.path.insert(0, str(directory / root))
        importlib.invalidate_caches()
        return package

    def _check_shadowing(self, label: str, archive: zipfile.ZipFile, root: str,
                         names: list[str]) -> None:
        """Refuse a zip whose project package is already imported from a different source.

        Extracted zips go first on ``sys.path``, but a name already in ``sys.modules`` is never
        imported again, so the zip's copy would be shadowed. That is harmless when the loaded
        copy's files are the zip's files (unit tests importing the same source tree); when any
        file differs the function would silently run other code, so this raises. Installed
        libraries (site-packages, the standard library) are left alone: a vendored copy in the
        zip loses to the environment's, as documented in the README. Paths are compared
        relative to ``root`` (a layer's ``python/``).
        """
        assert self._work_dir is not None
        work_dir = self._work_dir
        for name in names:
            loaded = sys.modules.get(name)
            if loaded is None:
                continue
            file_ = getattr(loaded, "__file__", None)
            paths = [str(p) for p in (getattr(loaded, "__path__", None) or [])]
            locations = [loc for loc in [file_, *paths] if loc]
            if not locations or any(_is_under(loc, work_dir) for loc in locations):
                continue
            if any(_is_installed_location(loc) for loc in locations):
                continue
            base = Path(paths[0]).parent if paths else Path(locations[0]).parent
            for info in archive.infolist():
                relative = info.filename[len(root):]
                if info.is_dir() or not info.filename.startswith(root) or not belongs_to(relative, name):
                    continue
                if "__pycache__" in relative.split("/") or relative.endswith(".pyc"):
                    continue
                on_disk = base / relative
                if not on_disk.is_file() or on_disk.read_bytes() != archive.read(info):
                    raise CodeConflictError(
                        f"{label} provides {name!r}, but this process already imported {name!r} "
                        f"from {locations[0]}, and {relative} differs there; the function would "
                        "run that copy instead of its own. Rebuild the assembly from the current "
                        "source, or do not import the package from elsewhere in the same process."
                    )

    def _missing_import(self, fn: Any, function_code: _FunctionCode) -> str | None:
        """The first top-level name the handler's package imports that the function does not
        have (see :class:`~saga_kit.local_cloud.layers.ImportCheck`), cached per code and layers."""
        try:
            module_name = parse_handler(fn.handler)[0]
        except LocalCloudError:
            return None  # importing it reports the malformed handler
        key = (*function_code.key(), module_name.partition(".")[0])
        with self._lock:
            if key not in self._missing_imports:
                self._missing_imports[key] = function_code.import_check().missing(module_name)
            return self._missing_imports[key]

    # -- invocation ------------------------------------------------------------------------

    def invoke(self, fn: Any, event: Any) -> tuple[str, bool, str]:
        """Run ``fn``'s handler with ``event``; returns (payload JSON, errored, logs)."""
        with self._inflight.condition:
            self._inflight.running += 1
        started = time.time()
        payload, errored = "null", True
        try:
            # A callback worker's invocation paces the callback waits of its commands' tasks.
            with self.handler_time.working_on(_task_tokens(event)):
                payload, errored, logs = self._invoke(fn, event)
            return payload, errored, logs
        finally:
            error_type = error_message = None
            if errored:
                try:
                    detail = json.loads(payload)
                    error_type, error_message = detail.get("errorType"), detail.get("errorMessage")
                except (ValueError, AttributeError):
                    error_type = "Unknown"
            with self._inflight.condition:
                self.journal.append(InvocationRecord(fn.function_name, error_type, error_message,
                                                     started, time.time()))
                self._inflight.running -= 1
                self._inflight.condition.notify_all()

    def _invoke(self, fn: Any, event: Any) -> tuple[str, bool, str]:
        if event is None or (isinstance(event, str) and event == "{}"):
            event = {}  # moto passes the text "{}" when the caller sent no payload
        timeout = float(fn.timeout or 3)
        version = str(fn.version)
        now = datetime.now(UTC)
        stream = f"{now:%Y/%m/%d}/[{version}]{uuid.uuid4().hex}"
        context = LambdaContext(
            function_name=fn.function_name,
            function_version=version,
            invoked_function_arn=fn.function_arn,
            memory_limit_in_mb=int(fn.memory_size),
            timeout_seconds=timeout,
            log_group_name=fn.logs_group_name,
            log_stream_name=stream,
            stopwatch=self.handler_time.stopwatch(),
        )
        request_id = context.aws_request_id

        runtime = str(fn.run_time or "")
        if not runtime.startswith("python"):
            return self._harness_failure(
                "LocalCloud.UnsupportedRuntime",
                f"function {fn.function_name} has runtime {runtime or 'none'}; LocalCloud runs "
                "only Python handlers in-process",
                request_id,
            )
        try:
            function_code = self._function_code(fn)
            credentials = self.iam.credentials_for(fn) if self.iam is not None else None
        except LocalCloudError as exc:
            self.harness_errors.append(exc)
            raise
        package = function_code.code
        missing = self._missing_import(fn, function_code)
        if missing is not None:
            # On AWS the import fails: nothing on the function's sys.path provides the name. Here
            # the test environment would import it anyway, so the invocation fails as it would.
            module_name = fn.handler.replace("/", ".").rpartition(".")[0]
            message = f"Unable to import module '{module_name}': No module named '{missing}'"
            return _error_payload("Runtime.ImportModuleError", message, request_id, []), True, ""

        environment = {str(k): str(v) for k, v in (fn.environment_vars or {}).items()}
        environment.update(
            {
                "AWS_LAMBDA_FUNCTION_NAME": fn.function_name,
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(fn.memory_size),
                "AWS_LAMBDA_FUNCTION_TIMEOUT": str(int(timeout)),
                "AWS_LAMBDA_FUNCTION_VERSION": version,
                "AWS_LAMBDA_LOG_GROUP_NAME": fn.logs_group_name,
                "AWS_LAMBDA_LOG_STREAM_NAME": stream,
                "AWS_EXECUTION_ENV": f"AWS_Lambda_{runtime}",
                "AWS_REGION": fn.region,
                "AWS_DEFAULT_REGION": fn.region,
                "LAMBDA_TASK_ROOT": str(package.directory),
                "_HANDLER": fn.handler,
                **(credentials.environment() if credentials is not None else {}),
            }
        )
        assert self._environ is not None
        stopwatch = self.handler_time.stopwatch()
        with self._environ.overlay(environment), self._acting_as(credentials):
            try:
                handler = self._load_handler(fn.handler)
            except Exception as exc:
                return self._import_failure(fn.handler, exc, request_id)
            try:
                result = handler(event, context)
            except Exception as exc:
                stack = traceback.format_list(traceback.extract_tb(exc.__traceback__)[1:])
                payload = _error_payload(type(exc).__name__, str(exc), request_id, stack)
                return payload, True, ""
        if stopwatch.elapsed() > timeout:
            # Real Lambda would have stopped the handler; in-process it ran to the end, so its
            # side effects happened, but the caller sees the timeout error Lambda reports.
            message = f"RequestId: {request_id} Error: Task timed out after {timeout:.2f} seconds"
            return _error_payload("Sandbox.Timedout", message, request_id, []), True, ""
        try:
            return json.dumps(result, default=_json_default), False, ""
        except (TypeError, ValueError) as exc:
            message = f"Unable to marshal response: {exc}"
            return _error_payload("Runtime.MarshalError", message, request_id, []), True, ""

    @contextmanager
    def _acting_as(self, credentials: RoleCredentials | None) -> Iterator[None]:
        """Sign this thread's requests with the function's role while its code runs."""
        if self.iam is None:
            yield
            return
        with self.iam.acting_as(credentials):
            yield

    def _load_handler(self, handler: str) -> Callable[[Any, Any], Any]:
        module_name, attribute = parse_handler(handler)
        module = importlib.import_module(module_name)
        try:
            function = getattr(module, attribute)
        except AttributeError:
            raise _HandlerNotFound(f"Handler '{attribute}' missing on module '{module_name}'") from None
        if not callable(function):
            raise _HandlerNotFound(f"Handler '{attribute}' on module '{module_name}' is not callable")
        return function  # type: ignore[no-any-return]

    def _import_failure(self, handler: str, exc: Exception, request_id: str) -> tuple[str, bool, str]:
        if isinstance(exc, _HandlerNotFound):
            return _error_payload("Runtime.HandlerNotFound", str(exc), request_id, []), True, ""
        module_name = handler.rpartition(".")[0]
        message = f"Unable to import module '{module_name}': {exc}"
        stack = traceback.format_list(traceback.extract_tb(exc.__traceback__))
        return _error_payload("Runtime.ImportModuleError", message, request_id, stack), True, ""

    def _harness_failure(self, error_type: str, message: str, request_id: str) -> tuple[str, bool, str]:
        self.harness_errors.append(LocalCloudError(message))
        return _error_payload(error_type, message, request_id, []), True, ""

    # -- waiting ---------------------------------------------------------------------------

    def journal_snapshot(self) -> list[InvocationRecord]:
        """A copy of the invocation journal, taken under the runner's lock."""
        with self._inflight.condition:
            return list(self.journal)

    @property
    def running(self) -> int:
        """How many invocations are executing right now."""
        with self._inflight.condition:
            return self._inflight.running

    def wait_idle(self, timeout: float) -> None:
        """Block until no invocation is running; ``TimeoutError`` after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._inflight.condition:
            while self._inflight.running:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"{self._inflight.running} Lambda invocation(s) still running after {timeout} s"
                    )
                self._inflight.condition.wait(remaining)


class _HandlerNotFound(Exception):
    """The handler module imported but has no such callable."""
