"""The sagas of a synthesized CDK app, as the Prometheus artifacts need them.

Everything is read from the cloud assembly (``cdk.out``), so the artifacts describe what would be
deployed, whatever the app's code looks like: each stack template's Lambda functions carry the
saga type, step, phase and metrics namespace in their environment (the kit's own functions, such
as the redrive or the stuck detector, have no step), and the queues carry the ``saga-kit:saga``
tag and, for most, the name the kit gives them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from saga_kit.contract import METRICS_NAMESPACE, SAGA_TAG, Env, output_key

__all__ = [
    "DEFAULT_BACKLOG_SECONDS",
    "AssemblyError",
    "MonitoredSaga",
    "SagaQueue",
    "sagas_from_assembly",
]

#: Age of the oldest parked compensation that means the compensation queue is not draining,
#: when the template has no backlog alarm to take it from (the construct's default).
DEFAULT_BACKLOG_SECONDS: Final = 15 * 60

# What a saga's queue is for.
COMPENSATION: Final = "compensation"
COMPENSATION_DLQ: Final = "compensation_dlq"
#: A queue that feeds a handler and has a DLQ of its own (a callback step's command queue).
COMMANDS: Final = "commands"
#: Any other dead-letter queue of the saga (the status-event and outcome-metric functions').
DEAD_LETTER: Final = "dead_letter"


#: Cloud assembly artifact types (the cloud assembly schema's).
_STACK: Final = "aws:cloudformation:stack"
_NESTED_ASSEMBLY: Final = "cdk:cloud-assembly"


class AssemblyError(Exception):
    """The directory is not a cloud assembly, or holds no saga; the message says which."""


@dataclass(frozen=True)
class SagaQueue:
    """One SQS queue of a saga.

    Attributes:
        logical_id: The queue's logical id in its stack.
        role: ``compensation``, ``compensation_dlq``, ``commands`` or ``dead_letter``.
        name: The queue name the template sets, or None when CloudFormation makes one up (then
            only the ``saga-kit:saga`` tag tells the saga's queues apart from others).
    """

    logical_id: str
    role: str
    name: str | None

    @property
    def is_dead_letter(self) -> bool:
        """Whether messages here wait for an operator rather than for a consumer."""
        return self.role in (COMPENSATION_DLQ, DEAD_LETTER)


@dataclass(frozen=True)
class MonitoredSaga:
    """What the exporter configuration, the alert rules and the dashboard need of one saga.

    Attributes:
        name: The saga's name: its ``SagaType`` dimension and ``saga-kit:saga`` tag value.
        namespace: CloudWatch namespace of its metrics.
        steps: Its steps, in the order the template declares their functions.
        compensated_steps: The steps that have a compensation.
        stack: The stack that deploys it (the CLI's ``--stack``).
        queues: Its SQS queues.
        backlog_seconds: Age of the oldest message in the compensation queue past which the
            queue counts as not draining (the construct's backlog alarm threshold).
    """

    name: str
    namespace: str = METRICS_NAMESPACE
    steps: tuple[str, ...] = ()
    compensated_steps: tuple[str, ...] = ()
    stack: str = ""
    queues: tuple[SagaQueue, ...] = field(default=())
    backlog_seconds: float = DEFAULT_BACKLOG_SECONDS

    def queue(self, role: str) -> SagaQueue | None:
        """The saga's first queue of ``role``, if it has one."""
        return next((q for q in self.queues if q.role == role), None)


def sagas_from_assembly(assembly_dir: Path) -> list[MonitoredSaga]:
    """The sagas of every stack of a cloud assembly, by stack then saga name.

    Raises :class:`AssemblyError` when ``assembly_dir`` has no ``manifest.json``.
    """
    manifest_path = Path(assembly_dir) / "manifest.json"
    if not manifest_path.is_file():
        raise AssemblyError(f"{assembly_dir} is not a cloud assembly (no manifest.json): pass the "
                            "directory cdk synth wrote (cdk.out), or --app to synthesize one")
    manifest = json.loads(manifest_path.read_text())
    sagas: list[MonitoredSaga] = []
    for artifact_id, artifact in sorted(manifest.get("artifacts", {}).items()):
        properties = artifact.get("properties", {})
        if artifact.get("type") == _NESTED_ASSEMBLY and properties.get("directoryName"):
            # A Stage's stacks live in a nested assembly of their own.
            sagas.extend(sagas_from_assembly(manifest_path.parent / properties["directoryName"]))
            continue
        if artifact.get("type") != _STACK or not properties.get("templateFile"):
            continue
        template = json.loads((manifest_path.parent / properties["templateFile"]).read_text())
        sagas.extend(_stack_sagas(properties.get("stackName") or artifact_id, template))
    return sagas


def _stack_sagas(stack: str, template: dict[str, Any]) -> list[MonitoredSaga]:
    resources: dict[str, Any] = template.get("Resources", {})
    found: dict[str, dict[str, Any]] = {}
    for resource in resources.values():
        if resource.get("Type") != "AWS::Lambda::Function":
            continue
        env = resource.get("Properties", {}).get("Environment", {}).get("Variables", {})
        saga = env.get(Env.SAGA_TYPE)
        if not isinstance(saga, str):
            continue
        entry = found.setdefault(saga, {"namespace": None, "steps": [], "compensated": []})
        namespace = env.get("POWERTOOLS_METRICS_NAMESPACE")
        if isinstance(namespace, str) and entry["namespace"] is None:
            entry["namespace"] = namespace
        step = env.get(Env.STEP)
        if not isinstance(step, str):
            continue  # one of the kit's own functions (redrive, stuck detector...)
        if step not in entry["steps"]:
            entry["steps"].append(step)
        if env.get(Env.PHASE) == "compensation" and step not in entry["compensated"]:
            entry["compensated"].append(step)
    sagas = []
    for name, entry in sorted(found.items()):
        queues = _saga_queues(name, template)
        sagas.append(MonitoredSaga(
            name=name, namespace=entry["namespace"] or METRICS_NAMESPACE,
            steps=tuple(entry["steps"]), compensated_steps=tuple(entry["compensated"]),
            stack=stack, queues=queues,
            backlog_seconds=_backlog_threshold(template, queues)))
    return sagas


def _saga_queues(saga: str, template: dict[str, Any]) -> tuple[SagaQueue, ...]:
    """The saga's queues (tagged with its name), each with what it is for."""
    resources: dict[str, Any] = template.get("Resources", {})
    outputs: dict[str, Any] = template.get("Outputs", {})

    def output_queue(name: str) -> str | None:
        value = outputs.get(output_key(saga, name), {}).get("Value")
        return _get_att_target(value)

    compensation = output_queue("CompensationQueueArn")
    compensation_dlq = output_queue("CompensationDeadLetterQueueArn")
    tagged = {lid: r for lid, r in resources.items()
              if r.get("Type") == "AWS::SQS::Queue" and _tag(r, SAGA_TAG) == saga}
    # A queue with a redrive policy is consumed by a handler; the queue it names is its DLQ.
    dlq_of_consumed = {_get_att_target(r.get("Properties", {}).get("RedrivePolicy", {})
                                       .get("deadLetterTargetArn"))
                       for r in tagged.values()}
    queues = []
    for lid, resource in tagged.items():
        props = resource.get("Properties", {})
        if lid == compensation:
            role = COMPENSATION
        elif lid == compensation_dlq:
            role = COMPENSATION_DLQ
        elif "RedrivePolicy" in props and lid not in dlq_of_consumed:
            role = COMMANDS
        else:
            role = DEAD_LETTER
        name = props.get("QueueName")
        queues.append(SagaQueue(lid, role, name if isinstance(name, str) else None))
    return tuple(queues)


def _backlog_threshold(template: dict[str, Any], queues: tuple[SagaQueue, ...]) -> float:
    """The threshold of the construct's alarm on the compensation queue's oldest message."""
    compensation = next((q.logical_id for q in queues if q.role == COMPENSATION), None)
    for resource in template.get("Resources", {}).values():
        props = resource.get("Properties", {})
        if (resource.get("Type") != "AWS::CloudWatch::Alarm"
                or props.get("MetricName") != "ApproximateAgeOfOldestMessage"):
            continue
        for dimension in props.get("Dimensions", []):
            if (dimension.get("Name") == "QueueName" and compensation is not None
                    and _get_att_target(dimension.get("Value")) == compensation
                    and isinstance(props.get("Threshold"), int | float)):
                return float(props["Threshold"])
    return float(DEFAULT_BACKLOG_SECONDS)


def _get_att_target(value: Any) -> str | None:
    """The logical id a ``Fn::GetAtt`` (or ``Ref``) points at, if ``value`` is one."""
    if isinstance(value, dict):
        if "Fn::GetAtt" in value and isinstance(value["Fn::GetAtt"], list):
            return str(value["Fn::GetAtt"][0])
        if "Ref" in value:
            return str(value["Ref"])
    return None


def _tag(resource: dict[str, Any], key: str) -> str | None:
    for tag in resource.get("Properties", {}).get("Tags", []) or []:
        if isinstance(tag, dict) and tag.get("Key") == key and isinstance(tag.get("Value"), str):
            return tag["Value"]
    return None
