"""References to resources moto's CloudFormation cannot create, resolved before deploying.

moto skips resource types it has no CloudFormation model for (``AWS::CloudWatch::Alarm`` among
them) with a warning, and then fails the whole stack when another resource reads one of them
with ``Fn::GetAtt`` or ``Ref`` ("references undefined resource"): a dashboard showing the saga's
alarms does. The local cloud deploys a copy of the template in which those references read what
CloudFormation would have returned (the alarm's name for ``Ref``, its ARN for ``Arn``), so the
rest of the stack deploys. The template itself, and what production deploys, is untouched.
"""

from __future__ import annotations

from typing import Any

#: Resource types moto's CloudFormation skips, with what ``Ref`` and ``GetAtt Arn`` return.
SKIPPED_TYPES = {
    "AWS::CloudWatch::Alarm": lambda name, account, region: (
        name, f"arn:aws:cloudwatch:{region}:{account}:alarm:{name}"),
}
#: The property a skipped resource's name is in (else its logical id is its name).
NAME_PROPERTIES = {"AWS::CloudWatch::Alarm": "AlarmName"}


def resolve_skipped_references(template: dict[str, Any], account: str, region: str
                               ) -> dict[str, Any]:
    """A copy of ``template`` where ``Ref`` and ``Fn::GetAtt ... Arn`` of skipped resources are
    the literal values AWS would resolve them to (names that are themselves intrinsics are
    left as they are and keep failing loudly)."""
    resources = template.get("Resources", {})
    literal: dict[str, tuple[Any, Any]] = {}
    for logical_id, spec in resources.items():
        resource_type = spec.get("Type", "")
        make = SKIPPED_TYPES.get(resource_type)
        if make is not None:
            name = spec.get("Properties", {}).get(NAME_PROPERTIES[resource_type]) or logical_id
            if isinstance(name, str):
                literal[logical_id] = make(name, account, region)
    if not literal:
        return template
    # resolve() builds every dict and list anew, and the leaves are immutable: a shallow copy
    # of the top level leaves the caller's template untouched.
    copied = dict(template)

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            if len(node) == 1 and "Ref" in node and node["Ref"] in literal:
                return literal[node["Ref"]][0]
            attribute = node.get("Fn::GetAtt") if len(node) == 1 else None
            if (isinstance(attribute, list) and len(attribute) == 2 and attribute[0] in literal
                    and attribute[1] == "Arn"):
                return literal[attribute[0]][1]
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(value) for value in node]
        return node

    copied["Resources"] = {k: resolve(v) for k, v in copied["Resources"].items()}
    if "Outputs" in copied:
        copied["Outputs"] = resolve(copied["Outputs"])
    return copied
