"""Which deployed saga a command acts on: its stack's outputs, and one saga's among them.

Every ``Saga`` construct publishes its outputs as ``<SagaName><Name>`` (see
:func:`saga_kit.contract.output_key`), so a stack with several sagas reads the same way as a stack
with one: the stack is described once, and :func:`saga_kit.contract.saga_outputs` picks the
saga's. A name the stack does not hold is refused with a :class:`TargetError` that names what it
does hold, so an operator never has to open the CloudFormation console to find the right name.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from saga_kit.contract import pascal_name, saga_outputs

#: The output every saga publishes; its key's prefix is the saga's name in PascalCase.
_MARKER = "StateMachineArn"
#: How the ``Saga`` construct describes its outputs: ``Saga <name>: <output name>``.
_DESCRIPTION = re.compile(rf"^Saga ([a-z][a-z0-9_]*): {_MARKER}$")
_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


class TargetError(LookupError):
    """The stack or saga named cannot be found or used; the message is one line that says
    what exists instead (the CLI prints it and exits with status 2)."""


@dataclass(frozen=True)
class StackSagas:
    """A deployed stack's outputs and the sagas they publish.

    Attributes:
        stack: The stack's name.
        outputs: Every stack output, OutputKey -> OutputValue.
        sagas: Saga name (as declared, ``order_fulfillment``) -> its output keys' prefix
            (``OrderFulfillment``), sorted by name.
    """

    stack: str
    outputs: dict[str, str]
    sagas: dict[str, str]

    @classmethod
    def from_outputs(cls, stack: str, outputs: Mapping[str, str],
                     descriptions: Mapping[str, str] | None = None) -> StackSagas:
        """The sagas of a stack whose outputs (and, when known, their descriptions) are given.

        A saga's declared name is read from its output's description, which the construct
        writes; from the API's route list when there is none; else from the PascalCase prefix.
        """
        descriptions = descriptions or {}
        routes = _api_routes(outputs)
        sagas: dict[str, str] = {}
        for key in outputs:
            if not key.endswith(_MARKER) or key == _MARKER:
                continue
            prefix = key[: -len(_MARKER)]
            described = _DESCRIPTION.match(descriptions.get(key, ""))
            if described:
                name = described.group(1)
            else:
                routed = [r for r in routes if pascal_name(r) == prefix]
                name = routed[0] if routed else _CAMEL_BOUNDARY.sub("_", prefix).lower()
            sagas[name] = prefix
        return cls(stack=stack, outputs=dict(outputs), sagas=dict(sorted(sagas.items())))

    @property
    def api_url(self) -> str | None:
        """The saga API's base URL (a ``SagaApi`` in the stack), or ``None``."""
        return self.outputs.get("ApiUrl")

    @property
    def api_routes(self) -> list[str] | None:
        """The sagas the stack's API serves, or ``None`` when it does not say."""
        return _api_routes(self.outputs) if "ApiRoutes" in self.outputs else None

    def resolve(self, saga: str | None) -> str:
        """The declared name of the saga meant by ``saga`` (its declared name, or its
        PascalCase output prefix); without one the stack must hold exactly one saga."""
        if not self.sagas:
            older = (" (its StateMachineArn output has no saga prefix: it was deployed with an "
                     "older Saga Kit; redeploy it)" if _MARKER in self.outputs else "")
            raise TargetError(f"stack {self.stack} has no saga outputs (no <Saga>{_MARKER} "
                              f"output){older}; is it a Saga Kit app?")
        if saga is None:
            if len(self.sagas) == 1:
                return next(iter(self.sagas))
            raise TargetError(f"stack {self.stack} holds {len(self.sagas)} sagas "
                              f"({self.listing()}): name one with --saga")
        for name, prefix in self.sagas.items():
            if saga in (name, prefix):
                return name
        raise TargetError(f"stack {self.stack} has no saga '{saga}'; its sagas: {self.listing()}")

    def saga_outputs(self, saga: str | None) -> tuple[str, dict[str, str]]:
        """(declared name, outputs by :data:`~saga_kit.contract.OUTPUT_KEYS` name) of a saga."""
        name = self.resolve(saga)
        # Every name resolve() returns is one whose PascalCase is its outputs' prefix.
        return name, saga_outputs(self.outputs, name)

    def listing(self) -> str:
        """The sagas' names, comma separated."""
        return ", ".join(self.sagas) or "none"


def read_stack(cloudformation: Any, stack: str) -> StackSagas:
    """Describes ``stack`` (one ``DescribeStacks`` call) and reads the sagas it publishes.

    Raises :class:`TargetError` when CloudFormation does not know the stack.
    """
    try:
        described = cloudformation.describe_stacks(StackName=stack)["Stacks"][0]
    except ClientError as error:
        message = error.response.get("Error", {}).get("Message", "")
        if "does not exist" in message:
            region = cloudformation.meta.region_name
            raise TargetError(f"stack {stack} does not exist in {region} "
                              "(check --stack, --region and the account)") from None
        raise
    outputs = {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}
    descriptions = {o["OutputKey"]: o.get("Description", "") for o in described.get("Outputs", [])}
    return StackSagas.from_outputs(described.get("StackName", stack), outputs, descriptions)



def _api_routes(outputs: Mapping[str, str]) -> list[str]:
    try:
        routes = json.loads(outputs.get("ApiRoutes", "[]"))
    except ValueError:
        return []
    return [r for r in routes if isinstance(r, str)] if isinstance(routes, list) else []
