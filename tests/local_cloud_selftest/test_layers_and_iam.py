"""Layers and IAM in the deployed self-test stack: what fails on AWS fails here too.

- A function whose role lacks a grant gets ``AccessDeniedException`` from DynamoDB; once the
  grant exists, the same call succeeds. The harness's own calls are never checked.
- A function importing a package that neither its code nor its layers provide fails with
  ``Runtime.ImportModuleError``; the same handler with the layer works.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from selftest_app import STACK_NAME

from saga_kit.local_cloud import LocalCloud, LocalCloudError


def _invoke(cloud: LocalCloud, logical_id: str, event: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    answer = cloud.client("lambda").invoke(FunctionName=cloud.physical_id(logical_id),
                                           Payload=json.dumps(event))
    return json.loads(answer["Payload"].read()), "FunctionError" in answer


def _role_name(cloud: LocalCloud, function_logical_id: str) -> str:
    configuration = cloud.client("lambda").get_function_configuration(
        FunctionName=cloud.physical_id(function_logical_id))
    return str(configuration["Role"]).rpartition("/")[2]


def test_a_missing_grant_is_access_denied_and_the_grant_fixes_it(selftest_cloud: LocalCloud) -> None:
    cloud = selftest_cloud
    table_name = cloud.outputs["TableName"]
    table_arn = f"arn:aws:dynamodb:{cloud.region}:{cloud.account_id}:table/{table_name}"

    payload, errored = _invoke(cloud, "Ungranted", {"id": "iam-ungranted"})

    assert errored
    assert payload["errorType"] == "ClientError"
    assert "(AccessDeniedException)" in payload["errorMessage"]
    assert f"dynamodb:UpdateItem on resource: {table_arn}" in payload["errorMessage"]
    assert "assumed-role/" in payload["errorMessage"]
    denial = cloud.access_denials[-1]
    assert (denial.action, denial.resource) == ("dynamodb:UpdateItem", table_arn)
    assert denial.principal_arn.endswith("/" + cloud.physical_id("Ungranted")[:64])
    # The harness itself is not the function: its calls are unchecked.
    assert "Item" not in cloud.client("dynamodb").get_item(
        TableName=table_name, Key={"pk": {"S": "attempts#iam-ungranted"}})

    cloud.client("iam").put_role_policy(
        RoleName=_role_name(cloud, "Ungranted"),
        PolicyName="GrantItems",
        PolicyDocument=json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": ["dynamodb:UpdateItem", "dynamodb:PutItem"],
                           "Resource": table_arn}],
        }),
    )
    payload, errored = _invoke(cloud, "Ungranted", {"id": "iam-ungranted"})

    assert not errored, payload
    assert payload == {"id": "iam-ungranted"}
    item = cloud.client("dynamodb").get_item(TableName=table_name, Key={"pk": {"S": "iam-ungranted"}})
    assert item["Item"]["function_name"]["S"] == cloud.physical_id("Ungranted")


def test_overlapping_clouds_must_agree_on_iam(selftest_cloud: LocalCloud,
                                              selftest_assembly: Path) -> None:
    with pytest.raises(LocalCloudError, match="enforce_iam=True"):
        LocalCloud(selftest_assembly, STACK_NAME, enforce_iam=False).start()
    assert selftest_cloud.client("sts").get_caller_identity()["Account"] == selftest_cloud.account_id


def test_a_layer_provides_what_the_code_zip_does_not(selftest_cloud: LocalCloud) -> None:
    payload, errored = _invoke(selftest_cloud, "LayeredWith", {})
    assert not errored, payload
    assert payload == {"greeting": "hello from the layer", "powertools": "aws_lambda_powertools"}

    payload, errored = _invoke(selftest_cloud, "LayeredWithout", {})
    assert errored
    assert payload["errorType"] == "Runtime.ImportModuleError"
    assert payload["errorMessage"] == (
        "Unable to import module 'selftest_layered.app': No module named 'selftest_extra'")
