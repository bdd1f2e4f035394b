"""``saga serve``: synthesize a CDK app, deploy one of its stacks into the local cloud, serve it.

Any Saga Kit app can be served: the app is synthesized the way the cdk CLI does it (``python
<app>`` with ``CDK_OUTDIR`` pointing at a fresh directory and the context of ``cdk.json``), or an
already synthesized cloud assembly is deployed as it is. Nothing here knows the reference app.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

from saga_kit.cli.targets import StackSagas

#: Cloud assembly artifact types (see the cloud assembly schema).
_STACK_ARTIFACT = "aws:cloudformation:stack"
_NESTED_ASSEMBLY_ARTIFACT = "cdk:cloud-assembly"
#: How much of a failed synthesis' stderr is shown.
_SYNTH_ERROR_TAIL_CHARS = 3000


class ServeError(RuntimeError):
    """The app, the assembly, the stack or the seed named cannot be used; the message says
    what exists instead."""


class SynthError(ServeError):
    """The app failed to synthesize; the message ends with what it printed."""


def synthesize(app: Path, outdir: Path, *, cwd: Path | None = None) -> Path:
    """Synthesizes the CDK app ``app`` (a Python file) into ``outdir``, as ``cdk synth`` would.

    The app runs as ``python <app>`` in its own process, in ``cwd`` (default: the current
    directory, where the cdk CLI runs it too), with ``CDK_OUTDIR`` set to ``outdir`` and
    ``CDK_CONTEXT_JSON`` holding the context of ``cdk.json`` and ``cdk.context.json`` there, so
    feature flags apply as they do for ``cdk deploy``. Returns ``outdir``.
    """
    workdir = cwd or Path.cwd()
    _require_app(app)
    env = {**os.environ, "CDK_OUTDIR": str(outdir)}
    env.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    context = _cdk_context(workdir)
    if context:
        env["CDK_CONTEXT_JSON"] = json.dumps(context)
    finished = subprocess.run([sys.executable, str(app)], cwd=workdir, env=env,
                              capture_output=True, text=True, check=False)
    if finished.returncode != 0:
        tail = (finished.stderr or finished.stdout)[-_SYNTH_ERROR_TAIL_CHARS:]
        raise SynthError(f"synthesizing {app} failed (exit {finished.returncode}):\n{tail}")
    if not (outdir / "manifest.json").is_file():
        raise SynthError(f"{app} ran but wrote no cloud assembly: does it call app.synth()?")
    return outdir


def _require_app(app: Path) -> None:
    if not app.is_file():
        raise ServeError(f"no CDK app at {app}: run the command in your CDK app's directory, or "
                         "pass --app FILE or --assembly DIR")


def _cdk_context(workdir: Path) -> dict[str, Any]:
    """The context the cdk CLI would pass: ``cdk.json``'s, then ``cdk.context.json``'s."""
    context: dict[str, Any] = {}
    for name, key in (("cdk.json", "context"), ("cdk.context.json", None)):
        path = workdir / name
        if not path.is_file():
            continue
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as error:
            raise ServeError(f"{path} is not valid JSON: {error}") from None
        found = loaded.get(key, {}) if key else loaded
        if isinstance(found, dict):
            context.update(found)
    return context


def stacks_in_assembly(assembly_dir: Path) -> list[str]:
    """The deployed names of the stacks in a cloud assembly (nested stages included)."""
    manifest_path = assembly_dir / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ServeError(f"{assembly_dir} is not a cloud assembly (no manifest.json)") from None
    names: list[str] = []
    for artifact_id, artifact in manifest.get("artifacts", {}).items():
        properties = artifact.get("properties", {})
        if artifact.get("type") == _STACK_ARTIFACT:
            names.append(properties.get("stackName", artifact_id))
        elif artifact.get("type") == _NESTED_ASSEMBLY_ARTIFACT and properties.get("directoryName"):
            names.extend(stacks_in_assembly(assembly_dir / properties["directoryName"]))
    return names


def pick_stack(assembly_dir: Path, stack: str | None) -> str:
    """``stack`` if the assembly has it; without one, the assembly's only stack."""
    names = stacks_in_assembly(assembly_dir)
    if stack is None:
        if len(names) == 1:
            return names[0]
        raise ServeError(f"the app has {len(names)} stacks ({', '.join(names) or 'none'}): "
                         "name one with --stack")
    if stack not in names:
        raise ServeError(f"the app has no stack {stack}; its stacks: {', '.join(names) or 'none'}")
    return stack


@contextmanager
def cloud_assembly(app: Path, assembly: Path | None,
                   on_progress: Callable[[str], None] = lambda _message: None) -> Iterator[Path]:
    """The given assembly, or the app synthesized into a temporary one (removed afterwards)."""
    if assembly is not None:
        if not (assembly / "manifest.json").is_file():
            raise ServeError(f"{assembly} is not a cloud assembly (no manifest.json)")
        yield assembly
        return
    _require_app(app)
    with tempfile.TemporaryDirectory(prefix="saga-serve-") as outdir:
        on_progress(f"synthesizing {app}")
        yield synthesize(app, Path(outdir))


def load_seed(path: Path) -> dict[str, list[dict[str, Any]]]:
    """Reads a seed file: ``{"<stack output naming a table>": [item, ...]}``, items in plain
    JSON (numbers become DynamoDB numbers)."""
    try:
        seed = json.loads(path.read_text(encoding="utf-8"), parse_float=Decimal)
    except (OSError, ValueError) as error:
        raise ServeError(f"cannot read the seed file {path}: {error}") from None
    if not isinstance(seed, dict) or not all(
            isinstance(items, list) and all(isinstance(i, dict) for i in items)
            for items in seed.values()):
        raise ServeError(f"{path}: a seed file is an object of lists of items, keyed by the "
                         'stack output that names each table: {"InventoryTableName": [{...}]}')
    return seed


def seed_tables(cloud: Any, seed: dict[str, list[dict[str, Any]]]) -> dict[str, int]:
    """Puts the seed's items into the tables its keys name (stack outputs); returns how many
    items went into each."""
    from boto3.dynamodb.types import TypeSerializer

    unknown = sorted(set(seed) - set(cloud.outputs))
    if unknown:
        raise ServeError(f"the seed names {', '.join(unknown)}, which the stack does not output; "
                         f"its outputs: {', '.join(sorted(cloud.outputs))}")
    serializer = TypeSerializer()
    dynamodb = cloud.client("dynamodb")
    for output, items in seed.items():
        for item in items:
            dynamodb.put_item(TableName=cloud.outputs[output],
                              Item={k: serializer.serialize(v) for k, v in item.items()})
    return {output: len(items) for output, items in seed.items()}


def serve(*, app: Path = Path("app.py"), assembly: Path | None = None, stack: str | None = None,
          host: str, api_port: int, aws_port: int | None, instant_retries: bool,
          seed: Path | None = None, announce: Callable[[dict[str, Any]], None],
          on_progress: Callable[[str], None] = lambda _message: None,
          stop_event: threading.Event | None = None) -> None:
    """Deploys ``stack`` of the app (or assembly) into the local cloud and serves it until
    SIGINT/SIGTERM (or ``stop_event``); calls ``announce`` once ready.

    Raises :class:`ServeError` for an app that does not synthesize, a stack that is not there,
    a stack without a saga API, or a bad seed file; before anything is served.
    """
    from saga_kit.local_cloud import LocalCloud
    from saga_kit.local_cloud.errors import LocalCloudError
    from saga_kit.local_cloud.server import LocalSagaServer

    seed_items = load_seed(seed) if seed is not None else None
    stop = stop_event or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
    with cloud_assembly(app, assembly, on_progress) as assembly_dir:
        stack_name = pick_stack(assembly_dir, stack)
        on_progress(f"deploying {stack_name} into the local cloud")
        with LocalCloud(assembly_dir, stack_name, instant_retries=instant_retries) as cloud:
            try:
                server = LocalSagaServer(cloud, host=host, api_port=api_port, aws_port=aws_port)
            except LocalCloudError as error:
                raise ServeError(f"stack {stack_name} cannot be served: {error} (saga serve "
                                 "needs a SagaApi in the stack)") from None
            with server:
                seeded = seed_tables(cloud, seed_items) if seed_items is not None else None
                sagas = StackSagas.from_outputs(stack_name, cloud.outputs, _descriptions(cloud))
                announce({
                    "ready": True,
                    "api_url": server.api_url,
                    "endpoint_url": server.endpoint_url,
                    "region": cloud.region,
                    "stack": cloud.stack_name,
                    "sagas": {name: sagas.saga_outputs(name)[1] for name in sagas.sagas},
                    "outputs": cloud.outputs,
                    "seeded": seeded,
                })
                stop.wait()


def _descriptions(cloud: Any) -> dict[str, str]:
    outputs = cloud.template.get("Outputs", {})
    return {key: str(value.get("Description", "")) for key, value in outputs.items()}


def announce_json(info: dict[str, Any]) -> None:
    """The ready line: one JSON object on stdout, flushed (scripts and tests wait for it)."""
    print(json.dumps(info), flush=True)
